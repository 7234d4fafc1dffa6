"""Seeded, deterministic corruptions of a test sample: robustness as a sweep axis, with no retraining.

A trained cell's head is evaluated again on corrupted copies of its test split. Every corruption is a
function of (corruption, severity, sample index, seed) only, so every backbone sees the same corrupted
copies, and it returns a new dict: the clean sample is never modified (tensors are copied before any
change). Shapes and dtypes are kept; optical bands stay in [0, 1].

Severities (``SEVERITIES``; pixels are the tile's own pixels, since optics and registration errors
are fixed in pixels, not in fractions of a tile):

=================  ===============================================  ======  ======  ======  ======  ======
corruption         what a severity sets                              1       2       3       4       5
=================  ===============================================  ======  ======  ======  ======  ======
gaussian_noise     std of additive noise on RGB in [0, 1]            0.08    0.12    0.18    0.26    0.38
gaussian_blur      std of the Gaussian blur (px)                     1       2       3       4       6
haze               mean transmission t of I = J t + A (1 - t)        0.8     0.65    0.5     0.4     0.3
jpeg               JPEG quality (PIL / libjpeg)                      25      18      15      10      7
dsm_holes          share of DSM pixels turned to nodata (blobs)      0.05    0.1     0.2     0.35    0.5
misregistration    shift of the second date ``rgb_t2`` (px)          1       2       4       6       8
missing_dsm        share of tiles whose DSM is absent                0.25    0.5     1.0
missing_rgb        share of tiles whose RGB is absent                0.25    0.5     1.0
=================  ===============================================  ======  ======  ======  ======  ======

Noise, blur and JPEG follow ImageNet-C (Hendrycks and Dietterich, 2019), the convention REOBench also
uses for remote sensing. The optical corruptions touch every optical key of a sample (``rgb`` and
``rgb_t2``: both dates of a change pair, with their own noise draws); ``ms`` is left clean.

**An absent modality** is the value the encoders' input normalisation maps to 0 plus an all-False
validity mask, because that is what every encoder accepts without retraining:

* DSM absent: ``dsm`` = 0 and ``dsm_valid`` all False. ``backbones.normalize.standardize_dsm`` maps
  nodata pixels to 0 (the tile mean), exactly as it treats a DSM hole, so an absent DSM is a tile that
  is entirely nodata.
* RGB absent: ``rgb`` (and ``rgb_t2``, if any) = the ImageNet mean colour, which the RGB normalisation
  maps to exactly 0, and a new ``rgb_valid`` mask, all False. (Black would normalise to a strong
  out-of-distribution input.)

Dropping the key instead is not an option: ``MultiModalViT`` and the CNN backbones refuse a batch
that lacks one of their modalities. With ``fusion="mean"`` the absent stream adds its patch
embedding's bias only; with ``fusion="late"`` (MSSDF) its stream runs on a zero input and is averaged
in. A backbone that learns to drop a stream (``MultiModalViT.embed(keep=...)``) can read the all-False
masks to do so; today the normalisation consumes them before the encoder. The missing-modality
severities are shares of tiles, and which tiles lose the modality is drawn without the severity in
the seed, so the tiles missing it at severity 1 also miss it at 2 and 3 (a nested series, as the
label fractions are); severity 3 is "absent everywhere".

:func:`applicable` says which corruptions a cell may get from the keys its model reads: a DSM
corruption only where the DSM is an input (for depth, ``dsm_valid`` is part of the target), a
missing modality only where another modality remains, misregistration only for a bi-temporal input.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

#: Optical keys the image corruptions change (every date of a change pair).
OPTICAL = ("rgb", "rgb_t2")
#: The value RGB normalisation maps to 0 (``backbones.normalize.IMAGENET_MEAN``; this layer may not import
#: backbones, and ``tests/test_corruptions.py`` checks the two agree).
RGB_ABSENT = (0.485, 0.456, 0.406)
#: Airlight of the haze model: a bright, slightly blue-grey sky.
AIRLIGHT = (0.85, 0.87, 0.9)

SEVERITIES: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "gaussian_blur": (1.0, 2.0, 3.0, 4.0, 6.0),
    "haze": (0.8, 0.65, 0.5, 0.4, 0.3),
    "jpeg": (25, 18, 15, 10, 7),
    "dsm_holes": (0.05, 0.1, 0.2, 0.35, 0.5),
    "misregistration": (1, 2, 4, 6, 8),
    "missing_dsm": (0.25, 0.5, 1.0),
    "missing_rgb": (0.25, 0.5, 1.0),
}
#: Corruptions whose outcome has no randomness (the seed changes nothing).
DETERMINISTIC = ("gaussian_blur", "jpeg")


def severity_value(name: str, severity: int) -> float:
    """The parameter ``severity`` (1-based) sets for corruption ``name``; one clear error for an unknown pair."""
    if name not in SEVERITIES:
        raise KeyError(f"unknown corruption {name!r}; known: {', '.join(SEVERITIES)}")
    levels = SEVERITIES[name]
    if not 1 <= int(severity) <= len(levels):
        raise ValueError(f"{name} has severities 1..{len(levels)}, got {severity}")
    return float(levels[int(severity) - 1])


def _rng(*key: int | str) -> np.random.Generator:
    """A generator seeded by the key; strings through CRC-32, since Python's hash() is salted per process."""
    return np.random.default_rng([zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in key])


