"""Random initialisation: the same ViT encoders with timm's default init, the floor of every curve.

Every size a pretraining method exports (T, S, B, L) has its random-init twin, so each method has a
baseline of its own size.
"""

from __future__ import annotations

from .vit import register_vit_backbones

register_vit_backbones(
    "random_init", "{arch} with timm's default random init", sizes=("vit_t16", "vit_s16", "vit_b16", "vit_l16")
)
