"""The small contract tasks may rely on, beyond ``len`` and dict samples: metainfo, plot, label summaries.

A dataset (one file per dataset, registered with ``@register_dataset``) provides:

* ``__getitem__`` -> a dict sample (``docs/layout.md``: ``rgb``, ``dsm``, ``dsm_valid``, ``mask``, ``boxes`` +
  ``box_labels``, ``label``, ``rgb_t2`` + ``change``, ...);
* ``metainfo`` -> class names per task under the keys tasks declare (``classes`` for segmentation,
  ``scene_classes``, ``det_classes``; see each task's ``class_names_key``);
* ``plot(sample)`` -> a matplotlib Figure;
* optionally ``label_summary(kind)`` -> one cheap summary per sample (no image decoding) for the
  ``SUMMARIES`` kinds it can give, else None. Tasks stratify label fractions with these; where a
  dataset gives none, :func:`label_summary` decodes the samples once instead.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Subset

#: The summary kinds and what each holds per sample.
SUMMARIES = {
    "scene_class": "int64: the scene class (sample key `label`)",
    "dominant_class": "int64: the most frequent class of `mask`",
    "box_classes": "int64 array: the classes of the sample's boxes (`box_labels`), possibly empty",
    "has_change": "int64 0/1: whether `change` has any changed pixel",
    "mean_height": "float64: mean `ndsm` over valid pixels (0 when none is valid)",
}


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _mean_height(sample: dict) -> float:
    valid = _numpy(sample["dsm_valid"]).astype(bool)
    height = _numpy(sample["ndsm"])
    return float(height[valid].mean()) if valid.any() else 0.0


#: How a summary is read off a decoded sample, for datasets without a cheap ``label_summary``.
_FROM_SAMPLE: dict[str, Callable[[dict], object]] = {
    "scene_class": lambda s: int(_numpy(s["label"])),
    "dominant_class": lambda s: int(np.bincount(_numpy(s["mask"]).ravel().astype(np.int64)).argmax()),
    "box_classes": lambda s: _numpy(s["box_labels"]).astype(np.int64).reshape(-1),
    "has_change": lambda s: int(_numpy(s["change"]).astype(bool).any()),
    "mean_height": _mean_height,
}


def label_summary(dataset, kind: str) -> np.ndarray | list[np.ndarray]:
    """Per-sample ``kind`` summary of ``dataset`` (a Subset is resolved through its parent)."""
    if kind not in SUMMARIES:
        raise KeyError(f"unknown label summary {kind!r}; known: {', '.join(SUMMARIES)}")
    if isinstance(dataset, Subset):
        parent = label_summary(dataset.dataset, kind)
        picked = [parent[i] for i in dataset.indices]
        return picked if kind == "box_classes" else np.asarray(picked)
    cheap = getattr(dataset, "label_summary", None)
    values = cheap(kind) if callable(cheap) else None
    if values is None:
        values = [_FROM_SAMPLE[kind](dataset[i]) for i in range(len(dataset))]
    if kind == "box_classes":
        return [np.asarray(v, dtype=np.int64).reshape(-1) for v in values]
    return np.asarray(values, dtype=np.float64 if kind == "mean_height" else np.int64)