def _optical(sample: Mapping[str, Any]) -> list[str]:
    keys = [k for k in OPTICAL if k in sample]
    if not keys:
        raise KeyError(f"no optical image to corrupt: the sample has {sorted(sample)}, expected one of {OPTICAL}")
    return keys


def _need(sample: Mapping[str, Any], *keys: str) -> None:
    missing = [k for k in keys if k not in sample]
    if missing:
        raise KeyError(f"this corruption needs sample keys {missing}; the sample has {sorted(sample)}")


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """A smooth random field in [0, 1] of ``shape``: ``cells`` x ``cells`` uniform values, bicubic upsampled."""
    coarse = torch.from_numpy(rng.random((1, 1, cells, cells)))
    return F.interpolate(coarse, size=shape, mode="bicubic", align_corners=True)[0, 0].clamp(0, 1).numpy()


def gaussian_noise(sample, value, rng_for):
    for key in _optical(sample):
        x = sample[key]
        noise = torch.from_numpy(rng_for(key).normal(0.0, value, tuple(x.shape))).to(x.dtype)
        sample[key] = (x + noise).clamp(0, 1)


def gaussian_blur(sample, value, rng_for):
    # OpenCV: float32 in and out (no 8-bit round trip) and any tile size, however wide the kernel.
    for key in _optical(sample):
        x = sample[key]
        hwc = np.ascontiguousarray(x.permute(1, 2, 0).numpy(), dtype=np.float32)
        out = cv2.GaussianBlur(hwc, (0, 0), sigmaX=value, sigmaY=value, borderType=cv2.BORDER_REFLECT_101)
        sample[key] = torch.from_numpy(out.reshape(hwc.shape)).permute(2, 0, 1).clamp(0, 1).to(x.dtype).contiguous()


def haze(sample, value, rng_for):
    # The atmospheric scattering model (Koschmieder) is one line; no library applies it to tensors.
    # Transmission varies smoothly over the tile (+-0.1 around the severity's mean), as haze does.
    for key in _optical(sample):
        x = sample[key]
        t = value + 0.2 * (_smooth_field(rng_for(key), tuple(x.shape[-2:]), 4) - 0.5)
        t = torch.from_numpy(np.clip(t, 0.05, 1.0)).to(x.dtype)[None]
        sample[key] = (x * t + x.new_tensor(AIRLIGHT).view(3, 1, 1) * (1 - t)).clamp(0, 1)


def jpeg(sample, value, rng_for):
    # PIL (libjpeg), as ImageNet-C compresses; the image goes through 8 bits, as a JPEG file does.
    for key in _optical(sample):
        x = sample[key]
        hwc = (x.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(hwc).save(buffer, format="JPEG", quality=int(value))
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.float32) / 255
        sample[key] = torch.from_numpy(decoded).permute(2, 0, 1).to(x.dtype).contiguous()


