"""``image_folder``: scene classification from one folder per class, the layout of UC Merced, AID,
NWPU-RESISC45, PatternNet, RSSCN7 and EuroSAT, in any image format Pillow or GDAL reads.

Two layouts are read::

    ROOT/<class>/<image>                        (+ optional ROOT/train.txt, val.txt, test.txt)
    ROOT/{train,val,test}/<class>/<image>       (split folders; val may be absent)

Split lists name one image per line, as a path under ROOT (``forest/forest_01.tif``) or a bare file
name (``forest_01.tif``, TorchGeo's ``uc_merced-train.txt`` style, also found as ``*-train.txt`` /
``*_train.txt``). Without lists or split folders, a seeded split stratified by class is drawn
(``val_fraction``, ``test_fraction``, ``split_seed``) and recorded in ``metainfo["split_protocol"]``.
Class ids are the positions in ``classes`` (an option, or ``"classes"`` in ``ROOT/classes.json``),
else in the sorted folder names.
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
    GenericDataset,
    ScanSummary,
    as_int_list,
    as_name_list,
    cached_scan,
    header_record,
    list_images,
    load_meta_file,
    pick_bands,
    read_list,
    read_pixels,
    resize,
    seeded_split,
    split_fractions,
    to_unit,
)
from .scene_classification import Transforms, check_index, plot_scene_sample

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HINT = "see docs/datasets.md, 'Your own data'"


def _class_dirs(folder: Path) -> list[str]:
    """Sub-folders of ``folder`` that can be classes (hidden ``.x`` / ``_x`` ones such as ``__MACOSX`` are not)."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


