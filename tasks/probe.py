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
from .preprocess import ModalityPreprocessor


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
