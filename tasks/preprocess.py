"""Input normalisation per modality, as an mmengine data preprocessor (runs on the model's device)."""

from __future__ import annotations

import torch
from mmengine.model import BaseDataPreprocessor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


class ModalityPreprocessor(BaseDataPreprocessor):
    """Moves a batch to the device and normalises each modality.

    RGB uses ImageNet statistics (what pretrained ViTs expect); DSM is standardised per
    tile because absolute heights depend on terrain; multispectral bands use fixed
    reflectance statistics. A ``<modality>_valid`` key in the inputs marks nodata.
    """

    def __init__(self, ms_mean: float = 0.3, ms_std: float = 0.2) -> None:
        super().__init__()
        self.register_buffer("rgb_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.ms_mean, self.ms_std = ms_mean, ms_std

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = dict(data["inputs"])
        if "rgb" in inputs:
            inputs["rgb"] = (inputs["rgb"].float() - self.rgb_mean) / self.rgb_std
        if "rgb_t2" in inputs:
            inputs["rgb_t2"] = (inputs["rgb_t2"].float() - self.rgb_mean) / self.rgb_std
        if "dsm" in inputs:
            inputs["dsm"] = standardize_dsm(inputs["dsm"].float(), inputs.pop("dsm_valid", None))
        if "ms" in inputs:
            inputs["ms"] = (inputs["ms"].float() - self.ms_mean) / self.ms_std
        return {"inputs": inputs, "data_samples": data.get("data_samples")}
