"""MSSDF-pretrained encoders for downstream tasks: the shared ViT student, one embedding per modality."""

from __future__ import annotations

from ..registry import register_backbone
from ..vit import VIT_ARCHS, MultiModalViT


def _mssdf_vit(short: str, modalities, **kw) -> MultiModalViT:
    return MultiModalViT(VIT_ARCHS[short], modalities=modalities, **kw)


@register_backbone("mssdf_vit_t16", method="mssdf", arch="vit_t16", img_size=320, patch_size=16)
def mssdf_vit_t16(modalities=("rgb", "dsm"), **kw) -> MultiModalViT:
    """ViT-Ti student of MSSDF pretraining (CPU-sized runs); load with checkpoint=encoder.pth."""
    return _mssdf_vit("vit_t16", modalities, **kw)


@register_backbone("mssdf_vit_s16", method="mssdf", arch="vit_s16", img_size=320, patch_size=16)
def mssdf_vit_s16(modalities=("rgb", "dsm"), **kw) -> MultiModalViT:
    """ViT-S student of MSSDF pretraining."""
    return _mssdf_vit("vit_s16", modalities, **kw)


@register_backbone("mssdf_vit_b16", method="mssdf", arch="vit_b16", img_size=320, patch_size=16)
def mssdf_vit_b16(modalities=("rgb", "dsm"), **kw) -> MultiModalViT:
    """ViT-B/16 student of MSSDF pretraining (the paper's encoder)."""
    return _mssdf_vit("vit_b16", modalities, **kw)
