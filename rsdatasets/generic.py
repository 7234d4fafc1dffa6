"""What the generic readers share: file reading, seeded splits, the content scan and its cache, problems.

The generic readers (``image_folder``, ``mmseg_segmentation``, ``change_pairs``, ``voc_detection``) read
the layouts people already have instead of one named dataset. Their contract with the rest of rsbench is
the one of every reader (dict samples, ``metainfo``, ``plot()``, ``label_summary()``), plus two things
that make a copy of unknown provenance safe to train on:

* **A content scan at construction.** Headers (size, bands, dtype) of every file, and for label files
  the values they hold (masks are decoded, XML is parsed) are read once when a split is built. The
  same pass gives the per-sample summaries that label fractions are stratified by, so the cost is paid
  once, and it is cached under ``$RSBENCH_DATA/index/`` keyed by every file's size and mtime. A bad
  file (a size mismatch, an undeclared label value, a box outside its image) is then found before any
  training: with ``validate=True`` (the default) the first one raises a one-line
  :class:`~rsdatasets.errors.DatasetFileError`, so a sweep stops before writing a row; with
  ``validate=False`` every problem is collected in ``problems`` (what ``rsbench data check`` reports).
* **A recorded split.** Where a copy has no split of its own, a seeded, stratified one is drawn, and
  ``metainfo["split_protocol"]`` says which split was used (the harness copies it into result rows).

Pixels are read with Pillow, and with rasterio (GDAL) for GeoTIFF / JPEG 2000, which also read
multi-band, 16-bit and float rasters that Pillow does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .errors import DatasetFileError, DatasetNotFoundError

#: Image files the generic readers list (lower-case suffixes): everything Pillow or GDAL reads that is in use.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".jp2")
#: Suffixes read through rasterio/GDAL: multi-band, 16-bit and float rasters, which Pillow reads badly or not at all.
GDAL_SUFFIXES = (".tif", ".tiff", ".jp2")
#: Bumped when the scan records change shape, so an old cache is never read as a new one.
SCAN_VERSION = 1
IGNORE = 255  # the samples' ignore value in masks (docs/layout.md)
# What Pillow raises for missing, truncated, corrupt or absurdly large files.
_PIL_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
_PIL_DTYPES = {"1": "bool", "I;16": "uint16", "I;16B": "uint16", "I;16L": "uint16", "I": "int32", "F": "float32"}


@dataclass(frozen=True)
class Header:
    """What a file's header says (no pixels decoded)."""

    width: int
    height: int
    bands: int
    dtype: str


def read_header(path: Path, dataset: str) -> Header:
    """Width, height, band count and dtype of an image file; one clear error if it cannot be opened."""
    if path.suffix.lower() in GDAL_SUFFIXES:
        from .geotiff import raster_info

        info = raster_info(path)  # its errors already name the file
        return Header(info.width, info.height, info.count, info.dtype)
    try:
        with Image.open(path) as img:
            return Header(img.width, img.height, len(img.getbands()), _PIL_DTYPES.get(img.mode, "uint8"))
    except _PIL_ERRORS as err:
        raise DatasetFileError(path, f"{dataset}: unreadable image ({err}); re-extract or re-copy it") from err


def read_pixels(path: Path, dataset: str) -> np.ndarray:
    """All bands of an image as (bands, H, W) in the file's dtype (palette images as their RGB colours)."""
    if path.suffix.lower() in GDAL_SUFFIXES:
        from .geotiff import read_window

        return read_window(path)
    try:
        with Image.open(path) as img:
            if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
            elif img.mode == "1":
                img = img.convert("L")
            array = np.asarray(img)
    except _PIL_ERRORS as err:
        raise DatasetFileError(path, f"{dataset}: unreadable image ({err}); re-extract or re-copy it") from err
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))


