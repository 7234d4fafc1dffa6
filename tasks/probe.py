"""Linear probes on frozen encoder features: the heads of the frozen protocol.

Under the frozen protocol a task trains only a probe on the encoder's own maps (cached, see
``tasks.features``): no pyramid, no decoder. As DINOv2's multi-layer linear evaluation, the four
encoder maps are brought to one grid and concatenated, batch-normalised without affine parameters,
and one 1x1 convolution maps them to the task's outputs, upsampled to the input size. A probe is
cheap enough to train to convergence on a CPU, and it measures what the encoder's features hold
rather than what a decoder trained from scratch can add (PANGAEA evaluates frozen encoders with a
UPerNet; that remains available as full fine-tuning's head, and as ``protocol="finetune"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor, nn

from .base import spatial_size
from .features import FrozenBackbone, frozen_parts
from .preprocess import ModalityPreprocessor

#: A task's ``head`` option: its own decoder ("full": UPerNet, FPN + CenterNet, ...) or the frozen protocol's
#: probe ("probe"), which under fine-tuning sits on the trainable encoder's maps, so that both protocols differ
#: only in whether the encoder trains, and a small encoder's step is not mostly its decoder's.
HEADS = ("full", "probe")


def check_head(head: str) -> str:
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
    return head


class EncoderMaps(nn.Module):
    """The encoder of a backbone as a probe sees it under fine-tuning: its own maps (before any task-side
    pyramid), trained. The fine-tuning counterpart of ``FrozenBackbone``; the recipe's hooks
    (``get_layer_depth``, ``set_drop_path_rate``, ``frozen_parts``) reach through to the backbone."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self._encode, self._modules_of_encoder = frozen_parts(backbone)
        self.out_channels = list(getattr(backbone, "encoder_channels", backbone.out_channels))
        for attr in ("modalities", "patch_size", "backbone_name", "method", "arch"):
            if hasattr(backbone, attr):
                setattr(self, attr, getattr(backbone, attr))
        # Only what the backbone has: the recipe asks with hasattr whether layer decay or drop path can apply.
        if hasattr(backbone, "get_layer_depth"):
            self.get_layer_depth = self._layer_depth
        for name in ("set_drop_path_rate", "set_speed_options"):
            if hasattr(backbone, name):
                setattr(self, name, getattr(backbone, name))

    def forward(self, inputs) -> list[Tensor]:
        return list(self._encode(dict(inputs)))

    def frozen_parts(self):
        return self.forward, list(self._modules_of_encoder)

    def _layer_depth(self, param_name: str, prefix: str = "") -> tuple[int, int]:
        return self.backbone.get_layer_depth(param_name, prefix=prefix + "backbone.")


def probe_backbone(backbone: nn.Module) -> nn.Module:
    """What a probe head reads: the frozen encoder as it is, a trainable one through ``EncoderMaps``."""
    return backbone if isinstance(backbone, FrozenBackbone | EncoderMaps) else EncoderMaps(backbone)


class ProbeFeatures(nn.Module):
    """Encoder maps -> one map: each resized (bilinear) to the probe grid, concatenated, BatchNorm without affine.

    The grid is the second-finest map's (the patch grid of a ViT, whose maps all share it; stride 8 of
    a CNN's four stages), so a probe sees every level at the encoder's own resolution.
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.out_channels = int(sum(channels))
        self.norm = nn.BatchNorm2d(self.out_channels, affine=False)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        sizes = sorted({tuple(f.shape[-2:]) for f in feats}, key=lambda s: -s[0] * s[1])
        grid = sizes[min(1, len(sizes) - 1)]
        maps = [f if tuple(f.shape[-2:]) == grid else F.interpolate(f, grid, mode="bilinear", align_corners=False)
                for f in feats]  # fmt: skip
        return self.norm(torch.cat(maps, 1))


class DenseProbe(BaseModel):
    """Frozen backbone -> ``ProbeFeatures`` -> 1x1 conv to ``out_channels`` -> bilinear upsampling to the input.

    Subclasses turn the logits into a loss and into predictions in their task's metric format.
    """

    def __init__(self, backbone: nn.Module, out_channels: int) -> None:
        super().__init__(data_preprocessor=ModalityPreprocessor())
        self.backbone = backbone
        self.features = ProbeFeatures(backbone.out_channels)
        self.head = nn.Conv2d(self.features.out_channels, out_channels, 1)

    def logits(self, inputs: dict) -> Tensor:
        x = self.head(self.features(self.backbone(inputs)))
        return F.interpolate(x, size=spatial_size(inputs), mode="bilinear", align_corners=False)


class DetectionProbeNeck(nn.Module):
    """The detection probe's neck: ``ProbeFeatures``, a 1x1 projection (with ReLU) to the head's width, and a
    bilinear x2 upsampling: CenterNet's usual output stride 4 on an 8-px patch grid, so neighbouring
    buildings get their own heatmap peaks."""

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.features = ProbeFeatures(in_channels)
        self.proj = nn.Sequential(nn.Conv2d(self.features.out_channels, out_channels, 1), nn.ReLU(inplace=True))

    def forward(self, feats) -> tuple[Tensor]:
        x = self.proj(self.features(feats))
        return (F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False).contiguous(),)
