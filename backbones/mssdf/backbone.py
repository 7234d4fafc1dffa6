"""MSSDF-pretrained encoders for downstream tasks: the shared ViT student, one token sequence per modality.

``fusion="late"``: downstream, each modality runs through the encoder on its own, as in MSSDF's
pretraining, and the maps are averaged after the encoder (``backbones.vit.MultiModalViT``).
"""

from ..vit import register_vit_backbones

register_vit_backbones(
    "mssdf", "{arch} student of MSSDF pretraining; load with checkpoint=encoder.pth", img_size=320, fusion="late"
)
