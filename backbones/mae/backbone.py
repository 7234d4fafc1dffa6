"""MAE-pretrained encoders for downstream tasks (the same shared ViT as every method)."""

from ..vit import register_vit_backbones

register_vit_backbones("mae", "{arch} encoder of MAE pretraining; load with checkpoint=encoder.pth")
