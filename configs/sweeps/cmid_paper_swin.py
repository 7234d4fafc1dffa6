# The CMID downstream protocols of configs/sweeps/cmid_paper.py (datasets, tasks, seeds) with the released
# Swin-B fine-tuning recipes of github.com/NJU-LHRS/official-CMID at 6e1de74, option by option: classification
# as the ResNet-50 (Pretrain/ft_config.yaml, Adan) with drop path 0.5; segmentation
# (SemanticSegmentation/config/CMID-Swin-B_config.py) AdamW lr 6e-5, wd 0.01, no decay on norms and position
# bias tables, drop path 0.3, 100 warm-up iterations, cosine to 1e-6 over 50 epochs; detection
# (Detection/config/CMID-Swin-B_config.py) AdamW lr 1e-4, wd 0.05, clipping at 35, steps at epochs 8 and 11
# of 12; change detection (ChangeDetection/train.py) AdamW lr 6e-5, wd 0.01, linear decay over 200 epochs.
# docs/finetune.md has the table (file and line of each value); tests/test_released_recipes.py holds this
# file to configs/sweeps/released_recipes.csv. A separate preset because a sweep's budgets are per task, and
# the two released backbones were fine-tuned with different recipes.
#
#   rsbench convert cmid CMID_Swin-B_bk_200ep.pth checkpoints/cmid_swin_b.pth
#   rsbench sweep configs/sweeps/cmid_paper_swin.py --dry-run
_base_ = ["./cmid_paper.py"]
name = "cmid_paper_swin"
_ckpt = "{{$RSBENCH_CHECKPOINTS:checkpoints}}"
backbones = [
    dict(name="cmid_swin_b", checkpoint=f"{_ckpt}/cmid_swin_b.pth", kwargs=dict(),
         hint=f"convert the official release: rsbench convert cmid <CMID Swin-B file> {_ckpt}/cmid_swin_b.pth"),
    dict(name="random_init_swin_b", checkpoint=None, kwargs=dict()),
]  # fmt: skip
_long = 10**7
_swin_no_decay = ("absolute_pos_embed", "relative_position_bias_table", "norm")  # the released custom_keys
_last = dict(val_checks=0, log_interval=50)  # fixed schedules, last iterate, as released
budgets = dict(
    _delete_=True,  # not merged with the ResNet-50 recipes of the base file
    classification=dict(optimizer="Adan", lr=0.003125, weight_decay=0.02, no_decay_1d=True, clip_grad=0.0,
                        drop_path_rate=0.5, epochs=200, max_iters=_long, warmup_fraction=5 / 200, warmup_start=0.01,
                        decay="cosine", eta_min=1e-6, batch_size=16, eval_batch_size=64, **_last),
    segmentation=dict(optimizer="AdamW", lr=6e-5, weight_decay=0.01, no_decay_keys=_swin_no_decay,
                      drop_path_rate=0.3, clip_grad=0.0, epochs=50, max_iters=_long, warmup_iters=100,
                      warmup_start=0.1, decay="cosine", eta_min=1e-6, batch_size=8, eval_batch_size=8, **_last),
    detection=dict(optimizer="AdamW", lr=1e-4, weight_decay=0.05, no_decay_keys=_swin_no_decay, drop_path_rate=0.3,
                   clip_grad=35.0, epochs=12, max_iters=_long, warmup_iters=500, warmup_start=1 / 3, decay="step",
                   step_milestones=(8 / 12, 11 / 12), batch_size=2, eval_batch_size=4, **_last),
    change_detection=dict(optimizer="AdamW", lr=6e-5, weight_decay=0.01, clip_grad=0.0, epochs=200, max_iters=_long,
                          warmup_iters=0, decay="poly", poly_power=1.0, batch_size=8, eval_batch_size=8, **_last),
)  # fmt: skip