def dsm_holes(sample, value, rng_for):
    # Blobs, not salt-and-pepper: nodata in a DSM comes in patches (occlusions, water, matching failures).
    # The top `value` share of a smooth random field becomes nodata; heights there are 0, the data convention.
    _need(sample, "dsm", "dsm_valid")
    valid = sample["dsm_valid"]
    h, w = valid.shape[-2:]
    field = _smooth_field(rng_for("dsm"), (h, w), max(2, min(h, w) // 8))
    holes = torch.from_numpy(field >= np.quantile(field, 1 - value)).expand_as(valid)
    sample["dsm_valid"] = valid & ~holes
    sample["dsm"] = torch.where(holes, torch.zeros_like(sample["dsm"]), sample["dsm"])


def misregistration(sample, value, rng_for):
    # A whole-pixel shift in a random direction, edges replicated (not wrapped, as torch.roll would):
    # sub-pixel interpolation would also blur the image and mix two corruptions.
    _need(sample, "rgb_t2")
    x = sample["rgb_t2"]
    angle = rng_for("rgb_t2").uniform(0, 2 * np.pi)
    dx, dy = (int(round(value * f(angle))) for f in (np.cos, np.sin))
    h, w = x.shape[-2:]
    pad = int(value)
    padded = F.pad(x[None].float(), (pad, pad, pad, pad), mode="replicate")[0]
    sample["rgb_t2"] = padded[:, pad - dy : pad - dy + h, pad - dx : pad - dx + w].to(x.dtype).contiguous()


def _missing(modality: str) -> Callable:
    def corrupt(sample, value, rng_for, nested_u: float) -> None:
        if nested_u >= value:
            return
        if modality == "dsm":
            _need(sample, "dsm")
            sample["dsm"] = torch.zeros_like(sample["dsm"])
            sample["dsm_valid"] = torch.zeros(sample["dsm"].shape, dtype=torch.bool)
        else:
            _need(sample, "rgb")
            for key in _optical(sample):  # every date: a sensor that is missing is missing at both
                x = sample[key]
                sample[key] = x.new_tensor(RGB_ABSENT).view(3, 1, 1).expand_as(x).clone()
                sample[f"{key}_valid"] = torch.zeros((1, *x.shape[-2:]), dtype=torch.bool)

    return corrupt


CORRUPTIONS: dict[str, Callable] = {
    "gaussian_noise": gaussian_noise,
    "gaussian_blur": gaussian_blur,
    "haze": haze,
    "jpeg": jpeg,
    "dsm_holes": dsm_holes,
    "misregistration": misregistration,
    "missing_dsm": _missing("dsm"),
    "missing_rgb": _missing("rgb"),
}
#: The input keys each corruption changes (``applicable`` refuses a corruption of a key that is not an input).
CHANGES = {
    "gaussian_noise": OPTICAL, "gaussian_blur": OPTICAL, "haze": OPTICAL, "jpeg": OPTICAL,
    "dsm_holes": ("dsm",), "misregistration": ("rgb_t2",), "missing_dsm": ("dsm",), "missing_rgb": ("rgb", "rgb_t2"),
}  # fmt: skip


def corrupt(sample: Mapping[str, Any], name: str, severity: int, seed: int, index: int) -> dict[str, Any]:
    """A corrupted copy of ``sample`` (``name`` at ``severity``), seeded by (name, severity, index, seed).

    The input sample is untouched: every tensor is cloned before it is changed. ``index`` is the
    sample's position in its split, so the same tile gets the same corruption in every cell.
    """
    value = severity_value(name, severity)
    # Copies of every tensor, so no corruption can write into the clean split (a DataLoader may hold it).
    out = {k: v.clone() if torch.is_tensor(v) else v for k, v in sample.items()}
    if name.startswith("missing_"):
        # Without the severity in the seed: the tiles missing a modality at one severity miss it at the next.
        CORRUPTIONS[name](out, value, None, _rng(seed, name, index).random())
    else:
        CORRUPTIONS[name](out, value, lambda key: _rng(seed, name, int(severity), index, key))
    return out


def applicable(name: str, inputs: Sequence[str]) -> bool:
    """Whether corruption ``name`` may be applied to a cell whose model reads the sample keys ``inputs``.

    ``inputs`` are the keys the model takes as input (the task's input modalities plus, for change
    detection, ``rgb_t2``). A corruption applies when it changes at least one input key and never a
    key that is only a target; a missing modality also needs another modality (not another date of the
    same one) to remain.
    """
    if name not in CHANGES:
        raise KeyError(f"unknown corruption {name!r}; known: {', '.join(CHANGES)}")
    inputs = set(inputs)
    changed = set(CHANGES[name])
    if name == "dsm_holes" or name == "missing_dsm":  # dsm_valid is the depth task's target mask
        if "dsm" not in inputs:
            return False
    if not changed & inputs:
        return False
    if name.startswith("missing_"):
        return bool(inputs - changed - {"rgb_t2"} - {f"{k}_valid" for k in inputs})
    return True


class CorruptedDataset(Dataset):
    """``dataset`` with every sample corrupted by ``name`` at ``severity`` (seeded by ``seed`` and the index).

    Everything else (``metainfo``, ``plot``, ``label_summary``, ...) is the wrapped dataset's: labels are
    never corrupted. ``inputs`` (the keys the model reads), when given, refuses a corruption that does
    not apply (``applicable``), e.g. DSM holes for a depth cell whose DSM is only a target.
    """

    def __init__(self, dataset, name: str, severity: int, seed: int = 0, inputs: Sequence[str] | None = None) -> None:
        severity_value(name, severity)  # one clear error for an unknown corruption or severity, at once
        if inputs is not None and not applicable(name, inputs):
            raise ValueError(f"corruption {name!r} does not apply to a model reading {sorted(inputs)}")
        self.dataset, self.name, self.severity, self.seed = dataset, name, int(severity), int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n}")
        index = int(index) % n
        return corrupt(self.dataset[index], self.name, self.severity, self.seed, index)

    def __getattr__(self, attr: str):
        if attr == "dataset":  # not set yet (unpickling): avoid recursing into __getattr__
            raise AttributeError(attr)
        return getattr(self.dataset, attr)

    def __repr__(self) -> str:
        return f"CorruptedDataset({self.dataset!r}, {self.name!r}, severity={self.severity}, seed={self.seed})"
