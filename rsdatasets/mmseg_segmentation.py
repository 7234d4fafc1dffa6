"""``mmseg_segmentation``: semantic segmentation in mmsegmentation's ``img_dir`` / ``ann_dir`` layout.

This is the tree mmsegmentation's dataset converters write for ISPRS Potsdam and Vaihingen, LoveDA and
iSAID (``tools/dataset_converters/*.py``), and the one its ``BaseSegDataset`` reads::

    ROOT/img_dir/{train,val[,test]}/<name><img_suffix>      images (RGB or any Pillow/GDAL raster)
    ROOT/ann_dir/{train,val[,test]}/<name><seg_map_suffix>  one band of class indices (index or palette PNG)
    ROOT/dsm_dir/{train,val[,test]}/<name>.<ext>            optional extra modality, same names (also ndsm_dir, ms_dir)
    ROOT/classes.json                                       optional: {"classes": [...], "ignore_index": 255, ...}

Mask values follow mmsegmentation's definition: with ``reduce_zero_label`` value 0 becomes ignored and
every other value v becomes v - 1 (255 stays ignored); ``ignore_index`` (after that reduction) is the
value that is not a class. In samples the ignored value is always 255; a value that is neither a
declared class nor ignored is an error naming the mask. Images are listed recursively under the split
folder and sorted, as ``BaseSegDataset`` does; the mask of ``img_dir/<split>/<stem><img_suffix>`` is
``ann_dir/<split>/<stem><seg_map_suffix>``.

The converters write ``train`` and ``val`` (Potsdam's and Vaihingen's ``val`` are the official test
tiles); LoveDA's and iSAID's ``test`` folders hold no masks. So ``test`` reads ``ann_dir/test`` when it
holds masks and ``val`` otherwise (``test_split=`` chooses), and ``metainfo["split_protocol"]`` says which.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import register_dataset
from .errors import DatasetFileError, DatasetNotFoundError
from .generic import (
    IGNORE,
    IMAGE_SUFFIXES,
    GenericDataset,
    ScanSummary,
    as_int_list,
    as_name_list,
    cached_scan,
    header_record,
    list_images,
    load_meta_file,
    pick_bands,
    read_label,
    read_pixels,
    to_unit,
    value_counts,
)
from .scene_classification import Transforms, as_image, check_index

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HINT = "mmsegmentation layout: ROOT/img_dir/<split>/ and ROOT/ann_dir/<split>/ (docs/datasets.md, 'Your own data')"
_ISPRS = dict(classes=("impervious_surface", "building", "low_vegetation", "tree", "car", "clutter"),
              palette=((255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0)),
              reduce_zero_label=True, img_suffix=".png", seg_map_suffix=".png")  # fmt: skip
#: mmsegmentation's definitions of the datasets its converters write (mmseg/datasets/{potsdam,isprs,loveda,
#: isaid}.py, 1.x): classes, palette, label reduction and file suffixes. Explicit options override them.
PRESETS: dict[str, dict[str, Any]] = {
    "potsdam": _ISPRS,
    "vaihingen": _ISPRS,
    "loveda": dict(classes=("background", "building", "road", "water", "barren", "forest", "agricultural"),
                   palette=((255, 255, 255), (255, 0, 0), (255, 255, 0), (0, 0, 255), (159, 129, 183), (0, 255, 0),
                            (255, 195, 128)),
                   reduce_zero_label=True, img_suffix=".png", seg_map_suffix=".png"),
    "isaid": dict(classes=("background", "ship", "store_tank", "baseball_diamond", "tennis_court", "basketball_court",
                           "Ground_Track_Field", "Bridge", "Large_Vehicle", "Small_Vehicle", "Helicopter",
                           "Swimming_pool", "Roundabout", "Soccer_ball_field", "plane", "Harbor"),
                  palette=((0, 0, 0), (0, 0, 63), (0, 63, 63), (0, 63, 0), (0, 63, 127), (0, 63, 191), (0, 63, 255),
                           (0, 127, 63), (0, 127, 127), (0, 0, 127), (0, 0, 191), (0, 0, 255), (0, 191, 127),
                           (0, 127, 191), (0, 127, 255), (0, 100, 155)),
                  reduce_zero_label=False, img_suffix=".png", seg_map_suffix="_instance_color_RGB.png"),
}  # fmt: skip
#: Extra modalities: sample key -> folder looked for when ``extra_dirs`` is not given.
EXTRA_KEYS = {"dsm": "dsm_dir", "ndsm": "ndsm_dir", "ms": "ms_dir"}
HEIGHT_KEYS = ("dsm", "ndsm")
LUT_SIZE = 65536  # mask values of 8- and 16-bit rasters; larger ones are never a declared class


def _extra_dirs(value: Any, root: Path) -> dict[str, str]:
    """``{"dsm": "dsm_dir"}`` from a dict, ``"dsm:dsm_dir,ms:ms_dir"`` or a list of ``key:folder``;
    ``None`` looks for ``dsm_dir/``, ``ndsm_dir/``, ``ms_dir/`` under ROOT."""
    if value is None:
        return {k: d for k, d in EXTRA_KEYS.items() if (root / d).is_dir()}
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    if isinstance(value, list | tuple):
        pairs = [str(v).partition(":") for v in value]
        bad = [k for k, sep, d in pairs if not sep or not d]
        if bad:
            raise ValueError(f"mmseg_segmentation: extra_dirs takes key:folder pairs (e.g. dsm:dsm_dir), got {value}")
        value = {k: d for k, _, d in pairs}
    unknown = sorted(set(value) - set(EXTRA_KEYS))
    if unknown:
        raise ValueError(f"mmseg_segmentation: extra_dirs keys must be sample keys {list(EXTRA_KEYS)}, got {unknown}")
    return {str(k): str(d) for k, d in value.items()}


@register_dataset("mmseg_segmentation")
class MMSegSegmentation(GenericDataset):
    """Semantic segmentation in mmsegmentation's ``img_dir``/``ann_dir`` layout (Potsdam, Vaihingen, LoveDA,
    iSAID as its converters write them, or your own), with optional ``dsm_dir``/``ndsm_dir``/``ms_dir``.

    Args:
        root: the folder holding ``img_dir/`` and ``ann_dir/``.
        split: ``train``, ``val`` or ``test`` (see ``test_split``).
        classes: class names in id order; else ``classes.json``'s ``"classes"``, else the preset's. Required.
        ignore_index: the mask value (after ``reduce_zero_label``) that is not a class (default 255).
        reduce_zero_label: mmsegmentation's reduction: 0 -> ignored, v -> v - 1.
        preset: ``potsdam``, ``vaihingen``, ``loveda`` or ``isaid``: mmsegmentation's definitions for those.
        img_suffix, seg_map_suffix: file endings (default: any image suffix; masks ``.png``).
        extra_dirs: extra modalities, e.g. ``dsm:dsm_dir`` (default: whichever of ``dsm_dir``, ``ndsm_dir``,
            ``ms_dir`` exists). Files share the image's name stem; heights are read as stored (float32),
            with ``dsm_valid`` False at the raster's nodata value, at ``height_nodata`` and at NaN.
        bands, scale: as ``image_folder`` (1-based ``rgb`` bands; divisor to [0, 1]).
        test_split: ``auto`` (``test`` if ``ann_dir/test`` holds masks, else ``val``), ``test`` or ``val``.
        transforms, validate: as the other readers.
    """

    name = "mmseg_segmentation"

    def __init__(self, root: str | Path, split: str = "train", classes: Any = None, ignore_index: int | None = None,
                 reduce_zero_label: bool | None = None, preset: str | None = None, img_suffix: str | None = None,
                 seg_map_suffix: str | None = None, extra_dirs: Any = None, height_nodata: float | None = None,
                 bands: Any = None, scale: float | None = None, test_split: str = "auto",
                 transforms: Transforms | None = None, validate: bool = True) -> None:  # fmt: skip
        super().__init__(root, split, validate)
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"{self.name}: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        if test_split not in ("auto", "test", "val"):
            raise ValueError(f"{self.name}: test_split must be auto, test or val, got {test_split!r}")
        meta = {**PRESETS.get(preset or "", {}), **load_meta_file(self.root, self.name)}
        given = dict(classes=as_name_list(classes), ignore_index=ignore_index, reduce_zero_label=reduce_zero_label,
                     img_suffix=img_suffix, seg_map_suffix=seg_map_suffix)  # fmt: skip
        meta.update({k: v for k, v in given.items() if v is not None})
        self.classes = as_name_list(meta.get("classes"))
        if not self.classes:
            raise ValueError(f"{self.name}: no class names; pass classes=a,b,c or write ROOT/classes.json as "
                             '{"classes": ["a", "b", "c"], "ignore_index": 255}' + f" ({HINT})")  # fmt: skip
        self.ignore_index = int(meta.get("ignore_index", IGNORE))
        self.reduce_zero_label = bool(meta.get("reduce_zero_label", False))
        self.img_suffix, self.seg_map_suffix = meta.get("img_suffix"), meta.get("seg_map_suffix", ".png")
        self.palette = [tuple(c) for c in meta.get("palette", ())] or None
        self.height_nodata, self.bands, self.scale = height_nodata, as_int_list(bands), scale
        self.transforms, self.test_split = transforms, test_split
        self.extra = _extra_dirs(extra_dirs, self.root)
        self.folder = self._folder()
        self.items = self._items()
        files = [p for item in self.items for p in item.values()]
        self.records = cached_scan(self.name, {"roles": sorted(self.extra)}, files, self._scan)
        self._lut = self._lookup()
        for record, item in zip(self.records, self.items):
            self._check_values(record, item["mask"])
        self.record_problems(self.records)

    # ---- layout -----------------------------------------------------------------------------------------
    def _folder(self) -> str | None:
        """The split folder this split reads (``test`` may read ``val``); ``None``: an absent ``val`` (empty)."""
        for folder in ("img_dir", "ann_dir"):
            if not (self.root / folder).is_dir():
                raise DatasetNotFoundError(self.name, self.root, f"folder {folder}/", HINT)
        if self.split == "train":
            chosen = "train"
        elif self.split == "val":
            chosen = "val" if (self.root / "img_dir" / "val").is_dir() else None
        elif self.test_split == "auto":
            ann_test = self.root / "ann_dir" / "test"
            chosen = "test" if ann_test.is_dir() and list_images(ann_test, recursive=True) else "val"
        else:
            chosen = self.test_split
        if chosen is not None:
            for folder in ("img_dir", "ann_dir", *self.extra.values()):
                if not (self.root / folder / chosen).is_dir():
                    raise DatasetNotFoundError(self.name, self.root, f"folder {folder}/{chosen}/", HINT)
        reads = f"reads {chosen}/" if chosen else "is empty (no img_dir/val/)"
        self.split_protocol = f"mmseg split folders: {self.split} {reads}"
        return chosen

    def _items(self) -> list[dict[str, Path]]:
        """``{"image": ..., "mask": ..., <extra key>: ...}`` for every image of the split folder."""
        if self.folder is None:
            return []
        img_dir = self.root / "img_dir" / self.folder
        suffixes = (self.img_suffix.lower(),) if self.img_suffix else IMAGE_SUFFIXES
        images = [p for p in list_images(img_dir, recursive=True)
                  if p.name.lower().endswith(suffixes)]  # fmt: skip
        if not images:
            raise DatasetNotFoundError(self.name, self.root, f"images in img_dir/{self.folder}/", HINT)
        extra_index = {key: self._by_stem(self.root / d / self.folder) for key, d in self.extra.items()}
        items, missing = [], []
        for image in images:
            rel = image.relative_to(img_dir)
            stem = rel.as_posix()[: -len(self.img_suffix)] if self.img_suffix else rel.with_suffix("").as_posix()
            item = {"image": image, "mask": self.root / "ann_dir" / self.folder / f"{stem}{self.seg_map_suffix}"}
            for key, index in extra_index.items():
                if stem in index:
                    item[key] = index[stem]
                else:
                    missing.append(f"{self.extra[key]}/{self.folder}/{stem}.*")
            if not item["mask"].is_file():
                missing.append(item["mask"].relative_to(self.root).as_posix())
            items.append(item)
        if missing:
            raise DatasetNotFoundError(self.name, self.root, missing, "every image needs its mask (and extra files) "
                                       f"under the same name; seg_map_suffix is {self.seg_map_suffix!r}")  # fmt: skip
        return items

    @staticmethod
    def _by_stem(folder: Path) -> dict[str, Path]:
        return {p.relative_to(folder).with_suffix("").as_posix(): p for p in list_images(folder, recursive=True)}

    @property
    def source(self) -> str:
        return f"folder {self.folder}"

    # ---- content ------------------------------------------------------------------------------------------
    def _scan(self) -> list[dict[str, Any]]:
        records = []
        for item in self.items:
            headers, problems, shapes = header_record(item, self.name, "image", ["mask", *self.extra])
            values: dict[str, int] = {}
            if "mask" in headers:
                try:
                    values = value_counts(read_label(item["mask"], self.name))
                except DatasetFileError as err:
                    problems.append((str(err.path), err.problem))
            records.append({"shapes": shapes, "problems": problems, "values": values})
        return records

    def _lookup(self) -> np.ndarray:
        """Raw mask value (0..LUT_SIZE-1) -> class id, 255 (ignored) or -1 (undeclared), by mmsegmentation's rules."""
        raw = np.arange(LUT_SIZE, dtype=np.int64)
        value = raw.copy()
        if self.reduce_zero_label:  # mmseg LoadAnnotations: 0 -> 255, v -> v - 1, and 255 stays 255
            value = np.where(raw == 0, IGNORE, np.where(raw == IGNORE, IGNORE, raw - 1))
        out = np.where((value >= 0) & (value < len(self.classes)), value, -1)
        out[value == self.ignore_index] = IGNORE
        return out

    def classes_of(self, raw: np.ndarray | int) -> np.ndarray:
        """Class ids (255 ignored, -1 undeclared) of raw mask values; values outside the table are undeclared."""
        raw = np.asarray(raw, dtype=np.int64)
        inside = (raw >= 0) & (raw < LUT_SIZE)
        return np.where(inside, self._lut[np.where(inside, raw, 0)], -1)

    def _check_values(self, record: dict[str, Any], mask: Path) -> None:
        undeclared = {int(v): n for v, n in record["values"].items() if self.classes_of(int(v)) < 0}
        if undeclared:
            listed = ", ".join(f"{v} ({n} px)" for v, n in sorted(undeclared.items())[:4])
            rule = " after reduce_zero_label" if self.reduce_zero_label else ""
            record["problems"].append((str(mask), f"{self.name}: mask value(s) {listed} are neither a declared class "
                                       f"(0-{len(self.classes) - 1}{rule}) nor ignore_index {self.ignore_index}; "
                                       "declare the classes (classes=... or classes.json) or fix the mask"))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = check_index(index, len(self), f"{self.name} {self.split} split")
        item = self.items[i]
        pixels = read_pixels(item["image"], self.name)
        raw = read_label(item["mask"], self.name)
        if raw.shape != pixels.shape[1:]:
            raise DatasetFileError(item["mask"], f"{self.name}: mask is {raw.shape[1]}x{raw.shape[0]} but its image "
                                   f"is {pixels.shape[2]}x{pixels.shape[1]}")  # fmt: skip
        mask = self.classes_of(raw)
        if (mask < 0).any():
            bad = int(raw[mask < 0][0])
            raise DatasetFileError(item["mask"], f"{self.name}: mask value {bad} is neither a declared class nor "
                                   f"ignore_index {self.ignore_index}")  # fmt: skip
        rgb = to_unit(pick_bands(pixels, self.bands, item["image"], self.name), self.scale, item["image"], self.name)
        sample: dict[str, Any] = {"rgb": torch.from_numpy(rgb), "mask": torch.from_numpy(mask), "index": i}
        for key in self.extra:
            sample.update(self._extra(key, item[key], pixels.shape[1:]))
        return self.transforms(sample) if self.transforms is not None else sample

    def _extra(self, key: str, path: Path, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        values = read_pixels(path, self.name)
        if values.shape[1:] != tuple(shape):
            raise DatasetFileError(path, f"{self.name}: {key} is {values.shape[2]}x{values.shape[1]} but its image is "
                                   f"{shape[1]}x{shape[0]}")  # fmt: skip
        if key not in HEIGHT_KEYS:
            return {key: torch.from_numpy(to_unit(values, None, path, self.name))}
        heights = values[:1].astype(np.float32)
        valid = np.isfinite(heights)
        nodata = [self.height_nodata]
        if path.suffix.lower() in (".tif", ".tiff"):
            from .geotiff import raster_info

            nodata.append(raster_info(path).nodata)
        for value in nodata:
            if value is not None and np.isfinite(value):
                valid &= heights != np.float32(value)
        heights[~valid] = 0.0  # never NaN in a sample (docs/layout.md)
        return {key: torch.from_numpy(heights), "dsm_valid": torch.from_numpy(valid)}

    # ---- protocol -----------------------------------------------------------------------------------------
    @property
    def metainfo(self) -> dict[str, Any]:
        """Class names (``classes``, what the segmentation task reads), palette, ignore value and split."""
        return {"classes": self.classes, "palette": self._palette(), "ignore_index": IGNORE,
                "source_ignore_index": self.ignore_index, "reduce_zero_label": self.reduce_zero_label,
                "modalities": ["rgb", *self.extra], "split_protocol": self.split_protocol}  # fmt: skip

    def _palette(self) -> list[tuple[int, int, int]]:
        if self.palette and len(self.palette) == len(self.classes):
            return self.palette
        from matplotlib import colormaps

        colours = colormaps["tab20"](np.arange(len(self.classes)) % 20)[:, :3]
        return [tuple(int(round(255 * c)) for c in rgb) for rgb in colours]

    def _pixel_counts(self, record: dict[str, Any]) -> np.ndarray:
        counts = np.zeros(len(self.classes) + 1, dtype=np.int64)  # last bin: ignored
        for v, n in record["values"].items():
            cls = int(self.classes_of(int(v)))
            counts[len(self.classes) if cls in (IGNORE, -1) else cls] += n
        return counts

    def dominant_classes(self) -> np.ndarray:
        """Most frequent declared class of every sample (255 when none), from the scan: nothing is decoded."""
        out = []
        for record in self.records:
            counts = self._pixel_counts(record)[:-1]
            out.append(int(counts.argmax()) if counts.any() else IGNORE)
        return np.asarray(out, dtype=np.int64)

    def label_summary(self, kind: str) -> np.ndarray | None:
        """``dominant_class`` from the scan (``rsdatasets.protocol``)."""
        return self.dominant_classes() if kind == "dominant_class" else None

    def scan_summary(self) -> ScanSummary:
        total = sum((self._pixel_counts(r) for r in self.records), np.zeros(len(self.classes) + 1, np.int64))
        counts = Counter(dict(zip([*self.classes, "(ignored)"], total.tolist())))
        values = Counter()
        for record in self.records:
            values.update({int(v): n for v, n in record["values"].items()})
        ids = {v: int(self.classes_of(v)) for v in values}
        legend = {v: "ignore" if c == IGNORE else "undeclared" if c < 0 else self.classes[c] for v, c in ids.items()}
        return ScanSummary(class_counts=counts, count_unit="pixels", shapes=self.shapes_of(self.records),
                           label_values=values, legend=legend)  # fmt: skip

    def plot(self, sample: dict[str, Any], show_titles: bool = True, suptitle: str | None = None) -> Figure:
        """Image, extra modalities (heights with nodata in magenta), mask and, if present, ``prediction``."""
        from matplotlib import colormaps
        from matplotlib.colors import ListedColormap
        from matplotlib.figure import Figure

        def arr(x: Any) -> np.ndarray:
            return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)

        keys = ["rgb", *(k for k in HEIGHT_KEYS if k in sample), *(k for k in ("mask", "prediction") if k in sample)]
        fig = Figure(figsize=(3.2 * len(keys), 3.4), layout="constrained")
        cmap = ListedColormap(np.asarray(self._palette(), float) / 255.0).with_extremes(over="black")
        for ax, key in zip(np.atleast_1d(fig.subplots(1, len(keys))), keys):
            ax.set_axis_off()
            if key == "rgb":
                ax.imshow(as_image(sample["rgb"]))
            elif key in HEIGHT_KEYS:
                valid = arr(sample["dsm_valid"])[0] if "dsm_valid" in sample else None
                heights = arr(sample[key])[0]
                shown = np.ma.masked_where(~valid, heights) if valid is not None else heights
                ax.imshow(shown, cmap=colormaps["terrain"].with_extremes(bad="m"))
            else:
                labels = arr(sample[key])
                labels = labels.argmax(0) if labels.ndim == 3 else labels
                ax.imshow(labels, cmap=cmap, vmin=-0.5, vmax=len(self.classes) - 0.5, interpolation="nearest")
            if show_titles:
                ax.set_title(f"{key} (ignored: black)" if key in ("mask", "prediction") else key, fontsize=9)
        if suptitle is not None:
            fig.suptitle(suptitle)
        return fig
