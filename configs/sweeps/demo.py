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
# configs/sweeps/study_synthetic.py, has 3 training x 2 split seeds). Backbones, tasks and probe budgets are
# the study's (_base_/synthetic_vit-t8_five-tasks_frozen.py).
_base_ = ["./_base_/synthetic_vit-t8_five-tasks_frozen.py"]
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
fractions = [0.05, 0.25, 1.0]
split_seeds = [0]
train_seeds = [0]
# A floor so a 20-tile subset still gets enough steps.
budgets = dict(
    segmentation=dict(min_iters=150),
    classification=dict(min_iters=150),
    detection=dict(min_iters=100),
    change_detection=dict(min_iters=150),
    depth=dict(min_iters=150),
)
