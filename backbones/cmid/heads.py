"""CMID's heads: the MIM pixel decoder, the local (DINO-style) projection head, the MoCo key queue
and the matching of spatial positions between two views.

The global projector is mmpretrain's ``MoCoV2Neck`` (fc-relu-fc, no norm, as the official
one) and its InfoNCE is mmpretrain's ``ContrastiveHead`` (see model.py). mmpretrain keeps
MoCo's queue inside its MoCo model class and has no DINO head, so those two are written
here, small.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.dist import all_gather
from torch import Tensor, nn


class MIMDecoder(nn.Sequential):
    """1 x 1 conv to stride² x channels, then PixelShuffle(stride): raw pixels at full resolution (SimMIM/CMID)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel_size: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, stride**2 * out_channels, kernel_size, padding=kernel_size // 2),
            nn.PixelShuffle(stride),
        )


def _norm(kind: str, dim: int) -> nn.Module:
    if kind == "LN":
        return nn.LayerNorm(dim)
    if kind == "BN":
        return nn.BatchNorm1d(dim)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"head_norm {kind!r} is not one of 'LN', 'BN', 'none'")


class _PositionBatchNorm(nn.Module):
    """BatchNorm1d over every position of every sample (B x N x C input)."""

    def __init__(self, bn: nn.BatchNorm1d) -> None:
        super().__init__()
        self.bn = bn

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(x.flatten(0, 1)).view_as(x)


class LocalHead(nn.Module):
    """DINO-style head on position features (B x N x C): MLP (``layers`` linear layers, norm, GELU) to a
    bottleneck, L2 normalisation, then cosine logits against ``prototypes`` unit vectors (DINO's
    weight-normalised last layer with its gain fixed at 1, the official ``norm_last_layer``).

    ``norm="LN"`` (default) normalises each position on its own, so any batch size works, batch
    1 included; ``"BN"`` is the official ResNet-50 setting (statistics over all positions of the
    batch: it fails for a single position in training mode); ``"none"`` the official Swin one.
    """

    def __init__(self, in_dim: int, prototypes: int = 2048, hidden: int = 2048, bottleneck: int = 256,
                 layers: int = 3, norm: str = "LN") -> None:  # fmt: skip
        super().__init__()
        dims = [in_dim] + [hidden] * (max(layers, 1) - 1) + [bottleneck]
        mlp: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            mlp.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                n = _norm(norm, b)
                mlp += [_PositionBatchNorm(n) if isinstance(n, nn.BatchNorm1d) else n, nn.GELU()]
        self.mlp = nn.Sequential(*mlp)
        self.prototypes = nn.Parameter(torch.empty(prototypes, bottleneck))
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        z = F.normalize(self.mlp(x), dim=-1)
        return F.linear(z, F.normalize(self.prototypes, dim=-1))


class KeyQueue(nn.Module):
    """MoCo's FIFO of L2-normalised keys (``size`` x ``dim`` buffer), the negatives of the global branch.

    Keys are gathered from all ranks before they are enqueued (mmengine ``all_gather``); any
    batch size works (the write wraps around the end; a batch larger than the queue keeps
    its last ``size`` keys).
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, keys: Tensor) -> None:
        keys = torch.cat(all_gather(keys.detach().contiguous()))[-len(self.keys) :]
        index = (int(self.ptr) + torch.arange(len(keys), device=keys.device)) % len(self.keys)
        self.keys[index] = keys.to(self.keys.dtype)
        self.ptr.fill_((int(self.ptr) + len(keys)) % len(self.keys))


def match_positions(loc_q: Tensor, loc_k: Tensor, num: int) -> tuple[Tensor, Tensor]:
    """For each query cell (B x Nq x 2 image coordinates) the nearest key cell; keep the ``num`` query
    cells whose nearest key cell is closest. Returns indices (B x num) into queries and into keys."""
    dist = torch.cdist(loc_q, loc_k)  # B x Nq x Nk
    nearest_dist, nearest = dist.min(-1)
    num = min(num, loc_q.shape[1])
    idx_q = nearest_dist.topk(num, dim=1, largest=False).indices
    return idx_q, nearest.gather(1, idx_q)


def gather_positions(feat: Tensor, index: Tensor) -> Tensor:
    """B x C x h x w features at flat positions ``index`` (B x n) -> B x n x C."""
    flat = feat.flatten(2).transpose(1, 2)
    return flat.gather(1, index[..., None].expand(-1, -1, flat.shape[-1]))
