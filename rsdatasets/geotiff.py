"""GeoTIFF helpers around rasterio, and the crop-dataset base shared by the real-dataset readers.

Real tiles are large (Potsdam: 6000x6000 px), so everything reads *windows*: a sample is one crop
and no reader ever loads a whole tile. Every rasterio/GDAL failure is re-raised as one
:class:`DatasetFileError` naming the file, because GDAL's own messages ("Read failed. See previous
exception") do not say which of a few hundred files is broken.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DatasetFileError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Window = tuple[int, int, int, int]  # (row_off, col_off, height, width) in pixels
IGNORE = 255  # label value of unlabelled / unknown-colour / invalid pixels


@dataclass(frozen=True)
class RasterInfo:
    """Header facts of one raster (no pixels read)."""

    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None


@contextmanager
def _open(path: str | Path) -> Iterator[Any]:
    """Open a raster read-only; any GDAL/rasterio error becomes a DatasetFileError naming the file."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    try:
        from rasterio._err import CPLE_BaseError  # private module, but GDAL errors surface as these
    except ImportError:  # pragma: no cover - future rasterio
        CPLE_BaseError = RasterioError  # noqa: N806
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # Vaihingen tiles keep georef in .tfw
            with rasterio.open(path) as src:
                yield src
    except (RasterioError, CPLE_BaseError) as err:
        cause = f" ({err.__cause__})" if err.__cause__ is not None else ""  # GDAL's real reason is chained
        raise DatasetFileError(path, f"unreadable or truncated raster: {err}{cause}".replace("\n", " ")) from err


def raster_info(path: str | Path) -> RasterInfo:
    """Width, height, band count, dtype and nodata value of a raster, from its header only."""
    with _open(path) as src:
        return RasterInfo(src.width, src.height, src.count, str(src.dtypes[0]), src.nodata)


def read_window(path: str | Path, window: Window | None = None, bands: Sequence[int] | None = None) -> np.ndarray:
    """Pixels ``(bands, h, w)`` of ``window`` = (row_off, col_off, h, w); ``None`` reads the whole raster.

    ``bands`` are 1-based as in GDAL. Only the window is decoded, so crops of a 6000x6000 tile stay cheap.
    """
    with _open(path) as src:
        return _read(src, path, window, bands)


def _read(src: Any, path: str | Path, window: Window | None, bands: Sequence[int] | None) -> np.ndarray:
    """Read ``window`` of an open raster (errors raised here are mapped by the enclosing ``_open``)."""
    from rasterio.windows import Window as RWindow

    win = None
    if window is not None:
        row, col, h, w = (int(v) for v in window)
        if row < 0 or col < 0 or h < 1 or w < 1 or row + h > src.height or col + w > src.width:
            raise DatasetFileError(path, f"window {window} lies outside the {src.width}x{src.height} raster")
        win = RWindow(col, row, w, h)
    idx = list(bands) if bands is not None else None
    if idx is not None and (min(idx) < 1 or max(idx) > src.count):
        raise DatasetFileError(path, f"bands {idx} requested but the file has {src.count}")
    return src.read(idx, window=win)


def tile_windows(width: int, height: int, crop: int, overlap: int = 0) -> list[Window]:
    """Crops covering a ``width`` x ``height`` raster, row-major, overlapping by at least ``overlap``.

    The stride is ``crop - overlap``; the last crop of each row/column is placed flush with the border
    (so it may overlap more) instead of running off the raster. A side shorter than ``crop`` gives one
    window of that side's length.
    """
    if crop < 1 or not 0 <= overlap < crop:
        raise ValueError(f"need crop >= 1 and 0 <= overlap < crop, got crop={crop}, overlap={overlap}")

    def starts(n: int) -> list[int]:
        return [0] if n <= crop else [*range(0, n - crop, crop - overlap), n - crop]

    return [(r, c, min(crop, height), min(crop, width)) for r in starts(height) for c in starts(width)]


def label_codes(array: np.ndarray) -> np.ndarray:
    """One int per pixel: 0xRRGGBB for colour labels (3 bands), the value itself for 1-band labels."""
    if array.shape[0] >= 3:
        a = array[:3].astype(np.int32)
        return (a[0] << 16) | (a[1] << 8) | a[2]
    return array[0].astype(np.int32)


