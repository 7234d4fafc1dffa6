"""CMID's inputs: two views of each sample with known geometry, and block-wise masks.

The official data pipeline (per image, in the dataloader) makes an "original" view (the
whole image) and a random resized crop with a horizontal flip and colour augmentation,
records where every cell of each view's output grid lies in the original image (for the
local branch's matching) and masks both views block-wise. Here the same happens on the
batch, in the training step: crops are one batched ``roi_align`` (torchvision), the colour
augmentation is torchvision's, and locations come from the crop boxes directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torchvision.transforms as T
import torchvision.transforms.v2 as T2
from torch import Tensor
from torchvision.ops import roi_align


def block_mask(batch: int, grid: tuple[int, int], ratio: float, device=None) -> Tensor:
    """B x gh x gw boolean block mask with exactly ``ceil(ratio * gh * gw)`` blocks masked per sample
    (the official generator's count), drawn uniformly without replacement."""
    n = grid[0] * grid[1]
    count = math.ceil(ratio * n - 1e-9)  # tolerance: 0.6 * 25 is 15.000000000000002 in floating point
    order = torch.rand(batch, n, device=device).argsort(1)
    mask = torch.zeros(batch, n, dtype=torch.bool, device=device)
    mask.scatter_(1, order[:, :count], True)
    return mask.view(batch, *grid)


def upsample_mask(mask: Tensor, factor: int) -> Tensor:
    """Repeat every block ``factor`` times along both axes (B x h x w -> B x h*f x w*f)."""
    return mask.repeat_interleave(factor, 1).repeat_interleave(factor, 2)


def fill_masked(x: Tensor, pixel_mask: Tensor) -> Tensor:
    """Masked pixels (``pixel_mask`` B x H x W, True = masked) take the image's per-channel mean, as the official
    ``mask_color="mean"``."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return torch.where(pixel_mask[:, None], mean, x)


def random_crop_boxes(batch: int, size: int, scale: Sequence[float], ratio: Sequence[float]) -> Tensor:
    """B x 4 boxes (top, left, height, width) in pixels, sampled as torchvision's RandomResizedCrop."""
    probe = torch.empty(1, size, size)  # get_params only reads the size
    return torch.tensor([T.RandomResizedCrop.get_params(probe, list(scale), list(ratio)) for _ in range(batch)],
                        dtype=torch.float32)  # fmt: skip


def crop_resize(x: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Crop every sample to its box and resize to ``size`` (bilinear, area-averaged when shrinking)."""
    top, left, h, w = boxes.to(x.device, x.dtype).unbind(1)
    index = torch.arange(x.shape[0], device=x.device, dtype=x.dtype)
    rois = torch.stack([index, left, top, left + w, top + h], 1)
    return roi_align(x, rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def cell_centres(boxes: Tensor, flips: Tensor, cells: int) -> Tensor:
    """B x cells² x 2 (y, x) centres in original-image pixels of each output cell of each view, row-major;
    a flipped view's columns run right to left."""
    steps = (torch.arange(cells, dtype=torch.float32) + 0.5) / cells
    top, left, h, w = boxes.unbind(1)
    ys = top[:, None] + steps[None] * h[:, None]  # B x cells
    xs = left[:, None] + steps[None] * w[:, None]
    xs = torch.where(flips[:, None], xs.flip(1), xs)
    grid = torch.stack(torch.broadcast_tensors(ys[:, :, None], xs[:, None, :]), -1)  # B x cells x cells x 2
    return grid.flatten(1, 2)


def colour_augmentation(size: int) -> T2.Compose:
    """The official view's photometric augmentation, from torchvision: colour jitter (p 0.8), Gaussian blur,
    Gaussian noise (p 0.6), solarize (p 0.2), grey (p 0.2). The blur kernel scales with the image (7 px at 224)."""
    kernel = max(3, int(7 * size / 224) | 1)
    return T2.Compose([
        T2.RandomApply([T2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        T2.GaussianBlur(kernel, sigma=(0.1, 2.0 * max(size / 224, 0.25))),
        T2.RandomApply([T2.GaussianNoise(sigma=0.02)], p=0.6),
        T2.RandomSolarize(0.5, p=0.2),
        T2.RandomGrayscale(p=0.2),
    ])  # fmt: skip


def make_views(
    inputs: Mapping[str, Tensor], modalities: Sequence[str], cells: int, crop_scale: Sequence[float],
    colour: T2.Compose | None,
) -> list[tuple[dict[str, Tensor], Tensor]]:  # fmt: skip
    """The original view and one random resized, flipped, colour-augmented view of raw inputs.

    Returns ``[(inputs, locations), (inputs, locations)]``: raw modality tensors (and their
    ``<modality>_valid`` masks, cropped alike, where present) and the B x cells² x 2 centres of
    each view's output cells in the original image. Only RGB gets colour augmentation; every
    modality gets the same crop and flip, so the views stay co-registered.
    """
    first = inputs[modalities[0]]
    b, size = first.shape[0], first.shape[-1]
    if first.shape[-2] != size:
        raise ValueError(f"CMID expects square inputs, got {tuple(first.shape[-2:])}")
    whole = torch.tensor([[0.0, 0.0, size, size]]).expand(b, -1)
    original = ({k: v for k, v in inputs.items()}, cell_centres(whole, torch.zeros(b, dtype=torch.bool), cells))
    boxes = random_crop_boxes(b, size, crop_scale, (3 / 4, 4 / 3))
    flips = torch.rand(b) < 0.5
    view = {}
    for key, value in inputs.items():
        if not (key in modalities or key.removesuffix("_valid") in modalities):
            continue
        x = crop_resize(value.float(), boxes, size)
        if key.endswith("_valid"):
            x = x > 0.999  # a pixel that mixes in any nodata is nodata
        x = torch.where(flips.to(x.device)[:, None, None, None], x.flip(-1), x)
        if key == "rgb" and colour is not None:
            x = torch.stack([colour(img.clamp(0, 1)) for img in x])
        view[key] = x
    return [original, (view, cell_centres(boxes, flips, cells))]