def read_label(path: Path, dataset: str) -> np.ndarray:
    """A label raster as (H, W) integers, as stored: palette PNGs give their indices, not their colours.

    A label saved as RGB with identical channels (a grey image written as colour) is read as one
    band; a truly coloured label is an error, since the generic readers take index masks.
    """
    if path.suffix.lower() in GDAL_SUFFIXES:
        from .geotiff import read_window

        array = read_window(path)
    else:
        try:
            with Image.open(path) as img:
                array = np.asarray(img.convert("L") if img.mode == "1" else img)  # "P": the indices themselves
        except _PIL_ERRORS as err:
            raise DatasetFileError(path, f"{dataset}: unreadable label ({err}); re-extract or re-copy it") from err
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    colour = array[:3] if array.shape[0] >= 3 else array[:1]  # RGB(A) or LA: alpha is not a label
    if not (colour == colour[:1]).all():
        raise DatasetFileError(path, f"{dataset}: the label is a colour image ({array.shape[0]} bands that differ); "
                               "write one band of class indices (e.g. with mmsegmentation's dataset converters)")
    label = colour[0]
    if not np.issubdtype(label.dtype, np.integer):  # a float raster of labels: only whole numbers are labels
        if label.dtype != np.bool_ and not np.array_equal(label, np.round(label)):
            raise DatasetFileError(path, f"{dataset}: the label holds non-integer values; labels are class indices")
        label = label.astype(np.int64)
    return label


def value_counts(label: np.ndarray) -> dict[str, int]:
    """``{value: pixels}`` of a label raster (JSON keys); a bincount for 8/16-bit labels, which is several times
    faster than ``np.unique``'s sort on large masks."""
    if label.dtype in (np.uint8, np.uint16, np.bool_):
        counts = np.bincount(label.ravel().astype(np.int64, copy=False))
        return {str(v): int(counts[v]) for v in np.flatnonzero(counts)}
    found, counts = np.unique(label, return_counts=True)
    return {str(int(v)): int(n) for v, n in zip(found, counts)}


def to_unit(array: np.ndarray, scale: float | None, path: Path, dataset: str) -> np.ndarray:
    """Pixels as float32 in [0, 1]: divided by ``scale`` (default: the dtype's maximum; floats as they are)."""
    if scale is None:
        scale = float(np.iinfo(array.dtype).max) if np.issubdtype(array.dtype, np.integer) else 1.0
    if scale <= 0:
        raise ValueError(f"{dataset}: scale must be positive, got {scale}")
    out = array.astype(np.float32) / np.float32(scale)
    if not np.isfinite(out).all():
        raise DatasetFileError(path, f"{dataset}: NaN or infinite pixel values; mask them or fill them first")
    return np.clip(out, 0.0, 1.0)


def pick_bands(array: np.ndarray, bands: Sequence[int] | None, path: Path, dataset: str) -> np.ndarray:
    """The three ``rgb`` bands: ``bands`` (1-based, as GDAL counts) or the first three; one band is repeated."""
    if bands is None:
        if array.shape[0] >= 3:
            return array[:3]
        return np.repeat(array[:1], 3, axis=0)  # grey (or grey + alpha): the same band three times
    wanted = [int(b) for b in bands]
    if min(wanted) < 1 or max(wanted) > array.shape[0]:
        raise DatasetFileError(path, f"{dataset}: bands={wanted} asked for, but the file has {array.shape[0]} band(s)")
    picked = array[[b - 1 for b in wanted]]
    return np.repeat(picked, 3, axis=0) if len(wanted) == 1 else picked


def resize(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """A float (C, H, W) image resized to ``size`` x ``size`` (bilinear, antialiased); unchanged if ``None``."""
    if size is None or tuple(image.shape[-2:]) == (size, size):
        return image
    return torch.nn.functional.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True,
                                           align_corners=False)[0]  # fmt: skip


def as_int_list(value: Any) -> list[int] | None:
    """``4,3,2`` / ``[4, 3, 2]`` / ``4`` -> ``[4, 3, 2]`` / ``[4]``; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    return [int(v) for v in (value if isinstance(value, list | tuple) else [value])]


def as_name_list(value: Any) -> tuple[str, ...] | None:
    """Class names from a list, a tuple or a comma-separated string."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    return tuple(str(v) for v in value if str(v) != "")


