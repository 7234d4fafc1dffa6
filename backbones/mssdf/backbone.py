"""MSSDF-pretrained encoders for downstream tasks: the shared ViT student, one embedding per modality."""

from ..vit import register_vit_backbones

register_vit_backbones("mssdf", "{arch} student of MSSDF pretraining; load with checkpoint=encoder.pth", img_size=320)
