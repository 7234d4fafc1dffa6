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