def split_fractions(val_fraction: float, test_fraction: float, dataset: str) -> tuple[float, float]:
    """Checked ``val_fraction`` and ``test_fraction`` of a seeded split (both in [0, 1), summing below 1)."""
    val, test = float(val_fraction), float(test_fraction)
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"{dataset}: need 0 <= val_fraction, test_fraction and val_fraction + test_fraction < 1, "
                         f"got {val} and {test}")  # fmt: skip
    return val, test


def seeded_split(strata: Sequence[Any], val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """A split name (``train`` / ``val`` / ``test``) for every item, stratified by ``strata``.

    Per stratum, its items (in the given, sorted order) are permuted by a generator seeded with ``seed``
    and a CRC of the stratum's name, so adding a class never reshuffles the others; the first
    ``round(test_fraction * n)`` go to test, the next ``round(val_fraction * n)`` to val, the rest to train.
    Train keeps at least one item of every stratum.
    """
    strata = [str(s) for s in strata]
    out = np.full(len(strata), "train", dtype=object)
    for stratum in sorted(set(strata)):
        members = np.flatnonzero(np.asarray(strata, dtype=object) == stratum)
        rng = np.random.default_rng([int(seed), zlib.crc32(stratum.encode())])
        members = members[rng.permutation(len(members))]
        n = len(members)
        n_test = min(int(round(test_fraction * n)), max(n - 1, 0))
        n_val = min(int(round(val_fraction * n)), max(n - 1 - n_test, 0))
        out[members[:n_test]] = "test"
        out[members[n_test : n_test + n_val]] = "val"
    return out


def read_list(path: Path) -> list[str]:
    """Non-empty, stripped lines of a split list (comments starting with # are skipped)."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def load_meta_file(root: Path, name: str, filename: str = "classes.json") -> dict[str, Any]:
    """``ROOT/classes.json`` if it exists (class names, ignore index, ...), else ``{}``; malformed: one clear error."""
    path = root / filename
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetFileError(path, f"{name}: not valid JSON ({err}); see docs/datasets.md, 'Your own data'") from err
    if not isinstance(meta, dict):
        raise DatasetFileError(path, f"{name}: expected a JSON object such as {{\"classes\": [...]}}")
    return meta


def list_images(folder: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES, recursive: bool = False) -> list[Path]:
    """Image files under ``folder`` (sorted; hidden files and folders such as ``.x``/``__MACOSX`` skipped)."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in found
        if p.suffix.lower() in suffixes and p.is_file()
        and not any(part.startswith((".", "__")) for part in p.relative_to(folder).parts)
    )  # fmt: skip


