# The fine-tuning study: does full fine-tuning see what the frozen protocol sees, and does the frozen protocol
# predict it? Both protocols on the same encoders, tasks, fractions and seeds, in one store, so the report can
# put them side by side (benchmark/analysis/protocols.py: Kendall tau of the backbones' order, and the cells
# whose gains over random init disagree beyond their CIs; the report adds that section when a run holds both).
# Run at f481f00: docs/results/study_finetune_synthetic/ (report, CSVs, run notes); verdict in the README.
#  1. pretraining as the demo's (configs/sweeps/demo.py): MSSDF, CMID, MAE and the supervised control, each the
#     8-epoch CPU config on the first 384 pool tiles (96 steps);
#  2. 5 backbones (those four and random init, ViT-Ti/8 at 64 px; _base_/synthetic_vit-t8_five-tasks_frozen.py)
#     x 5 tasks x 2 fractions (5 and 25 %) x 2 training seeds x 2 protocols = 200 cells. Both protocols train
#     the same probe head (tasks/probe.py; the task option head="probe" puts it on the trained encoder under
#     fine-tuning), with the same head lr, iterations, warm-up and model selection: the only difference is the
#     encoder, frozen, or trained with the recipe below;
#  3. the recipe (docs/finetune.md) is the released ViT recipes' shape scaled to a ViT-Ti on 16-320 tiles:
#     encoder lr 1e-4 (backbone_lr_mult = 1e-4 / the head's lr; the layer decay 0.75 lowers it from the top
#     block down), no weight decay on 1-D parameters and tokens, drop path 0.1, linear warm-up then cosine,
#     clipping at 1. Why 1e-4: with the encoder at 1e-3 (a multiplier of 0.1 on the probe's 1e-2) the control's
#     lead over random init on height at 5 % was unresolved (-0.18 RMSE [-0.40, 0.05]); at 1e-4 it was resolved
#     in both seeds tried (docs/finetune.md, "What we measured so far").
# Sizing for 2 hours on 2 cores: 100 iterations per cell (20 epochs with a floor of 100: both fractions get
# 100), 3 validation checks, batch 16, and the probe head instead of UPerNet / GN heads / Faster R-CNN, so
# a fine-tuning step is 83-93 % encoder (perf/finetune_step.py, docs/performance.md) and costs 0.3-0.56 s on
# 2 threads. Measured in the run (2026-12-05, quiet, --jobs 2): pretraining 5.0 min, a fine-tuning cell 49-54 s
# (change detection 103 s: two dates; MSSDF on RGB + DSM 100 s: twice the tokens), a frozen cell 0.4-8 s;
# 1 h 06 min in all. More seeds or fractions scale the cell time linearly: a third training seed adds ~30 min.
#
#   rsbench sweep configs/sweeps/study_finetune_synthetic.py --dry-run
#   rsbench sweep configs/sweeps/study_finetune_synthetic.py --jobs 2
_base_ = ["./_base_/synthetic_vit-t8_five-tasks_frozen.py"]
name = "study_finetune_synthetic"
_pool = {"train_dataloader.dataset.max_samples": 384, "default_hooks.checkpoint.interval": 4}
pretrain = [
    dict(name="mssdf", config="configs/pretrain/mssdf_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", cfg_options=_pool),
    dict(name="cmid", config="configs/pretrain/cmid_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", cfg_options=_pool),
    dict(name="mae", config="configs/pretrain/mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", cfg_options=_pool),
    dict(name="supervised", config="configs/pretrain/supervised_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py",
         cfg_options=_pool),
]
protocols = ["frozen", "finetune"]
fractions = [0.05, 0.25]
split_seeds = [0]
train_seeds = [0, 1]
_encoder_lr = 1e-4  # before the layer decay
_recipe = dict(layer_decay=0.75, no_decay_1d=True, no_decay_keys=("cls_token", "pos_embed"), drop_path_rate=0.1)
_budget = dict(batch_size=16, warmup_iters=10, val_checks=3, epochs=20, min_iters=100, max_iters=300, **_recipe)
_head_lr = dict(segmentation=1e-2, classification=1e-2, detection=2e-3, change_detection=1e-2, depth=3e-3)
budgets = {task: dict(_budget, lr=lr, backbone_lr_mult=_encoder_lr / lr) for task, lr in _head_lr.items()}
_probe = dict(head="probe")
task_kwargs = dict(
    segmentation=_probe, classification=_probe, change_detection=_probe, depth=_probe,
    detection=dict(_probe, neck_channels=32),  # the frozen protocol's detection head width (the demo's)
)  # fmt: skip
