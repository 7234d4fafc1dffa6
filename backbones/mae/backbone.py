"""MAE-pretrained encoders for downstream tasks (the same shared ViT as every method)."""

from ..vit import register_vit_backbones

# ViT-L/16 too: the official MAE releases are B/16 and L/16 (rsbench convert mae).
register_vit_backbones(
    "mae", "{arch} encoder of MAE pretraining; load with checkpoint=encoder.pth",
    sizes=("vit_t16", "vit_s16", "vit_b16", "vit_l16"),
)  # fmt: skip
