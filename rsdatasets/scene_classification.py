"""Scene-classification readers for class-folder datasets: UC Merced, AID and NWPU-RESISC45.

All three ship as one folder per class with no official train/test split, so the split is
drawn here: per class, a seeded permutation of the sorted file names puts ``round(ratio * n)``
images in ``train`` and the rest in ``test`` (stratified, deterministic, disjoint). The ratios
are the published protocols (UC Merced 8:2 as CMID uses; AID 20 % / 50 %; RESISC45 10 % / 20 %).

The image helpers here (:func:`load_rgb`, :func:`rgb_tensor`) are shared by the change
detection and object detection readers so that every dataset reports unreadable files the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from . import register_dataset
from .errors import DatasetFileError, DatasetNotFoundError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Transforms = Callable[[dict[str, Any]], dict[str, Any]]
# What Pillow raises for missing, truncated, corrupt or absurdly large files.
_PIL_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)

UCMERCED_CLASSES = (
    "agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral", "denseresidential", "forest",
    "freeway", "golfcourse", "harbor", "intersection", "mediumresidential", "mobilehomepark", "overpass",
    "parkinglot", "river", "runway", "sparseresidential", "storagetanks", "tenniscourt",
)  # fmt: skip
AID_CLASSES = (
    "Airport", "BareLand", "BaseballField", "Beach", "Bridge", "Center", "Church", "Commercial", "DenseResidential",
    "Desert", "Farmland", "Forest", "Industrial", "Meadow", "MediumResidential", "Mountain", "Park", "Parking",
    "Playground", "Pond", "Port", "RailwayStation", "Resort", "River", "School", "SparseResidential", "Square",
    "Stadium", "StorageTanks", "Viaduct",
)  # fmt: skip
RESISC45_CLASSES = (
    "airplane", "airport", "baseball_diamond", "basketball_court", "beach", "bridge", "chaparral", "church",
    "circular_farmland", "cloud", "commercial_area", "dense_residential", "desert", "forest", "freeway",
    "golf_course", "ground_track_field", "harbor", "industrial_area", "intersection", "island", "lake", "meadow",
    "medium_residential", "mobile_home_park", "mountain", "overpass", "palace", "parking_lot", "railway",
    "railway_station", "rectangular_farmland", "river", "roundabout", "runway", "sea_ice", "ship", "snowberg",
    "sparse_residential", "stadium", "storage_tank", "tennis_court", "terrace", "thermal_power_station", "wetland",
)  # fmt: skip


def load_rgb(path: Path, dataset: str, size: int | None = None) -> np.ndarray:
    """An image file as uint8 (H, W, 3), optionally resized to ``size`` x ``size``; one clear error if unreadable."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")  # grey, palette and RGBA files all become plain RGB
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except _PIL_ERRORS as err:
        raise DatasetFileError(path, f"{dataset}: unreadable image ({err}); re-extract or re-download it") from err


def load_gray(path: Path, dataset: str) -> np.ndarray:
    """A single-band label image as uint8 (H, W); one clear error if unreadable."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except _PIL_ERRORS as err:
        raise DatasetFileError(
            path, f"{dataset}: unreadable label image ({err}); re-extract or re-download it"
        ) from err


def image_size(path: Path, dataset: str) -> tuple[int, int]:
    """(width, height) from the file header only (no decoding), for tiling at construction time."""
    try:
        with Image.open(path) as img:
            return img.size
    except _PIL_ERRORS as err:
        raise DatasetFileError(path, f"{dataset}: unreadable image ({err}); re-extract or re-download it") from err


def check_index(index: int, n: int, what: str) -> int:
    """``index`` as a position in ``range(n)`` (negative counts from the end); IndexError past the end."""
    if not -n <= index < n:
        raise IndexError(f"index {index} out of range for {what} of size {n}")
    return int(index) % n


def rgb_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1], the benchmark's ``rgb`` convention."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float().div_(255.0)


def as_image(x: Any) -> np.ndarray:
    """A (3, H, W) tensor/array as (H, W, 3) in [0, 1] for ``imshow``."""
    x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    return np.clip(x.transpose(1, 2, 0), 0.0, 1.0)


def plot_scene_sample(sample: dict[str, Any], classes: Sequence[str], show_titles: bool = True,
                      suptitle: str | None = None) -> Figure:  # fmt: skip
    """The image, titled with its class (and ``prediction``, a class index or logits, if present): the ``plot()`` of
    every scene-classification dataset."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4.3), layout="constrained")
    ax = fig.subplots()
    ax.imshow(as_image(sample["rgb"]))
    ax.set_axis_off()
    if show_titles:
        title = f"label: {classes[int(sample['label'])]}"
        if "prediction" in sample:
            pred = torch.as_tensor(sample["prediction"])
            title += f"\nprediction: {classes[int(pred.argmax() if pred.ndim else pred)]}"
        ax.set_title(title, fontsize=9)
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig


def stratified_split(labels: Sequence[int] | np.ndarray, train_ratio: float, seed: int) -> dict[str, np.ndarray]:
    """Sorted ``train``/``test`` indices: per class, ``round(train_ratio * n)`` seeded picks go to train."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    for value in np.unique(labels):  # classes in a fixed order, so the stream of draws is reproducible
        members = rng.permutation(np.flatnonzero(labels == value))
        train.append(members[: int(round(train_ratio * len(members)))])
    is_train = np.zeros(len(labels), dtype=bool)
    is_train[np.concatenate([np.empty(0, np.int64), *train])] = True
    return {"train": np.flatnonzero(is_train), "test": np.flatnonzero(~is_train)}


class ClassFolderDataset(Dataset):
    """Base of datasets stored as ``<root>/<base_dir>/<class>/<image>``, with a seeded stratified split.

    Subclasses set ``name``, ``base_dir``, ``classes``, ``extensions``, ``train_ratios`` (the
    published protocols; the first is the default) and ``default_size`` (``None``: native size).
    Samples: ``rgb`` float32 (3, H, W) in [0, 1], ``label`` int64 scalar, ``index``.
    """

    name: ClassVar[str]
    base_dir: ClassVar[str]
    classes: ClassVar[tuple[str, ...]]
    extensions: ClassVar[tuple[str, ...]]
    train_ratios: ClassVar[tuple[float, ...]]
    default_size: ClassVar[int | None] = None
    splits = ("train", "test")

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        train_ratio: float | None = None,
        seed: int = 0,
        size: int | None = None,
        transforms: Transforms | None = None,
    ) -> None:
        """``size`` resizes to ``size`` x ``size``; ``None`` means ``default_size`` (UC Merced 256, else native)."""
        if split not in self.splits:
            raise ValueError(f"{self.name}: unknown split {split!r}; valid splits: {', '.join(self.splits)}")
        train_ratio = self.train_ratios[0] if train_ratio is None else float(train_ratio)
        if train_ratio not in self.train_ratios:
            raise ValueError(f"{self.name}: train_ratio must be one of the published protocols {self.train_ratios}")
        self.root, self.split, self.seed, self.train_ratio = Path(root).expanduser(), split, int(seed), train_ratio
        self.size = self.default_size if size is None else int(size)
        self.transforms = transforms
        files, labels = self._scan()
        keep = stratified_split(labels, train_ratio, self.seed)[split]
        self.files = [files[i] for i in keep]
        self.labels = np.asarray(labels, dtype=np.int64)[keep]

    def _scan(self) -> tuple[list[Path], list[int]]:
        """All image files in sorted order with their class index; checks the folder tree once."""
        folder = self.root / self.base_dir
        hint = f"extract {self.name} so that ROOT/{self.base_dir}/<class>/ exists (see docs/datasets_more.md)"
        if not folder.is_dir():
            raise DatasetNotFoundError(self.name, self.root, f"folder {self.base_dir}/", hint)
        present = {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
        missing = [f"{self.base_dir}/{c}/" for c in self.classes if c not in present]
        if missing:
            raise DatasetNotFoundError(self.name, self.root, missing, hint)
        unknown = sorted(present - set(self.classes))
        if unknown:
            raise DatasetFileError(
                folder / unknown[0],
                f"{self.name}: unknown class folder(s) {', '.join(unknown)}; "
                f"expected exactly the {len(self.classes)} classes, remove the others",
            )
        files: list[Path] = []
        labels: list[int] = []
        for index, name in enumerate(self.classes):
            found = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in self.extensions)
            if not found:
                what = f"{'/'.join(self.extensions)} images in {self.base_dir}/{name}/"
                raise DatasetNotFoundError(self.name, self.root, what, hint)
            files += found
            labels += [index] * len(found)
        return files, labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = check_index(index, len(self), f"{self.name} {self.split} split")
        sample = {
            "rgb": rgb_tensor(load_rgb(self.files[i], self.name, self.size)),
            "label": torch.tensor(int(self.labels[i]), dtype=torch.int64),
            "index": i,
        }
        return self.transforms(sample) if self.transforms is not None else sample

    @property
    def metainfo(self) -> dict[str, Any]:
        """Class names in the form mmengine evaluators read, plus the split protocol."""
        return {
            "classes": self.classes,
            "scene_classes": self.classes,
            "train_ratio": self.train_ratio,
            "split_seed": self.seed,
        }

    def scene_labels(self) -> np.ndarray:
        """Class of every sample (int64) without decoding images, for stratified label fractions."""
        return self.labels.copy()

    def label_summary(self, kind: str) -> np.ndarray | None:
        """``scene_class`` from the folder names (``rsdatasets.protocol``); nothing else is cheap here."""
        return self.scene_labels() if kind == "scene_class" else None

    def plot(self, sample: dict[str, Any], show_titles: bool = True, suptitle: str | None = None) -> Figure:
        """The image, titled with its class (and ``prediction``, a class index or logits, if present)."""
        return plot_scene_sample(sample, self.classes, show_titles, suptitle)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, n={len(self)}, train_ratio={self.train_ratio}, "
            f"seed={self.seed}, root='{self.root}')"
        )


@register_dataset("ucmerced")
class UCMerced(ClassFolderDataset):
    """UC Merced Land Use: 21 classes x 100 RGB tiles, 256 px at 0.3 m, ``UCMerced_LandUse/Images/<class>/*.tif``.

    No official split exists: a seeded, stratified 8:2 train/test split (as CMID evaluates) is
    drawn per class. A few tiles are not exactly 256 x 256 (e.g. 256 x 247), so they are resized
    to ``size=256`` by default to keep batches stackable.
    """

    name = "ucmerced"
    base_dir = "UCMerced_LandUse/Images"
    classes = UCMERCED_CLASSES
    extensions = (".tif", ".tiff")
    train_ratios = (0.8,)
    default_size = 256


@register_dataset("aid")
class AID(ClassFolderDataset):
    """AID: 30 classes, 10,000 RGB images of 600 px (0.5-8 m), ``AID/<Class>/<class>_<n>.jpg``.

    The published protocols train on 20 % or 50 % of each class (``train_ratio=0.2|0.5``) and
    test on the rest; no official file list exists, so the split is seeded and stratified.
    """

    name = "aid"
    base_dir = "AID"
    classes = AID_CLASSES
    extensions = (".jpg", ".jpeg")
    train_ratios = (0.2, 0.5)


@register_dataset("resisc45")
class RESISC45(ClassFolderDataset):
    """NWPU-RESISC45: 45 classes x 700 RGB images of 256 px, ``NWPU-RESISC45/<class>/<class>_NNN.jpg``.

    The published protocols train on 10 % or 20 % of each class (``train_ratio=0.2|0.1``, 0.2 by
    default as MSSDF reports); the split is seeded and stratified.
    """

    name = "resisc45"
    base_dir = "NWPU-RESISC45"
    classes = RESISC45_CLASSES
    extensions = (".jpg", ".jpeg")
    train_ratios = (0.2, 0.1)