def codes_to_classes(codes: np.ndarray, table: dict[int, int]) -> np.ndarray:
    """Class ids int64; every code not in ``table`` (noise, anti-aliasing, nodata) becomes IGNORE."""
    mask = np.full(codes.shape, IGNORE, dtype=np.int64)
    for code, cls in table.items():
        mask[codes == code] = cls
    return mask


@dataclass
class Tile:
    """One scene of a dataset and its files by role (``image``, ``dsm``, ``label``, ...)."""

    id: str
    files: dict[str, Path]


class TiledRasterDataset(Dataset):
    """Crops of large raster tiles read by window; subclasses locate the files and build samples.

    ``__init__`` locates every file (missing ones -> DatasetNotFoundError) and reads each header once:
    band counts, dtypes and sizes that disagree are collected in ``problems`` as (path, reason) and,
    with ``validate=True`` (the default), raised as one DatasetFileError. Pixel-level faults (truncated
    data, unknown label colours, nodata) are what ``rsdatasets.check`` scans for.
    """

    dataset_name = "tiled"
    classes: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()  # plot colour per class
    label_table: dict[int, int] = {}  # label code -> class id
    ignore_codes: frozenset[int] = frozenset()  # codes that mean "not labelled" on purpose
    bands: dict[str, int] = {}  # role -> expected band count
    image_key = "image"

    def __init__(self, root: str | Path, split: str, crop: int, overlap: int,
                 transforms: Callable[[dict[str, Any]], dict[str, Any]] | None, validate: bool) -> None:  # fmt: skip
        self.root, self.split, self.crop, self.overlap, self.transforms = Path(root), split, crop, overlap, transforms
        tile_windows(crop, crop, crop, overlap)  # validates crop/overlap before any file is touched
        self.tiles = self._locate()
        self.problems: list[tuple[Path, str]] = []
        self.index: list[tuple[int, Window]] = []
        for t, tile in enumerate(self.tiles):
            size = self._inspect(tile)
            if size is not None:
                self.index += [(t, w) for w in tile_windows(size[1], size[0], crop, overlap)]
        if validate and self.problems:
            path, reason = self.problems[0]
            more = f" (and {len(self.problems) - 1} more problems)" if len(self.problems) > 1 else ""
            raise DatasetFileError(path, reason + more)
        self._dominant: np.ndarray | None = None

    def _locate(self) -> list[Tile]:
        raise NotImplementedError

    def _sample(self, tile: Tile, window: Window) -> dict[str, Any]:
        raise NotImplementedError

    def _inspect(self, tile: Tile) -> tuple[int, int] | None:
        """Header checks of one tile; returns its (height, width) when usable, records problems."""
        infos: dict[str, RasterInfo] = {}
        bad = len(self.problems)
        for role, path in tile.files.items():
            try:
                infos[role] = info = raster_info(path)
            except DatasetFileError as err:
                self.problems.append((path, err.problem))
                continue
            if role in self.bands and info.count != self.bands[role]:
                self.problems.append((path, f"{info.count} bands, expected {self.bands[role]} ({role})"))
            if role in ("image", "label") and info.dtype != "uint8":
                self.problems.append((path, f"dtype {info.dtype}, expected uint8 ({role})"))
        ref = infos.get(self.image_key)
        for role, info in infos.items():
            if ref is not None and (info.width, info.height) != (ref.width, ref.height):
                image = tile.files[self.image_key]
                size, ref_size = f"{info.width}x{info.height}", f"{ref.width}x{ref.height}"
                self.problems.append((tile.files[role], f"{role} is {size} but its image {image} is {ref_size}"))
        return (ref.height, ref.width) if ref is not None and len(self.problems) == bad else None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {self.dataset_name} {self.split} split of size {n}")
        t, window = self.index[int(index) % n]
        sample = {**self._sample(self.tiles[t], window), "index": int(index) % n}
        return self.transforms(sample) if self.transforms is not None else sample

    @staticmethod
    def heights(path: Path, window: Window) -> tuple[torch.Tensor, torch.Tensor]:
        """Heights (1,h,w) float32 metres and their validity; nodata/NaN/inf pixels become 0 and False."""
        with _open(path) as src:
            nodata, values = src.nodata, _read(src, path, window, [1]).astype(np.float32)
        valid = np.isfinite(values)
        if nodata is not None and np.isfinite(nodata):
            valid &= values != np.float32(nodata)
        values[~valid] = 0.0  # never NaN in a sample: losses and normalisers would propagate it
        return torch.from_numpy(values), torch.from_numpy(valid)

    def mask(self, path: Path, window: Window) -> torch.Tensor:
        """Class ids (h,w) int64 of a label window; unknown codes are IGNORE, never a guessed class."""
        return torch.from_numpy(codes_to_classes(label_codes(read_window(path, window)), self.label_table))

    @property
    def metainfo(self) -> dict[str, Any]:
        """Class names and palette in the form mmengine evaluators read, plus where the data came from."""
        return {"classes": self.classes, "palette": self.palette, "dataset": self.dataset_name, "split": self.split,
                "tiles": [t.id for t in self.tiles], "crop": self.crop, "overlap": self.overlap}  # fmt: skip

    def dominant_classes(self) -> np.ndarray:
        """Most frequent class of every crop (int64; IGNORE if unlabelled), cached in memory and on disk."""
        if self._dominant is not None:
            return self._dominant
        from .synthetic import default_root

        stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in (t.files["label"] for t in self.tiles)]
        key = json.dumps([type(self).__name__, self.label_table, stats, self.index])
        cache = default_root() / "index" / f"{self.dataset_name}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy"
        if cache.is_file():
            self._dominant = np.load(cache)
            return self._dominant
        out = np.empty(len(self.index), dtype=np.int64)
        n = len(self.classes)
        for i, (t, window) in enumerate(self.index):
            counts = np.bincount(self.mask(self.tiles[t].files["label"], window).numpy().ravel(), minlength=256)
            out[i] = int(counts[:n].argmax()) if counts[:n].any() else IGNORE
        try:  # best effort: a read-only cache only costs the recomputation next time
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, out)
            os.replace(tmp, cache)
        except OSError:
            pass
        self._dominant = out
        return out

    def label_summary(self, kind: str) -> np.ndarray | None:
        """``dominant_class`` from the label rasters alone (``rsdatasets.protocol``)."""
        return self.dominant_classes() if kind == "dominant_class" else None

    def plot(self, sample: dict[str, Any], show_titles: bool = True, suptitle: str | None = None) -> Figure:
        """Figure of a sample: optical, heights (nodata magenta), mask[, prediction]; no pyplot needed."""
        from matplotlib import colormaps
        from matplotlib.colors import ListedColormap
        from matplotlib.figure import Figure

        def arr(key: str) -> np.ndarray:
            x = sample[key]
            return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)

        height_key = next((k for k in ("dsm", "ndsm") if k in sample), None)
        keys = ["rgb", *([height_key] if height_key else []), *(k for k in ("mask", "prediction") if k in sample)]
        fig = Figure(figsize=(3.2 * len(keys), 3.4), layout="constrained")
        cmap = ListedColormap(np.asarray(self.palette, dtype=float) / 255.0).with_extremes(over="black")
        for ax, key in zip(np.atleast_1d(fig.subplots(1, len(keys))), keys):
            ax.set_axis_off()
            if key == "rgb":
                ax.imshow(np.clip(arr("rgb").transpose(1, 2, 0), 0.0, 1.0))
            elif key == height_key:
                valid = arr("dsm_valid")[0] if "dsm_valid" in sample else np.ones(arr(key).shape[1:], bool)
                ax.imshow(np.ma.masked_where(~valid, arr(key)[0]), cmap=colormaps["terrain"].with_extremes(bad="m"))
            else:
                labels = arr(key).argmax(0) if arr(key).ndim == 3 else arr(key)
                ax.imshow(labels, cmap=cmap, vmin=-0.5, vmax=len(self.classes) - 0.5, interpolation="nearest")
            if show_titles:
                ax.set_title(f"{key} (ignore black)" if key in ("mask", "prediction") else key, fontsize=9)
        if suptitle is not None:
            fig.suptitle(suptitle)
        return fig

    def __repr__(self) -> str:
        name, n_tiles = type(self).__name__, len(self.tiles)
        return f"{name}(split={self.split!r}, tiles={n_tiles}, crops={len(self)}, root='{self.root}')"