@register_dataset("image_folder")
class ImageFolder(GenericDataset):
    """Scene classification from one folder per class (any Pillow/GDAL format); split lists, split folders
    or a seeded stratified split.

    Args:
        root: the folder holding the class folders (or the ``train``/``val``/``test`` folders).
        split: ``train``, ``val`` or ``test``.
        classes: class names in id order (default: ``classes.json``, else the sorted folder names).
        bands: 1-based bands for ``rgb`` (e.g. ``4,3,2`` for Sentinel-2's red, green, blue); default the
            first three, a single band repeated.
        ms_bands: 1-based bands returned as ``ms`` (e.g. all 13 Sentinel-2 bands); default none.
        scale: pixels are divided by it (default: the dtype's maximum, e.g. 255; use 10000 for Sentinel-2
            reflectances) and clipped to [0, 1].
        size: resize every image to ``size`` x ``size``; needed when images differ in size.
        val_fraction, test_fraction, split_seed: the seeded split used when the copy has none.
        transforms: a callable on the sample dict.
        validate: raise on the first bad file (default); ``False`` collects them in ``problems``.
    """

    name = "image_folder"

    def __init__(self, root: str | Path, split: str = "train", classes: Any = None, bands: Any = None,
                 ms_bands: Any = None, scale: float | None = None, size: int | None = None,
                 val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0,
                 transforms: Transforms | None = None, validate: bool = True) -> None:  # fmt: skip
        super().__init__(root, split, validate)
        self.bands, self.ms_bands = as_int_list(bands), as_int_list(ms_bands)
        self.scale, self.size, self.transforms = scale, None if size is None else int(size), transforms
        self.val_fraction, self.test_fraction = split_fractions(val_fraction, test_fraction, self.name)
        self.split_seed = int(split_seed)
        declared = as_name_list(classes) or as_name_list(load_meta_file(self.root, self.name).get("classes"))
        split_dirs = [s for s in self.split_names if (self.root / s).is_dir()]
        self.layout = "folders" if "train" in split_dirs and len(split_dirs) > 1 else "flat"
        bases = [self.root / s for s in split_dirs] if self.layout == "folders" else [self.root]
        found = sorted({c for base in bases for c in _class_dirs(base)})
        if not found:
            raise DatasetNotFoundError(self.name, self.root, "one sub-folder per class (ROOT/<class>/<image>)", HINT)
        self.classes = declared or tuple(found)
        self._check_class_folders(found, bases)
        index = {c: i for i, c in enumerate(self.classes)}
        files, labels = self._select(bases, index)
        self.files, self.labels = files, np.asarray(labels, dtype=np.int64)
        self.records = cached_scan(self.name, {}, self.files, self._scan)
        self._check_sizes()
        self.record_problems(self.records)

    def _check_class_folders(self, found: list[str], bases: list[Path]) -> None:
        """Unknown folders (not in ``classes``), declared classes without a folder, folders without images."""
        unknown = sorted(set(found) - set(self.classes))
        if unknown:
            self.problems.append((bases[0] / unknown[0], f"{self.name}: folder(s) {', '.join(unknown)} are not among "
                                  f"the declared classes {list(self.classes)}; add them to classes or move them away"))
        missing = [c for c in self.classes if c not in found]
        if missing:
            raise DatasetNotFoundError(self.name, self.root, [f"{c}/" for c in missing],
                                       "every declared class needs a folder of images")  # fmt: skip
        for base in bases:
            for name in _class_dirs(base):
                if name in self.classes and not list_images(base / name):
                    self.problems.append((base / name, f"{self.name}: class folder '{name}/' holds no images; add "
                                          "images (png, jpg, tif, ...) or remove the folder"))

    def _select(self, bases: list[Path], index: dict[str, int]) -> tuple[list[Path], list[int]]:
        """This split's files and class ids (from split folders, split lists or the seeded split)."""
        if self.layout == "folders":
            self.split_protocol = f"split folders {', '.join(b.name for b in bases)}"
            base = self.root / self.split
            files = [(p, index[c]) for c in (_class_dirs(base) if base.is_dir() else []) if c in index
                     for p in list_images(base / c)]  # fmt: skip
            return [f for f, _ in files], [c for _, c in files]
        every = [(p, index[c]) for c in self.classes for p in list_images(self.root / c)]
        lists = {s: self._list_file(s) for s in self.split_names}
        if any(lists.values()):
            self.split_protocol = "split lists " + ", ".join(p.name for p in lists.values() if p)
            return self._from_list(lists, every)
        names = seeded_split([self.classes[c] for _, c in every], self.val_fraction, self.test_fraction,
                             self.split_seed)  # fmt: skip
        self.split_protocol = (f"seeded split stratified by class: val_fraction={self.val_fraction}, "
                               f"test_fraction={self.test_fraction}, split_seed={self.split_seed}")  # fmt: skip
        picked = [item for item, name in zip(every, names) if name == self.split]
        return [f for f, _ in picked], [c for _, c in picked]

    def _list_file(self, split: str) -> Path | None:
        candidates = [self.root / f"{split}.txt", *sorted(self.root.glob(f"*-{split}.txt")),
                      *sorted(self.root.glob(f"*_{split}.txt"))]  # fmt: skip
        return next((c for c in candidates if c.is_file()), None)

    def _from_list(self, lists: dict[str, Path | None], every: list[tuple[Path, int]]) -> tuple[list[Path], list[int]]:
        path = lists[self.split]
        if path is None:
            if self.split == "val":  # a copy with train and test lists only: an empty val split, said in the check
                return [], []
            raise DatasetNotFoundError(self.name, self.root, f"{self.split}.txt beside the other split lists", HINT)
        by_rel = {item[0].relative_to(self.root).as_posix(): item for item in every}
        by_name: dict[str, list] = {}
        for item in every:
            by_name.setdefault(item[0].name, []).append(item)
            by_name.setdefault(item[0].stem, []).append(item)
        picked = []
        for number, line in enumerate(read_list(path), start=1):
            entry = line.replace("\\", "/").lstrip("./")
            item = by_rel.get(entry)
            if item is None and len(by_name.get(entry, [])) == 1:
                item = by_name[entry][0]
            if item is None:
                why = "names several images; write it as <class>/<file>" if by_name.get(entry) else "is no image here"
                self.problems.append((path, f"{self.name}: line {number}: {line!r} {why}; fix the list"))
                continue
            picked.append(item)
        return [f for f, _ in picked], [c for _, c in picked]

    def _scan(self) -> list[dict[str, Any]]:
        records = []
        for path in self.files:
            _, problems, shapes = header_record({"image": path}, self.name)
            records.append({"shapes": shapes, "problems": problems})
        return records

    def _check_sizes(self) -> None:
        """Images of several sizes cannot be batched: without ``size`` that is a problem of the split."""
        sizes = Counter((s[3], s[4]) for r in self.records for s in r["shapes"])
        if self.size is None and len(sizes) > 1:
            (w, h), _ = sizes.most_common(1)[0]
            odd = next(p for p, r in zip(self.files, self.records) for s in r["shapes"] if (s[3], s[4]) != (w, h))
            listed = ", ".join(f"{a}x{b} x{n}" for (a, b), n in sizes.most_common(3))
            self.problems.append((odd, f"{self.name}: images come in {len(sizes)} sizes ({listed}); pass size=S "
                                  f"(e.g. size={max(w, h)}) so that they can be batched"))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = check_index(index, len(self), f"{self.name} {self.split} split")
        path = self.files[i]
        pixels = read_pixels(path, self.name)
        sample: dict[str, Any] = {
            "rgb": resize(torch.from_numpy(to_unit(pick_bands(pixels, self.bands, path, self.name), self.scale,
                                                   path, self.name)), self.size),  # fmt: skip
            "label": torch.tensor(int(self.labels[i]), dtype=torch.int64),
            "index": i,
        }
        if self.ms_bands:
            wanted = pixels[[b - 1 for b in self.ms_bands]] if max(self.ms_bands) <= len(pixels) else None
            if wanted is None:
                raise DatasetFileError(path, f"{self.name}: ms_bands={self.ms_bands} but the file has {len(pixels)}")
            sample["ms"] = resize(torch.from_numpy(to_unit(wanted, self.scale, path, self.name)), self.size)
        return self.transforms(sample) if self.transforms is not None else sample

    @property
    def metainfo(self) -> dict[str, Any]:
        """Class names (for the classification task: ``scene_classes``) and the split that was used."""
        return {"classes": self.classes, "scene_classes": self.classes, "split_protocol": self.split_protocol,
                "layout": self.layout}  # fmt: skip

    def label_summary(self, kind: str) -> np.ndarray | None:
        """``scene_class`` from the folder names (``rsdatasets.protocol``)."""
        return self.labels.copy() if kind == "scene_class" else None

    def scan_summary(self) -> ScanSummary:
        counts = Counter({c: 0 for c in self.classes})
        counts.update(self.classes[int(c)] for c in self.labels)
        return ScanSummary(class_counts=counts, count_unit="images", shapes=self.shapes_of(self.records))

    def plot(self, sample: dict[str, Any], show_titles: bool = True, suptitle: str | None = None) -> Figure:
        """The image, titled with its class (and ``prediction``, a class index or logits, if present)."""
        return plot_scene_sample(sample, self.classes, show_titles, suptitle)
