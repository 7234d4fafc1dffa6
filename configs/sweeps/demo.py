# The demo behind `make demo`: the whole story on the embedded synthetic benchmark, sized for a
# 2-core laptop CPU (at most 20 minutes; see README for the measured time).
#  1. short pretraining of MSSDF, CMID and MAE on the unlabelled pool, and of the supervised control on the
#     same tiles with their labels (the 8-epoch CPU configs on the first 384 pool tiles: 96 iterations each,
#     same data, modalities and schedule shape for all four; the teacher momentum is sized for 96 steps);
#  2. every backbone (the four pretrained encoders and random init, all ViT-Ti/8 at 64 px) on all five
#     tasks at three label fractions, frozen-encoder protocol: encoder features are computed once per
#     backbone and split, cached, and a probe trains to convergence on them (linear per-pixel heads for
#     segmentation, height and change, a linear classifier, CenterNet's light head for buildings);
#  3. per task: means with 95 % CIs (test tiles resampled), paired differences against random init with
#     CIs, label savings only where a CI supports them, a check that random init improves with labels,
#     label-efficiency curves and the HTML/Markdown/LaTeX report.
# The demo is one seed: its intervals cover test-set sampling, not training noise (the study preset,
# configs/sweeps/study_synthetic.py, has 3 training x 2 split seeds).
name = "demo"
# A resumable checkpoint every 4 epochs (about a minute here) instead of every epoch: each is 70-100 MB with
# the optimiser state, and 32 of them were ~3 % of the demo's wall time. The encoder is exported at the end.
_pool = {"train_dataloader.dataset.max_samples": 384, "default_hooks.checkpoint.interval": 4}
pretrain = [
    dict(name="mssdf", config="configs/pretrain/mssdf_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", cfg_options=_pool),
    dict(name="cmid", config="configs/pretrain/cmid_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", cfg_options=_pool),
    dict(name="mae", config="configs/pretrain/mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", cfg_options=_pool),
    dict(name="supervised", config="configs/pretrain/supervised_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py",
         cfg_options=_pool),
]
_vit = dict(img_size=64, patch_size=8)
backbones = [
    dict(name="random_init_vit_t16", checkpoint=None, kwargs=_vit),
    dict(name="supervised_vit_t16", checkpoint="pretrain:supervised", kwargs=_vit),
    dict(name="mssdf_vit_t16", checkpoint="pretrain:mssdf", kwargs=_vit),
    dict(name="cmid_vit_t16", checkpoint="pretrain:cmid", kwargs=_vit),
    dict(name="mae_vit_t16", checkpoint="pretrain:mae", kwargs=_vit),
]
dataset = dict(name="synthetic", seed=0, size=64)  # detection: buildings (cars are under the 8-px patch)
tasks = ["segmentation", "classification", "detection", "change_detection", "depth"]
modalities = ["rgb", "dsm"]  # change detection and depth narrow this to RGB (recorded in each row)
protocols = ["frozen"]
fractions = [0.05, 0.25, 1.0]
split_seeds = [0]
train_seeds = [0]
# Epochs with a floor and a cap: enough passes over the full split for a probe to converge (each row
# records the best validation iteration), a floor so a 20-tile subset still gets enough steps, and the
# best of 5 validation checks on the subset's own held-out 20 % is what meets the test split, once.
_probe = dict(batch_size=16, lr=1e-2, warmup_iters=10, val_checks=5, epochs=30, min_iters=150, max_iters=600)
budgets = dict(
    segmentation=_probe,
    classification=_probe,
    detection=dict(_probe, lr=2e-3, min_iters=100, max_iters=250),  # CenterNet's head: a slower step
    change_detection=_probe,
    depth=dict(_probe, lr=3e-3),
)
task_kwargs = dict(detection=dict(neck_channels=32))  # the frozen protocol's detection head width
