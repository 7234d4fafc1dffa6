"""Bi-temporal change-detection readers: LEVIR-CD, SECOND (binary change) and CDD.

Every sample is ``rgb`` (date 1) and ``rgb_t2`` (date 2), float32 (3, H, W) in [0, 1], plus
``change`` int64 (H, W) with 0 = no change, 1 = change (every label here is fully annotated, so
none yields the ignore value 255 that ``metainfo["ignore_index"]`` names) and ``index``. Large
images can be cut into ``crop`` x ``crop`` tiles without overlap (remainders at the right/bottom
edge are dropped); the tile grid comes from the file headers, so construction decodes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from . import register_dataset
from .errors import DatasetFileError, DatasetNotFoundError
from .scene_classification import Transforms, as_image, check_index, image_size, load_gray, load_rgb, rgb_tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CHANGE_CLASSES = ("no change", "change")
IGNORE = 255
# SECOND colour code of label1/label2 (RGB -> semantic class); white marks unchanged pixels in both maps.
SECOND_COLOURS = {
    (255, 255, 255): "no change",
    (0, 0, 255): "water",
    (128, 128, 128): "non-vegetated ground surface",
    (0, 128, 0): "low vegetation",
    (0, 255, 0): "tree",
    (128, 0, 0): "building",
    (255, 0, 0): "playground",
}
_SECOND_CODES = np.array([(r << 16) | (g << 8) | b for r, g, b in SECOND_COLOURS], dtype=np.int32)
Pair = tuple[Path, Path, Path]  # (date-1 image, date-2 image, label)


def pair_folders(dataset: str, root: Path, dirs: tuple[Path, Path, Path], pattern: str, hint: str) -> list[Pair]:
    """Date-1 files matching ``pattern`` with the same-named date-2 image and label; all must exist."""
    missing = [f"{d.relative_to(root)}/" for d in dirs if not d.is_dir()]
    if missing:
        raise DatasetNotFoundError(dataset, root, missing, hint)
    t1_dir, t2_dir, label_dir = dirs
    pairs = [(p, t2_dir / p.name, label_dir / p.name) for p in sorted(t1_dir.glob(pattern))]
    if not pairs:
        raise DatasetNotFoundError(dataset, root, f"{t1_dir.relative_to(root)}/{pattern}", hint)
    absent = [f.relative_to(root) for pair in pairs for f in pair[1:] if not f.is_file()]
    if absent:
        raise DatasetNotFoundError(dataset, root, absent, "every date-1 image needs its date-2 image and label")
    return pairs


class ChangeDetectionDataset(Dataset):
    """Base of the change readers: pairs -> optional tiles -> samples; subclasses find pairs and decode labels."""

    name: ClassVar[str]
    splits: ClassVar[tuple[str, ...]]
    classes = CHANGE_CLASSES

    def __init__(self, root: str | Path, split: str, crop: int | None, transforms: Transforms | None) -> None:
        if split not in self.splits:
            raise ValueError(f"{self.name}: unknown split {split!r}; valid splits: {', '.join(self.splits)}")
        if crop is not None and crop < 1:
            raise ValueError(f"{self.name}: crop must be a positive tile size or None, got {crop}")
        self.root, self.split, self.crop, self.transforms = Path(root).expanduser(), split, crop, transforms
        self.pairs = self._find_pairs()
        self.tiles = self._tile()
        self._cache: tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self._changed: np.ndarray | None = None

    def _find_pairs(self) -> list[Pair]:
        raise NotImplementedError

    def _read_change(self, path: Path) -> np.ndarray:
        """uint8 (H, W) of 0 / 1 (/ 255 ignore) from a label file; DatasetFileError for a value that is no class."""
        raise NotImplementedError

    def _tile(self) -> list[tuple[int, int, int]]:
        """(pair, top, left) of every sample: one per pair, or a grid of ``crop`` tiles per pair."""
        if self.crop is None:
            return [(k, 0, 0) for k in range(len(self.pairs))]
        tiles = []
        for k, (t1, _, _) in enumerate(self.pairs):
            width, height = image_size(t1, self.name)
            if width < self.crop or height < self.crop:
                raise DatasetFileError(t1, f"{self.name}: {width}x{height} px is smaller than crop={self.crop}")
            rows, cols = range(0, height - self.crop + 1, self.crop), range(0, width - self.crop + 1, self.crop)
            tiles += [(k, y, x) for y in rows for x in cols]
        return tiles

    def _load_pair(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # One decoded pair is kept: consecutive tiles of a large image then cost one decode, not one each.
        if self._cache is not None and self._cache[0] == k:
            return self._cache[1]
        t1_path, t2_path, label_path = self.pairs[k]
        t1, t2 = load_rgb(t1_path, self.name), load_rgb(t2_path, self.name)
        change = self._read_change(label_path)
        for path, shape in ((t2_path, t2.shape[:2]), (label_path, change.shape)):
            if shape != t1.shape[:2]:
                problem = f"size {shape[1]}x{shape[0]} differs from {t1_path.name} ({t1.shape[1]}x{t1.shape[0]})"
                raise DatasetFileError(path, f"{self.name}: {problem}; re-extract the pair")
        self._cache = (k, (t1, t2, change))
        return t1, t2, change

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": None}  # DataLoader workers each decode their own

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = check_index(index, len(self), f"{self.name} {self.split} split")
        k, y, x = self.tiles[i]
        t1, t2, change = self._load_pair(k)
        if self.crop is not None:
            window = (slice(y, y + self.crop), slice(x, x + self.crop))
            t1, t2, change = t1[window], t2[window], change[window]
        sample = {
            "rgb": rgb_tensor(t1),
            "rgb_t2": rgb_tensor(t2),
            "change": torch.from_numpy(change.astype(np.int64)),
            "index": i,
        }
        return self.transforms(sample) if self.transforms is not None else sample

    @property
    def metainfo(self) -> dict[str, Any]:
        """Class names in the form mmengine evaluators read."""
        return {"classes": self.classes, "ignore_index": IGNORE, "crop": self.crop}

    def change_flags(self) -> np.ndarray:
        """Whether each sample contains any change (int64 0/1), for stratified label fractions.

        Decodes every label once (not the images) and caches the result.
        """
        if self._changed is None:
            out = np.zeros(len(self.tiles), dtype=np.int64)
            current: tuple[int, np.ndarray] | None = None
            for i, (k, y, x) in enumerate(self.tiles):
                if current is None or current[0] != k:
                    current = (k, self._read_change(self.pairs[k][2]))
                tile = current[1] if self.crop is None else current[1][y : y + self.crop, x : x + self.crop]
                out[i] = int((tile == 1).any())
            self._changed = out
        return self._changed.copy()

    def label_summary(self, kind: str) -> np.ndarray | None:
        """``has_change`` from the label rasters alone (``rsdatasets.protocol``)."""
        return self.change_flags() if kind == "has_change" else None

    def plot(self, sample: dict[str, Any], show_titles: bool = True, suptitle: str | None = None) -> Figure:
        """Date 1, date 2, change (white) and, if present, ``prediction`` (labels or logits)."""
        from matplotlib.figure import Figure

        def mask(x: Any) -> np.ndarray:
            x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
            return x.argmax(0) if x.ndim == 3 else x

        panels = [("date 1", as_image(sample["rgb"]), {}), ("date 2", as_image(sample["rgb_t2"]), {})]
        panels.append(("change", mask(sample["change"]), {"cmap": "gray", "vmin": 0, "vmax": 1}))
        if "prediction" in sample:
            panels.append(("prediction", mask(sample["prediction"]), {"cmap": "gray", "vmin": 0, "vmax": 1}))
        fig = Figure(figsize=(3.2 * len(panels), 3.5), layout="constrained")
        for ax, (title, image, kwargs) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
            ax.imshow(image, interpolation="nearest", **kwargs)
            ax.set_axis_off()
            if show_titles:
                ax.set_title(title, fontsize=9)
        if suptitle is not None:
            fig.suptitle(suptitle)
        return fig

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, n={len(self)}, crop={self.crop}, root='{self.root}')"


@register_dataset("levir_cd")
class LEVIRCD(ChangeDetectionDataset):
    """LEVIR-CD building change: 637 pairs of 1024 px RGB PNGs (0.5 m), official 445 / 64 / 128 split.

    Reads ``<root>/<split>/{A,B,label}/*.png`` (the official zips extracted into one folder each)
    or the flat ``<root>/{A,B,label}/<split>_*.png`` TorchGeo uses. Labels are 0 / 255 and become
    0 / 1; any other value is an error. Images are cut into 256 px tiles without overlap by default.
    """

    name = "levir_cd"
    splits = ("train", "val", "test")

    def __init__(
        self, root: str | Path, split: str = "train", crop: int | None = 256, transforms: Transforms | None = None
    ) -> None:
        super().__init__(root, split, crop, transforms)

    def _find_pairs(self) -> list[Pair]:
        hint = "extract the official train/val/test zips under ROOT (docs/datasets_more.md)"
        nested = self.root / self.split
        if not nested.is_dir() and (self.root / "A").is_dir():  # flat layout: split encoded in the file names
            dirs = (self.root / "A", self.root / "B", self.root / "label")
            return pair_folders(self.name, self.root, dirs, f"{self.split}_*.png", hint)
        return pair_folders(self.name, self.root, (nested / "A", nested / "B", nested / "label"), "*.png", hint)

    def _read_change(self, path: Path) -> np.ndarray:
        label = load_gray(path, self.name)
        bad = (label != 0) & (label != 255)
        if bad.any():
            value = int(label[bad][0])
            raise DatasetFileError(path, f"{self.name}: label value {value} is neither 0 (no change) nor 255 (change)")
        return (label == 255).astype(np.uint8)


@register_dataset("second")
class SECOND(ChangeDetectionDataset):
    """SECOND as binary change: 512 px RGB pairs with semantic colour maps ``label1``/``label2``.

    In SECOND both label maps are white (255, 255, 255) where nothing changed and carry the
    land-cover class of each date (see ``SECOND_COLOURS``) where something did, so binary change
    is every non-white pixel of ``label1`` (``label2`` is white on exactly the same pixels and is not read).
    Only the 2,968 training pairs were released (test labels are withheld), so ``<root>/{im1,im2,label1}``
    is split here: a seeded permutation of the sorted names, ``train_ratio`` to train, the rest to test.
    A copy already split into ``<root>/{train,test}/{im1,im2,label1}`` is read as it is.
    """

    name = "second"
    splits = ("train", "test")

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        train_ratio: float = 0.8,
        seed: int = 0,
        crop: int | None = None,
        transforms: Transforms | None = None,
    ) -> None:
        if not 0.0 < train_ratio < 1.0:
            raise ValueError(f"second: train_ratio must be in (0, 1), got {train_ratio}")
        self.train_ratio, self.seed = float(train_ratio), int(seed)
        super().__init__(root, split, crop, transforms)

    def _find_pairs(self) -> list[Pair]:
        hint = "extract the SECOND training set so that ROOT/im1, im2, label1, label2 exist (docs/datasets_more.md)"
        base = self.root / self.split
        if (base / "im1").is_dir():  # a pre-split copy
            return pair_folders(self.name, self.root, (base / "im1", base / "im2", base / "label1"), "*.png", hint)
        base = self.root
        pairs = pair_folders(self.name, self.root, (base / "im1", base / "im2", base / "label1"), "*.png", hint)
        order = np.random.default_rng(self.seed).permutation(len(pairs))
        n_train = int(round(self.train_ratio * len(pairs)))
        chosen = order[:n_train] if self.split == "train" else order[n_train:]
        return [pairs[i] for i in np.sort(chosen)]

    def _read_change(self, path: Path) -> np.ndarray:
        rgb = load_rgb(path, self.name).astype(np.int32)
        codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        bad = ~np.isin(codes, _SECOND_CODES)
        if bad.any():
            y, x = (int(v[0]) for v in np.nonzero(bad))
            colour = tuple(int(c) for c in rgb[y, x])
            raise DatasetFileError(path, f"{self.name}: colour {colour} at row {y}, col {x} is not a SECOND class")
        return (codes != _SECOND_CODES[0]).astype(np.uint8)


@register_dataset("cdd")
class CDD(ChangeDetectionDataset):
    """CDD (Lebedev et al. 2018) season-varying real subset: 256 px JPEG pairs, official 10,000 / 3,000 / 3,000.

    Reads ``<root>/subset/{train,val,test}/{A,B,OUT}/*.jpg`` (``root`` may also be the folder above
    ``Real/subset``). The OUT masks are 0 / 255 stored as JPEG, so compression leaves values near
    both ends: they are thresholded at 128; a mask with many mid-grey pixels is not a mask and is an error.
    """

    name = "cdd"
    splits = ("train", "val", "test")
    max_grey_fraction = 0.25  # JPEG ringing touches edges only; a photo in OUT/ is mostly mid-grey

    def __init__(
        self, root: str | Path, split: str = "train", crop: int | None = None, transforms: Transforms | None = None
    ) -> None:
        super().__init__(root, split, crop, transforms)

    def _find_pairs(self) -> list[Pair]:
        hint = "extract ChangeDetectionDataset.zip and point ROOT at Real/ (the folder holding subset/)"
        candidates = [self.root / "subset", self.root / "Real/subset", self.root / "ChangeDetectionDataset/Real/subset"]
        base = next((c for c in candidates if c.is_dir()), candidates[0]) / self.split
        return pair_folders(self.name, self.root, (base / "A", base / "B", base / "OUT"), "*.jpg", hint)

    def _read_change(self, path: Path) -> np.ndarray:
        label = load_gray(path, self.name)
        grey = float(((label >= 64) & (label < 192)).mean())
        if grey > self.max_grey_fraction:
            raise DatasetFileError(path, f"{self.name}: {100 * grey:.0f} % mid-grey pixels, not a 0/255 change mask")
        return (label >= 128).astype(np.uint8)
