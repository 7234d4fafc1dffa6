"""Random initialisation: the same ViT encoders with timm's default init, the floor of every curve."""

from __future__ import annotations

from .registry import register_backbone
from .vit import VIT_ARCHS, MultiModalViT


@register_backbone("random_init_vit_t16", method="random_init", arch="vit_t16", img_size=224, patch_size=16)
def random_init_vit_t16(modalities=("rgb", "dsm"), **kw) -> MultiModalViT:
    """ViT-Ti/16 (192-d, 12 blocks) with timm's default random init."""
    return MultiModalViT(VIT_ARCHS["vit_t16"], modalities=modalities, **kw)


@register_backbone("random_init_vit_s16", method="random_init", arch="vit_s16", img_size=224, patch_size=16)
def random_init_vit_s16(modalities=("rgb", "dsm"), **kw) -> MultiModalViT:
    """ViT-S/16 (384-d, 12 blocks) with timm's default random init."""
    return MultiModalViT(VIT_ARCHS["vit_s16"], modalities=modalities, **kw)


@register_backbone("random_init_vit_b16", method="random_init", arch="vit_b16", img_size=224, patch_size=16)
def random_init_vit_b16(modalities=("rgb", "dsm"), **kw) -> MultiModalViT:
    """ViT-B/16 (768-d, 12 blocks) with timm's default random init."""
    return MultiModalViT(VIT_ARCHS["vit_b16"], modalities=modalities, **kw)
