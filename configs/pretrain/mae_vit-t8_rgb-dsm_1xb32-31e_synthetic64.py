# MAE at MSSDF's pretraining compute: the 8-epoch MAE config run 31 epochs (1953 iterations instead of 504). One
# MAE step is 28.0 GFLOP, one MSSDF step 110.0 (docs/performance.md, perf/pretrain_step.py: 3.92x), so MSSDF's
# 504 steps cost as much as 1976 of MAE's; 31 epochs of the 2000-tile pool (63 steps each) are 0.99x MSSDF's
# FLOPs. Everything else is the 8-epoch config's: data, batch, optimiser, and the schedule's shape (8 % linear
# warm-up, then cosine), stretched over the longer run. The study runs it beside the 8-epoch MAE
# (configs/sweeps/study_synthetic.py, backbone label mae_vit_t16_equal_flops): the equal-compute reading.
_base_ = ["./mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py"]
epochs = 31
train_cfg = dict(by_epoch=True, max_epochs=epochs)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=True, begin=0, end=0.08 * epochs, convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", T_max=0.92 * epochs, by_epoch=True, begin=0.08 * epochs, end=epochs,
         eta_min=1e-5, convert_to_iter_based=True),
]  # fmt: skip
# The kNN probes every 8 epochs rather than 4 (5 probes, not 9): each costs tens of seconds on 2 CPU cores.
custom_hooks = [dict(type="KNNProbeHook", interval=8), dict(type="LossGradientHook", interval=100)]
