"""Per-modality input normalisation shared by pretraining methods and downstream tasks."""

from __future__ import annotations

from collections.abc import Mapping

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Fixed reflectance statistics for multispectral bands in [0, 1].
MS_MEAN, MS_STD = 0.3, 0.2


def standardize_dsm(dsm: torch.Tensor, valid: torch.Tensor | None = None, eps: float = 1e-3) -> torch.Tensor:
    """Per-tile z-score of heights over valid pixels; nodata becomes 0 (the tile mean), never a wrapped value."""
    if valid is None:
        valid = torch.isfinite(dsm)
    valid = valid & torch.isfinite(dsm)
    x = torch.where(valid, dsm, torch.zeros_like(dsm))
    count = valid.flatten(1).sum(1).clamp(min=1).view(-1, 1, 1, 1)
    mean = x.flatten(1).sum(1).view(-1, 1, 1, 1) / count
    var = (torch.where(valid, x - mean, torch.zeros_like(x)) ** 2).flatten(1).sum(1).view(-1, 1, 1, 1) / count
    return torch.where(valid, (x - mean) / (var.sqrt() + eps), torch.zeros_like(x))


def normalize_modalities(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Normalise every modality of a batch; ``<modality>_valid`` nodata masks are consumed.

    RGB (and ``rgb_t2``) use ImageNet statistics, which pretrained ViTs expect; DSM is
    standardised per tile because absolute heights depend on terrain; multispectral bands
    use fixed reflectance statistics. Unknown keys pass through unchanged.
    """
    out = {k: v for k, v in inputs.items() if not k.endswith("_valid")}
    for key in ("rgb", "rgb_t2"):
        if key in out:
            x = out[key].float()
            mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
            out[key] = (x - mean) / std
    if "dsm" in out:
        out["dsm"] = standardize_dsm(out["dsm"].float(), inputs.get("dsm_valid"))
    if "ms" in out:
        out["ms"] = (out["ms"].float() - MS_MEAN) / MS_STD
    return out