def cached_scan(dataset: str, options: dict[str, Any], files: Sequence[Path],
                compute: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:  # fmt: skip
    """``compute()`` (one JSON record per item), cached under ``$RSBENCH_DATA/index/``.

    The key holds the reader, the options that change the records, and the path, size and mtime of every
    file the records come from: any edit to the data or options scans again. The cache is best effort
    (a read-only or full disk only costs the scan next time) and written atomically.
    """
    from .synthetic import default_root

    stats = []
    for path in files:
        try:
            st = path.stat()
            stats.append((str(path), st.st_size, st.st_mtime_ns))
        except OSError:
            stats.append((str(path), -1, -1))
    key = json.dumps([SCAN_VERSION, dataset, options, stats], sort_keys=True, default=str)
    cache = default_root() / "index" / f"{dataset}-{hashlib.sha1(key.encode()).hexdigest()[:20]}.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    records = compute()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(records))
        os.replace(tmp, cache)
    except OSError:
        pass
    return records


@dataclass
class ScanSummary:
    """What a split holds, for ``rsbench data check``: counts per class, file shapes, label values."""

    class_counts: Counter = field(default_factory=Counter)  # class name -> images / pixels / boxes
    count_unit: str = "images"
    shapes: Counter = field(default_factory=Counter)  # (role, bands, dtype, "WxH") -> files
    label_values: Counter = field(default_factory=Counter)  # raw label value -> pixels
    legend: dict[int, str] = field(default_factory=dict)  # raw label value -> class name or "ignore"
    notes: list[str] = field(default_factory=list)  # facts worth a warning (mixed sizes, ignored files, ...)


class CheckedReader:
    """Mixin of every generic reader: the scan's problems (raised or collected) and its summaries for the check.

    A reader sets ``name``, ``root``, ``validate`` and ``problems`` (a list) before calling
    :meth:`record_problems`, and gives :meth:`scan_summary` for ``rsbench data check``.
    """

    name: ClassVar[str]
    root: Path
    validate: bool
    problems: list[tuple[Path, str]]
    split_protocol: str = ""

    @property
    def source(self) -> str:
        """What this split reads; two splits that read the same files (``test`` reading ``val/``) share it."""
        return str(getattr(self, "split", ""))

    def record_problems(self, records: Sequence[dict[str, Any]]) -> None:
        """Collect the problems the scan found; with ``validate`` the first becomes a one-line error."""
        for record in records:
            self.problems += [(Path(p), reason) for p, reason in record.get("problems", [])]
        if self.validate and self.problems:
            path, reason = self.problems[0]
            more = f" (and {len(self.problems) - 1} more problem(s))" if len(self.problems) > 1 else ""
            raise DatasetFileError(path, f"{reason}{more}; `rsbench data check {self.root} --dataset {self.name}` "
                                   "lists every problem")  # fmt: skip

    @staticmethod
    def shapes_of(records: Sequence[dict[str, Any]]) -> Counter:
        """(role, bands, dtype, WxH) -> number of files, over the scan records."""
        return Counter((r, b, d, f"{w}x{h}") for record in records for r, b, d, w, h in record.get("shapes", []))

    def scan_summary(self) -> ScanSummary:
        """Counts per class, file shapes and label values of this split (from the scan; nothing is decoded)."""
        raise NotImplementedError


def open_root(name: str, root: str | Path, split: str, split_names: Sequence[str]) -> Path:
    """The checked root folder of a split (a missing folder or an unknown split is one clear error)."""
    if split not in split_names:
        raise ValueError(f"{name}: unknown split {split!r}; valid splits: {', '.join(split_names)}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetNotFoundError(name, path, "a folder", "pass root= the folder that holds your data")
    return path


class GenericDataset(CheckedReader, Dataset):
    """Base of the generic readers that need no other base: split and root checks, problems, ``repr``."""

    split_names: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    def __init__(self, root: str | Path, split: str, validate: bool) -> None:
        self.root = open_root(self.name, root, split, self.split_names)
        self.split, self.validate = split, bool(validate)
        self.problems: list[tuple[Path, str]] = []
        self.split_protocol = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, n={len(self)}, root='{self.root}')"


def header_record(files: dict[str, Path], dataset: str, reference: str = "image",
                  same_size: Sequence[str] = ()) -> tuple[dict[str, Header], list[tuple[str, str]], list]:  # fmt: skip
    """Headers of one item's files by role; problems for unreadable files and for roles in ``same_size``
    whose size differs from the ``reference`` role's. Returns (headers, problems, shape rows)."""
    headers: dict[str, Header] = {}
    problems: list[tuple[str, str]] = []
    for role, path in files.items():
        try:
            headers[role] = read_header(path, dataset)
        except DatasetFileError as err:
            problems.append((str(path), err.problem))
    ref = headers.get(reference)
    for role in same_size:
        h = headers.get(role)
        if ref is not None and h is not None and (h.width, h.height) != (ref.width, ref.height):
            problems.append((str(files[role]), f"{dataset}: {role} is {h.width}x{h.height} but its {reference} "
                             f"{files[reference].name} is {ref.width}x{ref.height}; re-export the pair at one size"))
    shapes = [[role, h.bands, h.dtype, h.width, h.height] for role, h in headers.items()]
    return headers, problems, shapes
