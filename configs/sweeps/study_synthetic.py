# The study preset: does any method beat random init on the synthetic benchmark, with intervals that can
# tell? Measured about 1 h 25 min with `rsbench sweep THIS --jobs 2` on 2 CPU cores before issue 22 (42 min
# pretraining, 41 min for the 600 cells; README and docs/results/study_synthetic/); the equal-compute MAE adds
# its pretraining (about 3.9x the 8-epoch MAE's 5 min, so ~19 min) and 120 cells (~8 min with 2 jobs), and the
# robustness block 2304 test passes (~13 min with 2 jobs: one feature pass of each corrupted test split per
# encoder and process, then the probe's test loop), so expect about 2 h 05 min (estimated, not yet measured).
#  1. pretraining: MSSDF, CMID, MAE and the supervised control, each with its 8-epoch CPU config on the whole
#     pool (2000 tiles, 504 iterations; same encoder, data, modalities and schedule shape), and MAE again at
#     MSSDF's pretraining FLOPs (31 epochs). The kNN probes in each log (and in encoder.pth) show whether the
#     encoder left its initialisation; each encoder.pth records its pretraining FLOPs and wall time;
#  2. every backbone (the five encoders and random init, ViT-Ti/8 at 64 px) on the five tasks at 1, 5, 25 and
#     100 % of the labels, 3 training seeds x 2 split seeds, frozen-encoder protocol (features cached per
#     checkpoint, split and modalities; a probe trained to convergence, selected on the subset's own 20 %),
#     then tested again under the corruptions below;
#  3. the report: the aggregate across tasks, label-efficiency AUC, paired differences against random init,
#     label savings only where a CI supports them, the random-init monotonicity check, robustness drops and the
#     compute behind every row (docs/reports.md).
# Random init is a different encoder for each training seed (it is initialised from it), so its seed spread
# includes the init's. Pretraining, backbones, tasks and probe budgets: _base_/synthetic_vit-t8_five-tasks_frozen.py
# (the demo's, which converge at 100 %: the selected validation iteration is recorded in every row).
_base_ = ["./_base_/synthetic_vit-t8_five-tasks_frozen.py"]
name = "study_synthetic"
fractions = [0.01, 0.05, 0.25, 1.0]
split_seeds = [0, 1]
train_seeds = [0, 1, 2]
budgets = dict(
    segmentation=dict(min_iters=200),
    classification=dict(min_iters=200),
    detection=dict(min_iters=150),
    change_detection=dict(min_iters=200),
    depth=dict(min_iters=200),
)
# Robustness, test passes only (no retraining): after its clean test, each trained cell's probe meets corrupted
# copies of its test split, the same copies for every backbone (seeded). The DSM absent from half of the tiles
# and from all of them (missing_dsm 2 and 3; only where DSM is an input: segmentation, classification and
# detection; change detection and depth read RGB alone, and the report says it skipped them), and Gaussian noise
# on RGB (std 0.12 and 0.26 in [0, 1] units: gaussian_noise 2 and 4). Severities: rsdatasets/corruptions.py.
corruptions = [dict(name="missing_dsm", severities=[2, 3]), dict(name="gaussian_noise", severities=[2, 4])]
# Equal compute: one MSSDF step costs 3.9x MAE's FLOPs (docs/performance.md), so the 8-epoch MAE got a quarter of
# MSSDF's pretraining compute. A second MAE, pretrained 31 epochs (0.99x MSSDF's FLOPs), runs beside it under the
# label mae_vit_t16_equal_flops. mmengine replaces lists, so the base's entries are repeated here.
pretrain = [
    dict(name="mssdf", config="configs/pretrain/mssdf_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py"),
    dict(name="cmid", config="configs/pretrain/cmid_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py"),
    dict(name="mae", config="configs/pretrain/mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py"),
    dict(name="supervised", config="configs/pretrain/supervised_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py"),
    dict(name="mae_equal_flops", config="configs/pretrain/mae_vit-t8_rgb-dsm_1xb32-31e_synthetic64.py"),
]
_vit = dict(img_size=64, patch_size=8)
backbones = [
    dict(name="random_init_vit_t16", checkpoint=None, kwargs=_vit),
    dict(name="supervised_vit_t16", checkpoint="pretrain:supervised", kwargs=_vit),
    dict(name="mssdf_vit_t16", checkpoint="pretrain:mssdf", kwargs=_vit),
    dict(name="cmid_vit_t16", checkpoint="pretrain:cmid", kwargs=_vit),
    dict(name="mae_vit_t16", checkpoint="pretrain:mae", kwargs=_vit),
    dict(name="mae_vit_t16", label="mae_vit_t16_equal_flops", checkpoint="pretrain:mae_equal_flops", kwargs=_vit),
]
