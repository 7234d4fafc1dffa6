# CMID with the official CNN encoder, ResNet-50, on a SHORT budget: 2 epochs of the 64 px synthetic pool
# (~126 steps), enough to export a CMID ResNet-50 encoder for tests and demos, not to learn much. Same
# data, optimiser shape and branch sizes as the ViT CPU config it inherits; what differs is the encoder
# (its last map is 2 x 2 at 64 px, so the local branch matches at most 4 positions per view) and the
# schedule, which keeps its shape (8 % warm-up, cosine; teacher temperature warm-up 50/400 of training).
_base_ = ["./cmid_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py"]
epochs = 2
model = dict(arch="resnet50", mask_block=8, encoder_kwargs=dict())  # patch_size applies to ViTs only
train_cfg = dict(max_epochs=epochs)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=True, begin=0, end=0.08 * epochs, convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", T_max=0.92 * epochs, by_epoch=True, begin=0.08 * epochs, end=epochs,
         eta_min=1e-5, convert_to_iter_based=True),
]  # fmt: skip
custom_hooks = [
    dict(type="TeacherEMAHook", momentum=0.99, end_momentum=1.0),
    dict(type="LocalTeacherTempHook", warmup_temp=0.04, temp=0.07, warmup_epochs=50 / 400 * epochs),
]
