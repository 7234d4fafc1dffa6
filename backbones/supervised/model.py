"""Supervised pretraining on the pool's own labels: the positive control of every comparison.

The synthetic counterpart of the papers' "ImageNet supervised" row. The generator knows each pool
tile's scene class and segmentation mask, so the control is the project's shared ``MultiModalViT``
(same encoder, input interface and budget shape as MAE / MSSDF / CMID) trained to predict both:
a linear scene head on the mean of the final tokens, and a linear per-token head that predicts the
``p x p`` pixel classes under each token (pixel-shuffled back to the image, SETR-naive style).
If this control does not beat random init at small label fractions, the protocol is broken, not
the methods. On real data the same row is an ImageNet-supervised timm checkpoint through
``rsbench convert timm`` (docs/checkpoints.md).

Written by hand: it is two linear heads and two cross-entropies on the shared encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor, nn

from rsbench.registry import MODELS

from ..normalize import normalize_modalities
from ..vit import VIT_ARCHS, MultiModalViT


@MODELS.register_module()
class SupervisedPretrain(BaseModel):
    """Scene classification + per-token segmentation on labelled pool tiles (``rsdatasets.LabelledPool``)."""

    def __init__(
        self,
        arch: str = "vit_b16",
        img_size: int = 320,
        patch_size: int = 16,
        modalities: Sequence[str] = ("rgb", "dsm"),
        encoder_kwargs: dict | None = None,
        num_scene_classes: int = 6,
        num_seg_classes: int = 6,
        scene_weight: float = 1.0,
        seg_weight: float = 1.0,
        ignore_index: int = 255,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.modalities = tuple(modalities)
        self.arch, self.patch_size = arch, patch_size
        self.student = MultiModalViT(VIT_ARCHS[arch], self.modalities, img_size, patch_size, **(encoder_kwargs or {}))
        self.student.use_fixed_sincos_positions()  # as every other method here
        dim = self.student.embed_dim
        self.num_seg_classes = num_seg_classes
        self.scene_head = nn.Linear(dim, num_scene_classes)
        self.seg_head = nn.Linear(dim, num_seg_classes * patch_size * patch_size)
        self.weights = dict(scene=scene_weight, seg=seg_weight)
        self.ignore_index = ignore_index

    def export_encoder(self) -> MultiModalViT:
        return self.student

    def loss(self, inputs: dict[str, Tensor], data_samples: dict[str, Tensor]) -> dict[str, Tensor]:
        x = normalize_modalities(inputs)
        tokens = self.student.encode(self.student.embed(x))[-1]  # B x C x h x w, final (normed) tokens
        scene = self.scene_head(tokens.mean((2, 3)))
        b, c, h, w = tokens.shape
        seg = self.seg_head(tokens.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # B x (K p p) x h x w
        seg = F.pixel_shuffle(seg, self.patch_size)  # B x K x H x W
        return {
            "loss_scene": self.weights["scene"] * F.cross_entropy(scene, data_samples["label"].long()),
            "loss_seg": self.weights["seg"] * F.cross_entropy(seg, data_samples["mask"].long(),
                                                              ignore_index=self.ignore_index),  # fmt: skip
            "acc_scene": (scene.argmax(1) == data_samples["label"]).float().mean().detach(),
        }

    def forward(self, inputs: dict[str, Tensor], data_samples=None, mode: str = "loss"):
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "tensor":
            return self.student(normalize_modalities(inputs))
        raise ValueError(f"SupervisedPretrain supports modes 'loss' and 'tensor', not {mode!r}")
