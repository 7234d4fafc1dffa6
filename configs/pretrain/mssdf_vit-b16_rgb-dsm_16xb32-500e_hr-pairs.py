# MSSDF as published: ViT-B/16 student, 320 px RGB + DSM, batch 512 (16 GPUs x 32), 500 epochs,
# AdamW (0.9, 0.95), wd 0.05, lr 1.5e-4 x 512 / 256, 40 warm-up epochs then cosine.
# The paper's HR-Pairs data is not public: point the pool at any RGB + DSM source you hold
# (e.g. --cfg-options train_dataloader.dataset.dataset=potsdam train_dataloader.dataset.root=/data/potsdam).
# Launch: rsbench pretrain THIS_FILE --ddp slurm (or pytorch under torchrun).
_base_ = ["./_base_/pretrain_runtime.py"]
epochs, warmup_epochs, batch_per_gpu, gpus = 500, 40, 32, 16
model = dict(
    type="MSSDF", arch="vit_b16", img_size=320, patch_size=16,
    decoder_dim=384, decoder_heads=6, fusion_depth=3, decoder_depth=4,
    data_preprocessor=dict(type="BaseDataPreprocessor"),
)  # fmt: skip
train_dataloader = dict(
    batch_size=batch_per_gpu, num_workers=8, persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True), collate_fn=dict(type="default_collate"),
    dataset=dict(type="PretrainPool", dataset="synthetic", split="pool", size=320),
)  # fmt: skip
train_cfg = dict(by_epoch=True, max_epochs=epochs)
optim_wrapper = dict(type="AmpOptimWrapper", dtype="bfloat16", optimizer=dict(lr=1.5e-4 * batch_per_gpu * gpus / 256))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", T_max=epochs - warmup_epochs, by_epoch=True, begin=warmup_epochs, end=epochs,
         eta_min=0.0, convert_to_iter_based=True),
]  # fmt: skip
custom_hooks = [dict(type="TeacherEMAHook", momentum=0.996, end_momentum=1.0), dict(type="MaskingCurriculumHook")]
auto_scale_lr = dict(base_batch_size=batch_per_gpu * gpus, enable=False)
