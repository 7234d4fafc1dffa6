"""Co-registered augmentation of multi-modal samples: one geometry for every modality, colour for optical bands.

MSSDF's official pretraining pipeline (albumentations, ``mssdf_pretrain/datasets.py``) applies, to the
image and the DSM together: ``Flip(p=0.5)`` (horizontal, vertical or both), ``ColorJitter(p=0.5)``
(brightness, contrast, saturation and hue 0.2) and ``RandomResizedCrop(scale=(0.8, 1.5), p=0.5)``.
The same is done here with torchvision: the crop box comes from ``RandomResizedCrop.get_params``
(a scale above 1 asks for more than the image holds; torchvision then retries and finally falls
back to a centre crop, as albumentations does), every spatial key gets that box and flip, and the
colour jitter touches RGB only (official: the colormapped DSM too, which would falsify heights).
Heights are resampled bilinearly; a pixel stays valid only if every pixel it was interpolated from
was valid; label maps are resampled by nearest neighbour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torchvision.transforms import ColorJitter, InterpolationMode, RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

#: How each sample key is resampled; keys not listed are left untouched.
BILINEAR = ("rgb", "rgb_t2", "ms", "dsm", "ndsm")
NEAREST = ("mask", "mask_t2", "change")
VALID = ("dsm_valid",)
OPTICAL = ("rgb", "rgb_t2")


class CoRegisteredAugment:
    """Random flip, resized crop and (RGB-only) colour jitter, applied identically to every modality.

    Randomness comes from torch's global generator, so a seeded run (mmengine ``randomness``) gets
    the same augmentations every time.
    """

    def __init__(self, flip_p: float = 0.5, jitter_p: float = 0.5, crop_p: float = 0.5,
                 crop_scale: Sequence[float] = (0.8, 1.5), jitter: float = 0.2) -> None:  # fmt: skip
        self.flip_p, self.jitter_p, self.crop_p = flip_p, jitter_p, crop_p
        self.crop_scale = tuple(crop_scale)
        self.jitter = ColorJitter(jitter, jitter, jitter, min(jitter, 0.5))

    def config(self) -> dict:
        """What this augmentation does, for checkpoint metadata."""
        return dict(flip_p=self.flip_p, jitter_p=self.jitter_p, crop_p=self.crop_p, crop_scale=list(self.crop_scale),
                    jitter=self.jitter.brightness[1] - 1)  # fmt: skip

    def __call__(self, sample: Mapping[str, torch.Tensor]) -> dict:
        out = dict(sample)
        spatial = [k for k in (*BILINEAR, *NEAREST, *VALID) if k in out]
        if not spatial:
            return out
        h, w = out[spatial[0]].shape[-2:]
        if torch.rand(()) < self.crop_p:
            top, left, ch, cw = RandomResizedCrop.get_params(out[spatial[0]], self.crop_scale, (3 / 4, 4 / 3))
            for key in spatial:
                out[key] = self._resized_crop(key, out[key], top, left, ch, cw, (h, w))
        if torch.rand(()) < self.flip_p:
            kind = int(torch.randint(3, ()))  # 0 horizontal, 1 vertical, 2 both (albumentations' Flip)
            for key in spatial:
                if kind in (0, 2):
                    out[key] = out[key].flip(-1)
                if kind in (1, 2):
                    out[key] = out[key].flip(-2)
        if torch.rand(()) < self.jitter_p:
            for key in OPTICAL:
                if key in out:
                    out[key] = self.jitter(out[key].clamp(0, 1))
        return out

    @staticmethod
    def _resized_crop(key: str, x: torch.Tensor, top: int, left: int, ch: int, cw: int, size) -> torch.Tensor:
        if key in NEAREST:
            return TF.resized_crop(x[None], top, left, ch, cw, list(size), InterpolationMode.NEAREST)[0]
        bilinear = dict(interpolation=InterpolationMode.BILINEAR, antialias=False)
        out = TF.resized_crop(x.float(), top, left, ch, cw, list(size), **bilinear)
        if key in VALID:  # valid only where every source pixel was valid
            return out >= 1 - 1e-6
        return out.to(x.dtype)
