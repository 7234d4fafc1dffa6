"""Hierarchical timm encoders (ResNet, Swin) behind the backbone contract, one stem per modality.

Both mirror ``MultiModalViT``: each modality gets its own first layer (ResNet ``conv1``, Swin
patch projection) with the right channel count, the stem outputs are averaged, and the rest
of the timm network is shared. ``embed`` (stem, stride 4) and ``forward_features`` (the four
stages) are separate so pretraining methods can change the stem output (CMID adds its mask
token there). Any method can register these encoders; ``random_init_resnet50`` and
``random_init_swin_b`` are the random-init floors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import timm
import torch
from torch import nn

from .registry import register_backbone
from .vit import modality_channels

#: Stride of the coarsest map: input sides that are multiples of it tile every level exactly.
CNN_PATCH_SIZE = 32


def _check_geometry(patch_size: int, depth: int | None) -> None:
    """``patch_size`` / ``depth`` arrive from checkpoint metadata; for these encoders they are fixed."""
    if patch_size != CNN_PATCH_SIZE:
        raise ValueError(
            f"patch_size {patch_size} does not apply to a hierarchical encoder (its coarsest stride is fixed at "
            f"{CNN_PATCH_SIZE}); drop the patch_size option for ResNet/Swin backbones"
        )
    if depth not in (None, 4):
        raise ValueError(f"depth {depth} (number of stages) must be 4 for ResNet/Swin backbones")


class _MultiModalStem(nn.Module):
    """Shared parts: per-modality stems averaged, contract attributes, forward = stages(embed)."""

    stems: nn.ModuleDict
    modalities: tuple[str, ...]

    def __init__(self, modalities: Sequence[str], in_chans: Mapping[str, int] | None, img_size: int | None,
                 patch_size: int, depth: int | None) -> None:  # fmt: skip
        super().__init__()
        _check_geometry(patch_size, depth)
        self.channels = modality_channels(modalities, in_chans)
        self.modalities, self.patch_size = tuple(modalities), patch_size
        self.img_size = img_size  # the pretraining size, recorded only: these encoders take any input size

    def _stems(self, first: nn.Conv2d, **geometry) -> nn.ModuleDict:
        """One copy of the network's first convolution per modality, with that modality's channel count."""
        return nn.ModuleDict({m: nn.Conv2d(self.channels[m], first.out_channels, **geometry) for m in self.modalities})

    def _fused_stem(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise KeyError(f"backbone expects modalities {self.modalities}, the batch lacks {missing}")
        return torch.stack([self.stems[m](inputs[m]) for m in self.modalities]).mean(0)

    def set_speed_options(self, grad_checkpointing: bool = False, fused_attn: bool = True) -> None:
        """Recompute stages in the backward pass (timm's own gradient checkpointing); attention is the net's."""
        self.net.set_grad_checkpointing(grad_checkpointing)

    def checkpoint_geometry(self) -> dict:
        """What a checkpoint records (see MultiModalViT): the pretraining size, the fixed stride and 4 stages."""
        return dict(img_size=self.img_size, patch_size=self.patch_size, depth=len(self.out_channels))

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        return self.forward_features(self.embed(inputs))


class MultiModalResNet(_MultiModalStem):
    """A timm ResNet with one ``conv1`` per modality; stages 1-4 give strides 4, 8, 16, 32.

    ``embed`` returns the stem output (after max-pool, B x 64 x H/4 x W/4 for ResNet-50).
    """

    def __init__(
        self,
        arch: str = "resnet50",
        modalities: Sequence[str] = ("rgb", "dsm"),
        in_chans: Mapping[str, int] | None = None,
        img_size: int | None = None,
        patch_size: int = CNN_PATCH_SIZE,
        depth: int | None = None,
        **timm_kwargs,
    ) -> None:
        super().__init__(modalities, in_chans, img_size, patch_size, depth)
        self.net = timm.create_model(arch, pretrained=False, num_classes=0, global_pool="", **timm_kwargs)
        conv1 = self.net.conv1
        if not isinstance(conv1, nn.Conv2d):
            raise ValueError(f"{arch} has a deep stem ({type(conv1).__name__}); only single-conv stems are supported")
        self.stems = self._stems(conv1, kernel_size=conv1.kernel_size, stride=conv1.stride, padding=conv1.padding,
                                 bias=False)  # fmt: skip
        self.net.conv1 = nn.Identity()  # replaced by the per-modality stems
        self.embed_dim = conv1.out_channels
        self.embed_stride = self.net.feature_info[1]["reduction"]  # stem (conv1 + max-pool): 4
        self.out_channels = [info["num_chs"] for info in self.net.feature_info if info["module"].startswith("layer")]

    def embed(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Stem output at stride 4 (B x C x h x w)."""
        net = self.net
        return net.maxpool(net.act1(net.bn1(self._fused_stem(inputs))))

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self.net, name)(x)
            feats.append(x)
        return feats


