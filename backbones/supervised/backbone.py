"""Encoders of the supervised control (``model.py``): a reference row, not a self-supervised method."""

from ..vit import register_vit_backbones

register_vit_backbones(
    "supervised", "{arch} trained on the pool's labels (positive control); load with checkpoint=encoder.pth",
    sizes=("vit_t16", "vit_s16", "vit_b16", "vit_l16"),
)  # fmt: skip
