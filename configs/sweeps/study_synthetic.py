# The study preset: does any method beat random init on the synthetic benchmark, with intervals that can
# tell? At most 2 hours on 2 CPU cores: measured about 1 h 25 min with `rsbench sweep THIS --jobs 2` (42 min
# pretraining, 41 min for the 600 cells; README and docs/results/study_synthetic/).
#  1. pretraining: MSSDF, CMID, MAE and the supervised control, each with its 8-epoch CPU config on the whole
#     pool (2000 tiles, 504 iterations; same encoder, data, modalities and schedule shape). The kNN probes in
#     each log (and in encoder.pth) show whether the encoder left its initialisation;
#  2. every backbone (the four encoders and random init, ViT-Ti/8 at 64 px) on the five tasks at 1, 5, 25 and
#     100 % of the labels, 3 training seeds x 2 split seeds, frozen-encoder protocol (features cached per
#     checkpoint, split and modalities; a probe trained to convergence, selected on the subset's own 20 %);
#  3. per task: means with CIs over seeds and test tiles, paired differences against random init, label
#     savings only where a CI supports them, and the random-init monotonicity check.
# Random init is a different encoder for each training seed (it is initialised from it), so its seed spread
# includes the init's.
name = "study_synthetic"
pretrain = [
    dict(name="mssdf", config="configs/pretrain/mssdf_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py"),
    dict(name="cmid", config="configs/pretrain/cmid_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py"),
    dict(name="mae", config="configs/pretrain/mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py"),
    dict(name="supervised", config="configs/pretrain/supervised_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py"),
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
fractions = [0.01, 0.05, 0.25, 1.0]
split_seeds = [0, 1]
train_seeds = [0, 1, 2]
# The demo's probe budgets (configs/sweeps/demo.py), which converge at 100 % (the selected validation
# iteration is recorded in every row).
_probe = dict(batch_size=16, lr=1e-2, warmup_iters=10, val_checks=5, epochs=30, min_iters=200, max_iters=600)
budgets = dict(
    segmentation=_probe,
    classification=_probe,
    detection=dict(_probe, lr=2e-3, min_iters=150, max_iters=250),
    change_detection=_probe,
    depth=dict(_probe, lr=3e-3),
)
task_kwargs = dict(detection=dict(neck_channels=32))
