"""Supervised pretraining on the pool's own labels: the positive control of every comparison.

The synthetic counterpart of the papers' "ImageNet supervised" row. The generator knows each pool
tile's scene class, segmentation mask and height above ground, so the control is the project's shared
``MultiModalViT`` (same encoder, input interface and budget shape as MAE / MSSDF / CMID) trained to
predict them: a linear scene head on the mean of the final tokens, and linear per-token heads that
predict the ``p x p`` pixel classes (and, with ``height_weight``, heights) under each token
(pixel-shuffled back to the image, SETR-naive style). ``rgb_only_prob`` drops the other modalities
for that share of the samples, so the RGB-only input of change detection and depth is one the
control has seen.
If this control does not beat random init at small label fractions, the protocol is broken, not
the methods. On real data the same row is an ImageNet-supervised timm checkpoint through
``rsbench convert timm`` (docs/checkpoints.md).

Written by hand: it is three linear heads and their losses on the shared encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor, nn

from rsbench.registry import MODELS

from ..normalize import normalize_modalities
from ..vit import VIT_ARCHS, MultiModalViT


@MODELS.register_module()
class SupervisedPretrain(BaseModel):
    """Scene classification + per-token segmentation on labelled pool tiles (``rsdatasets.LabelledPool``)."""

    #: The name checkpoints and result rows give this method (the backbone registry's ``method``).
    method = "supervised"

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
        height_weight: float = 0.0,
        height_beta: float = 5.0,
        ignore_index: int = 255,
        rgb_only_prob: float = 0.0,
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
        # Height above ground (nDSM, metres) under each token, from whatever the sample's input is (RGB alone
        # for the rgb_only_prob share): the generator knows it, and it is what tells buildings apart.
        self.height_head = nn.Linear(dim, patch_size * patch_size) if height_weight > 0 else None
        self.height_beta = height_beta
        self.weights = dict(scene=scene_weight, seg=seg_weight, height=height_weight)
        self.ignore_index = ignore_index
        if not 0.0 <= rgb_only_prob <= 1.0:
            raise ValueError(f"SupervisedPretrain: rgb_only_prob must be in [0, 1], got {rgb_only_prob}")
        self.rgb_only_prob = rgb_only_prob

    def export_encoder(self) -> MultiModalViT:
        return self.student

    def loss(self, inputs: dict[str, Tensor], data_samples: dict[str, Tensor]) -> dict[str, Tensor]:
        x = normalize_modalities(inputs)
        tokens = self.student.encode(self._embed(x))[-1]  # B x C x h x w, final (normed) tokens
        scene = self.scene_head(tokens.mean((2, 3)))
        b, c, h, w = tokens.shape
        seg = self.seg_head(tokens.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # B x (K p p) x h x w
        seg = F.pixel_shuffle(seg, self.patch_size)  # B x K x H x W
        losses = {
            "loss_scene": self.weights["scene"] * F.cross_entropy(scene, data_samples["label"].long()),
            "loss_seg": self.weights["seg"] * F.cross_entropy(seg, data_samples["mask"].long(),
                                                              ignore_index=self.ignore_index),  # fmt: skip
            "acc_scene": (scene.argmax(1) == data_samples["label"]).float().mean().detach(),
        }
        if self.height_head is not None:
            height = F.pixel_shuffle(self.height_head(tokens.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), self.patch_size)
            truth = data_samples["ndsm"].float().reshape(height.shape)
            valid = torch.isfinite(truth)
            if "dsm_valid" in inputs:
                valid &= inputs["dsm_valid"].reshape(height.shape).bool()
            # x 10: metres on the scale of the other heads' logits, as the depth task's height head does (which
            # sits in tasks/, a layer above, so its loss is not importable here); an all-nodata batch gives a zero
            # loss that keeps the graph, not NaN, as there.
            height = 10 * height
            beta = self.height_beta
            loss = F.smooth_l1_loss(height[valid], truth[valid], beta=beta) if valid.any() else 0 * height.sum()
            losses["loss_height"] = self.weights["height"] * loss
        return losses

    def _embed(self, x: dict[str, Tensor]) -> Tensor:
        """The encoder's fused patch tokens, with the other modalities dropped for a random ``rgb_only_prob``
        share of the samples: change detection and depth see RGB alone, so the control must have learnt
        that input too (the fused mean of RGB alone is another distribution than RGB + DSM)."""
        if not self.training or self.rgb_only_prob == 0.0 or "rgb" not in self.modalities or len(self.modalities) == 1:
            return self.student.embed(x)
        rgb = x["rgb"]
        rgb_only = torch.rand(rgb.shape[0], device=rgb.device) < self.rgb_only_prob
        keep = torch.stack([torch.ones_like(rgb_only) if m == "rgb" else ~rgb_only for m in self.modalities])  # M x B
        return self.student.embed(x, keep)

    def forward(self, inputs: dict[str, Tensor], data_samples=None, mode: str = "loss"):
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "tensor":
            return self.student(normalize_modalities(inputs))
        raise ValueError(f"SupervisedPretrain supports modes 'loss' and 'tensor', not {mode!r}")