class MultiModalSwin(_MultiModalStem):
    """A timm Swin Transformer with one patch projection per modality; stages give strides 4 .. 32.

    Built with 7 x 7 windows in every stage (timm's 224-px geometry, as the official Swin-B)
    and ``dynamic_img_size`` so any input size is padded to whole windows; the window
    geometry therefore never depends on the input size and checkpoints always fit. The
    last stage is layer-normed (timm's final norm), as in the official release.
    """

    def __init__(
        self,
        arch: str = "swin_base_patch4_window7_224",
        modalities: Sequence[str] = ("rgb", "dsm"),
        in_chans: Mapping[str, int] | None = None,
        img_size: int | None = None,
        patch_size: int = CNN_PATCH_SIZE,
        depth: int | None = None,
        **timm_kwargs,
    ) -> None:
        super().__init__(modalities, in_chans, img_size, patch_size, depth)
        self.net = timm.create_model(
            arch, pretrained=False, num_classes=0, img_size=224, strict_img_size=False, dynamic_img_size=True,
            **timm_kwargs,
        )  # fmt: skip
        proj = self.net.patch_embed.proj
        self.stems = self._stems(proj, kernel_size=proj.kernel_size, stride=proj.stride)
        self.net.patch_embed.proj = nn.Identity()  # replaced by the per-modality stems
        self.embed_dim = proj.out_channels
        self.embed_stride = proj.stride[0]  # the patch size, 4
        self.out_channels = [info["num_chs"] for info in self.net.feature_info]

    def embed(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Patch embedding (projection + layer norm) at stride 4, B x C x h x w."""
        x = self._fused_stem(inputs).permute(0, 2, 3, 1)
        return self.net.patch_embed.norm(x).permute(0, 3, 1, 2)

    def set_drop_path_rate(self, rate: float) -> None:
        """Stochastic depth rising linearly over all blocks to ``rate`` (timm's rule, as the official Swin's
        ``drop_path_rate``), for an encoder built or loaded without it (the released Swin-B recipes use 0.3-0.5)."""
        from timm.layers import DropPath
        from timm.layers.drop import calculate_drop_path_rates

        blocks = [block for stage in self.net.layers for block in stage.blocks]
        for block, p in zip(blocks, calculate_drop_path_rates(rate, len(blocks))):
            for name in ("drop_path1", "drop_path2"):
                setattr(block, name, DropPath(p) if p > 0 else nn.Identity())

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.permute(0, 2, 3, 1)  # timm's Swin stages work on B x h x w x C
        feats = []
        last = len(self.net.layers) - 1
        for i, stage in enumerate(self.net.layers):
            x = stage(x)
            out = self.net.norm(x) if i == last else x
            feats.append(out.permute(0, 3, 1, 2).contiguous())
        return feats


@register_backbone("random_init_resnet50", method="random_init", arch="resnet50", patch_size=CNN_PATCH_SIZE)
def random_init_resnet50(modalities=("rgb", "dsm"), **kw) -> MultiModalResNet:
    """ResNet-50 (timm) with one stem conv per modality, timm's default random init."""
    return MultiModalResNet("resnet50", modalities=modalities, **kw)


@register_backbone("random_init_swin_b", method="random_init", arch="swin_b", patch_size=CNN_PATCH_SIZE)
def random_init_swin_b(modalities=("rgb", "dsm"), **kw) -> MultiModalSwin:
    """Swin-B/4 window 7 (timm) with one patch projection per modality, timm's default random init."""
    return MultiModalSwin("swin_base_patch4_window7_224", modalities=modalities, **kw)
