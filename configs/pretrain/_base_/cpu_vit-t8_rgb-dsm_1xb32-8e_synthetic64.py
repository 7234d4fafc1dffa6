# The CPU budget every method gets on the synthetic pool: ViT-Ti (patch 8) on 64 px RGB + DSM tiles of the
# synthetic pool (2000 tiles), batch 32, 8 epochs (~500 iterations), the co-registered augmentation, and the
# schedule shape of the papers (8 % linear warm-up, then cosine), lr 1.5e-4 (the paper's base without its
# batch/256 scaling, which would give 1.9e-5 and barely move the weights in 500 steps). MSSDF, CMID, MAE and
# the supervised control inherit it and add their model (and what their method needs), so a comparison of
# their encoders differs only in the method.
# Augmentation as the official pipeline: flip, colour jitter (RGB only), resized crop 0.8-1.5, each p 0.5,
# co-registered across RGB and DSM (rsdatasets/transforms.py). The kNN probe (val split, labels used
# for monitoring only) logs whether the encoder leaves its initialisation.
_base_ = ["./pretrain_runtime.py"]
epochs, batch = 8, 32
train_dataloader = dict(
    batch_size=batch, num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=True), collate_fn=dict(type="default_collate"),
    dataset=dict(type="PretrainPool", dataset="synthetic", split="pool", size=64, seed=0, augment=True),
)  # fmt: skip
train_cfg = dict(by_epoch=True, max_epochs=epochs)
optim_wrapper = dict(optimizer=dict(lr=1.5e-4))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=True, begin=0, end=0.08 * epochs, convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", T_max=0.92 * epochs, by_epoch=True, begin=0.08 * epochs, end=epochs,
         eta_min=1e-5, convert_to_iter_based=True),
]  # fmt: skip
custom_hooks = [dict(type="KNNProbeHook", interval=4)]
