"""The embedded synthetic benchmark: on-demand, atomic on-disk cache and a TorchGeo-style dataset.

Scenes come from :func:`rsdatasets.scene_model.generate_scene`. Each split has its own random
stream and sample ``i`` is drawn from ``default_rng([seed, stream, i])``, so it is the same whatever
``n`` is. A split lives in ``<root>/<GENERATOR_VERSION>_seed<seed>_<size>px/<split>_n<n>/`` as one
``.npy`` per key (stacked over samples) plus ``manifest.json``; the folder appears by an atomic rename
only once complete, so an interrupted run never leaves a half-written split behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from . import register_dataset
from .scene_model import DET_CLASSES, SCENE_CLASSES, SEG_CLASSES, generate_scene

if TYPE_CHECKING:
    from matplotlib.figure import Figure

GENERATOR_VERSION = "synthetic-v1"  # bump whenever generate_scene's output changes
GSD = 1.0  # metres per pixel of the cached benchmark
SPLITS = {"pool": (0, 2000), "train": (1, 400), "val": (2, 100), "test": (3, 200)}  # stream, default n
QUANTISED = ("rgb", "ms", "rgb_t2")  # stored as uint8 = round(255 * value)
# Storage dtype per key; heights stay float32 for dsm (absolute metres need the precision).
STORAGE = {
    "rgb": np.uint8,
    "ms": np.uint8,
    "rgb_t2": np.uint8,
    "dsm": np.float32,
    "ndsm": np.float16,
    "dsm_valid": np.bool_,
    "mask": np.uint8,
    "mask_t2": np.uint8,
    "change": np.uint8,
    "label": np.int64,
    "layout": np.int64,
    "dominant": np.int64,
}
# Potsdam colour convention for the segmentation classes.
CLASS_COLOURS = ((1.0, 1.0, 1.0), (0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (0.0, 0.8, 0.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))


def default_root() -> Path:
    """Cache root: ``$RSBENCH_DATA`` if set, else ``~/.cache/rsbench/data``."""
    env = os.environ.get("RSBENCH_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rsbench" / "data"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        valid = ", ".join(SPLITS)
        raise ValueError(f"unknown split {split!r} for the synthetic benchmark; valid splits: {valid}")


def split_dir(root: str | Path | None, split: str, seed: int = 0, size: int = 64, n: int | None = None) -> Path:
    """Cache folder of a split (whether or not it has been generated yet)."""
    _check_split(split)
    n = SPLITS[split][1] if n is None else int(n)
    base = Path(root).expanduser() if root is not None else default_root()
    return base / f"{GENERATOR_VERSION}_seed{int(seed)}_{int(size)}px" / f"{split}_n{n}"


def _track(items: Iterable[int], total: int, description: str, enabled: bool) -> Iterable[int]:
    if not enabled:
        return items
    try:
        from rich.progress import track
    except ImportError:  # rich is optional here: no bar rather than no data
        return items
    return track(items, total=total, description=description)


def _generate(split: str, seed: int, size: int, n: int, progress: bool) -> dict[str, np.ndarray]:
    stream = SPLITS[split][0]
    out: dict[str, np.ndarray] = {}
    boxes: list[np.ndarray] = []
    box_labels: list[np.ndarray] = []
    for i in _track(range(n), n, f"synthesising {split}", progress):
        scene = generate_scene(np.random.default_rng([seed, stream, i]), size=size, gsd=GSD)
        scene["dominant"] = np.int64(np.bincount(scene["mask"].ravel(), minlength=len(SEG_CLASSES)).argmax())
        for key, dtype in STORAGE.items():
            value = np.asarray(scene[key])
            if key in QUANTISED:
                value = np.round(value * 255.0)
            if key not in out:
                out[key] = np.empty((n, *value.shape), dtype)
            out[key][i] = value
        boxes.append(scene["boxes"])
        box_labels.append(scene["box_labels"])
    out["boxes"] = np.concatenate(boxes).astype(np.float32).reshape(-1, 4)
    out["box_labels"] = np.concatenate(box_labels).astype(np.uint8)
    out["box_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in boxes])]).astype(np.int64)
    return out


def synthesize(
    root: str | Path | None = None,
    split: str = "train",
    seed: int = 0,
    size: int = 64,
    n: int | None = None,
    progress: bool = False,
) -> Path:
    """Generate a split into the cache if it is not there yet and return its folder.

    ``n`` defaults to the split's standard size (pool 2000, train 400, val 100, test 200). An existing
    folder with a ``manifest.json`` is reused untouched; otherwise the split is written into a hidden
    temporary folder next to it, manifest last, and renamed into place in one step.
    """
    final = split_dir(root, split, seed, size, n)
    if (final / "manifest.json").is_file():
        return final
    n = SPLITS[split][1] if n is None else int(n)
    if seed < 0 or size < 8 or n < 1:
        raise ValueError(f"need seed >= 0, size >= 8 and n >= 1, got seed={seed}, size={size}, n={n}")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        start = time.perf_counter()
        arrays = _generate(split, int(seed), int(size), n, progress)
        for key, value in arrays.items():
            np.save(tmp / f"{key}.npy", value)
        manifest = {
            "generator": GENERATOR_VERSION,
            "split": split,
            "stream": SPLITS[split][0],
            "seed": int(seed),
            "size": int(size),
            "gsd": GSD,
            "n": n,
            "quantised_uint8": list(QUANTISED),
            "arrays": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()},
            "seg_classes": list(SEG_CLASSES),
            "scene_classes": list(SCENE_CLASSES),
            "det_classes": list(DET_CLASSES),
            "seconds": round(time.perf_counter() - start, 3),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            os.replace(tmp, final)
        except OSError:  # someone else finished first, or a foreign folder without manifest is in the way
            if not (final / "manifest.json").is_file():
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing left after a successful rename
    return final


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def plot_sample(sample: dict[str, Any], show_titles: bool = True, suptitle: str | None = None) -> Figure:
    """Figure of one sample: RGB, DSM (nodata in magenta), NIR, mask, boxes, t2, change[, prediction].

    Panels whose keys are missing are skipped; ``prediction`` may be a label map (H,W) or logits
    (C,H,W). Uses :class:`matplotlib.figure.Figure` directly, so no display or pyplot is needed.
    """
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    def rgb(key: str) -> Callable[[Any], Any]:
        return lambda ax: ax.imshow(np.clip(_np(sample[key]).transpose(1, 2, 0), 0.0, 1.0))

    def labels(key: str) -> Callable[[Any], Any]:
        def draw(ax: Any) -> None:
            x = _np(sample[key])
            ax.imshow(
                x.argmax(0) if x.ndim == 3 else x,
                cmap=ListedColormap(CLASS_COLOURS),
                vmin=-0.5,
                vmax=len(SEG_CLASSES) - 0.5,
                interpolation="nearest",
            )

        return draw

    def dsm(ax: Any) -> None:
        height = _np(sample["dsm"])[0]
        valid = _np(sample["dsm_valid"])[0].astype(bool) if "dsm_valid" in sample else np.isfinite(height)
        ax.imshow(np.ma.masked_where(~valid, height), cmap=colormaps["terrain"].with_extremes(bad="magenta"))

    def boxes(ax: Any) -> None:
        rgb("rgb")(ax)
        for (x0, y0, x1, y1), lab in zip(_np(sample["boxes"]), _np(sample["box_labels"])):
            ax.add_patch(
                Rectangle(
                    (x0 - 0.5, y0 - 0.5),
                    x1 - x0,
                    y1 - y0,
                    fill=False,
                    linewidth=1,
                    edgecolor="red" if lab == 0 else "yellow",
                )
            )

    scene = f" ({SCENE_CLASSES[int(_np(sample['label']))]})" if "label" in sample else ""
    panels = [  # (keys needed, title, painter)
        (("rgb",), "RGB" + scene, rgb("rgb")),
        (("dsm",), "DSM (m, nodata magenta)", dsm),
        (("ms",), "NIR", lambda ax: ax.imshow(_np(sample["ms"])[3], cmap="gray", vmin=0, vmax=1)),
        (("mask",), "mask", labels("mask")),
        (("rgb", "boxes", "box_labels"), "boxes (building red, car yellow)", boxes),
        (("rgb_t2",), "RGB t2", rgb("rgb_t2")),
        (("change",), "change", lambda ax: ax.imshow(_np(sample["change"]), cmap="gray", vmin=0, vmax=1)),
        (("prediction",), "prediction", labels("prediction")),
    ]
    panels = [(title, draw) for keys, title, draw in panels if all(k in sample for k in keys)]
    fig = Figure(figsize=(13, 7), layout="constrained")
    axes = fig.subplots(2, 4).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, (title, draw) in zip(axes, panels):
        draw(ax)
        if show_titles:
            ax.set_title(title, fontsize=9)
    handles = [Patch(color=c, label=name) for c, name in zip(CLASS_COLOURS, SEG_CLASSES)]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(SEG_CLASSES), fontsize=8)
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig


@register_dataset("synthetic")
class SyntheticBenchmark(Dataset):
    """Synthetic multi-modal remote-sensing benchmark (segmentation, detection, scene, change).

    Samples are dicts of tensors: ``rgb`` (3,H,W) and ``ms`` (4,H,W: B, G, R, NIR) float32 in [0, 1],
    ``dsm``/``ndsm`` (1,H,W) metres (0 where ``dsm_valid`` is False), ``dsm_valid`` bool (1,H,W),
    ``mask`` int64 (H,W), ``boxes`` float32 (N,4) xyxy pixels, ``box_labels`` int64 (N,), ``label``
    int64 scalar, ``rgb_t2`` (3,H,W), ``mask_t2`` and ``change`` int64 (H,W), and ``index``.
    """

    seg_classes = SEG_CLASSES
    scene_classes = SCENE_CLASSES
    modalities = ("rgb", "dsm", "ms")

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        seed: int = 0,
        size: int = 64,
        n: int | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        det_classes: Sequence[str] = ("building",),
    ) -> None:
        unknown = sorted(set(det_classes) - set(DET_CLASSES))
        if unknown or not det_classes:
            raise ValueError(f"unknown det_classes {unknown or list(det_classes)}; choose from {list(DET_CLASSES)}")
        self.split, self.seed, self.size, self.transforms = split, seed, size, transforms
        # Detection targets: by default buildings only. At 1 m per pixel a car is 2 x 4 px, under the
        # backbone's 8-px patch and the detectors' finest 4-px stride, and no tested detector learned
        # it (car AP50 <= 5 with the building AP50 at 71-87); cars stay a segmentation class.
        self.det_classes = tuple(det_classes)
        self._det_ids = np.array([DET_CLASSES.index(c) for c in self.det_classes])
        self._det_map = np.full(len(DET_CLASSES), -1)
        self._det_map[self._det_ids] = np.arange(len(self._det_ids))
        self.path = synthesize(root, split, seed, size, n)
        self.manifest = json.loads((self.path / "manifest.json").read_text())
        self._arrays: dict[str, np.ndarray] | None = None

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Memory-mapped arrays, opened lazily so that DataLoader workers each map their own."""
        if self._arrays is None:
            keys = self.manifest["arrays"]
            self._arrays = {k: np.load(self.path / f"{k}.npy", mmap_mode="r") for k in keys}
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}  # never pickle (copy) the mapped data

    def __len__(self) -> int:
        return int(self.manifest["n"])

    @property
    def metainfo(self) -> dict[str, Any]:
        """Class names per task, in the form mmengine's evaluators and visualizers read."""
        return {"classes": self.seg_classes, "scene_classes": self.scene_classes, "det_classes": self.det_classes}

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {self.split} split of size {n}")
        i = int(index) % n
        a = self.arrays
        lo, hi = (int(v) for v in a["box_offsets"][i : i + 2])
        box_labels = self._det_map[np.asarray(a["box_labels"][lo:hi], dtype=np.int64)]
        keep = box_labels >= 0

        def tensor(key: str, dtype: Any, scale: float | None = None) -> torch.Tensor:
            x = np.array(a[key][i], dtype=dtype)  # a writable copy out of the memory map
            return torch.from_numpy(x * np.float32(scale) if scale else x)

        sample: dict[str, Any] = {
            "rgb": tensor("rgb", np.float32, 1 / 255),
            "ms": tensor("ms", np.float32, 1 / 255),
            "dsm": tensor("dsm", np.float32),
            "ndsm": tensor("ndsm", np.float32),
            "dsm_valid": tensor("dsm_valid", np.bool_),
            "mask": tensor("mask", np.int64),
            "boxes": torch.from_numpy(np.array(a["boxes"][lo:hi], dtype=np.float32).reshape(-1, 4)[keep]),
            "box_labels": torch.from_numpy(box_labels[keep]),
            "label": torch.tensor(int(a["label"][i]), dtype=torch.int64),
            "rgb_t2": tensor("rgb_t2", np.float32, 1 / 255),
            "mask_t2": tensor("mask_t2", np.int64),
            "change": tensor("change", np.int64),
            "index": i,
        }
        return self.transforms(sample) if self.transforms is not None else sample

    def scene_labels(self) -> np.ndarray:
        """Scene class of every sample (int64, cheap: one small array), e.g. for stratified splits."""
        return np.array(self.arrays["label"], dtype=np.int64)

    def dominant_classes(self) -> np.ndarray:
        """Most frequent segmentation class of every sample (int64), for stratifying dense tasks."""
        return np.array(self.arrays["dominant"], dtype=np.int64)

    def label_summary(self, kind: str) -> np.ndarray | list[np.ndarray] | None:
        """Cheap per-sample summaries (``rsdatasets.protocol.SUMMARIES``) straight from the cached arrays."""
        a = self.arrays
        if kind == "scene_class":
            return self.scene_labels()
        if kind == "dominant_class":
            return self.dominant_classes()
        if kind == "box_classes":
            labels = self._det_map[np.asarray(a["box_labels"], dtype=np.int64)]
            offsets = np.asarray(a["box_offsets"])
            return [(lab := labels[lo:hi])[lab >= 0] for lo, hi in zip(offsets[:-1], offsets[1:])]
        if kind == "has_change":
            return np.asarray(a["change"]).reshape(len(self), -1).any(1).astype(np.int64)
        if kind == "mean_height":
            valid = np.asarray(a["dsm_valid"]).reshape(len(self), -1)
            height = np.where(valid, np.asarray(a["ndsm"], dtype=np.float64).reshape(len(self), -1), 0.0)
            return height.sum(1) / np.maximum(valid.sum(1), 1)
        return None

    def plot(self, sample: dict[str, Any], show_titles: bool = True, suptitle: str | None = None) -> Figure:
        """Plot a sample (optionally with a ``prediction`` mask); returns a matplotlib Figure."""
        return plot_sample(sample, show_titles=show_titles, suptitle=suptitle)

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(split={self.split!r}, n={len(self)}, size={self.size}, path='{self.path}')"
