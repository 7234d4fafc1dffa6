# MAE with exactly MSSDF's CPU budget, data and modalities (ViT-Ti patch 8, 64 px RGB + DSM of the
# synthetic pool, batch 32, 8 epochs, same optimiser shape), so the comparison is fair. The
# decoder is slimmer than the paper's 8 x 512 for CPU, as MSSDF's is in its CPU config.
_base_ = ["./_base_/cpu_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py"]
model = dict(
    type="MAE", arch="vit_t16", img_size=64, patch_size=8, modalities=("rgb", "dsm"),
    mask_ratio=0.75, decoder_dim=128, decoder_depth=4, decoder_heads=4,
    data_preprocessor=dict(type="BaseDataPreprocessor"),
)  # fmt: skip
# No teacher, no DSM curriculum; the encoder gradient of MAE's one term every 100 iterations (~1 step each).
custom_hooks = [dict(type="KNNProbeHook", interval=4), dict(type="LossGradientHook", interval=100)]
