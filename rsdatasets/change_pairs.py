"""``change_pairs``: bi-temporal change detection in the ``A/``, ``B/``, ``label/`` layout.

LEVIR-CD, WHU-CD and CDD ship this tree (S2Looking a variant of it), and the common change-detection code bases
(BIT-CD, ChangeFormer) read it with a ``list/`` folder of split files::

    ROOT/A/<name>  ROOT/B/<name>  ROOT/label/<name>   (+ optional ROOT/list/{train,val,test}.txt)
    ROOT/{train,val,test}/{A,B,label}/<name>          (split folders)

A date-2 image has the date-1 image's file name; the label may have another suffix (``x.jpg`` with
``x.png``). The folder names are options (``t1_dir``, ``t2_dir``, ``label_dir``: CDD's ``A``/``B``/``OUT``,
S2Looking's ``Image1``/``Image2``; its ``label1``/``label2`` maps are colour images, which are refused here:
write them as one band first). Split lists name one pair per line (file
name, with or without suffix). Without lists or split folders, a seeded split stratified by whether a
pair changed is drawn and recorded in ``metainfo["split_protocol"]``.

Labels are binary: every mask holds 0/255 or 0/1 (the larger value is change). Any other value is an
error naming the file, unless ``threshold`` is set for masks stored lossily (JPEG): then change is
``value >= threshold``. Samples are those of the named change readers (``rgb``, ``rgb_t2``, ``change``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from . import register_dataset
from .change_detection import ChangeDetectionDataset, Pair
from .errors import DatasetFileError, DatasetNotFoundError
from .generic import (
    CheckedReader,
    ScanSummary,
    cached_scan,
    header_record,
    list_images,
    open_root,
    read_label,
    read_list,
    seeded_split,
    split_fractions,
    value_counts,
)
from .scene_classification import Transforms

HINT = "expected ROOT/A/, ROOT/B/, ROOT/label/ (or ROOT/<split>/A ...); see docs/datasets.md, 'Your own data'"


@register_dataset("change_pairs")
class ChangePairs(CheckedReader, ChangeDetectionDataset):
    """Binary change detection from ``A/``, ``B/``, ``label/`` (+ ``list/`` split files or split folders).

    Args:
        root: the folder holding ``A/``, ``B/``, ``label/`` (or ``train/``, ``val/``, ``test/`` with them).
        split: ``train``, ``val`` or ``test``.
        t1_dir, t2_dir, label_dir, list_dir: folder names (defaults ``A``, ``B``, ``label``, ``list``).
        crop: cut pairs into ``crop`` x ``crop`` tiles without overlap (``None``: whole images).
        threshold: for lossy masks, change = value >= threshold; ``None`` (default) accepts 0/255 or 0/1 only.
        val_fraction, test_fraction, split_seed: the seeded split used when the copy has none.
        transforms, validate: as the other readers.
    """

    name = "change_pairs"
    splits = split_names = ("train", "val", "test")

    def __init__(self, root: str | Path, split: str = "train", t1_dir: str = "A", t2_dir: str = "B",
                 label_dir: str = "label", list_dir: str = "list", crop: int | None = None,
                 threshold: int | None = None, val_fraction: float = 0.1, test_fraction: float = 0.2,
                 split_seed: int = 0, transforms: Transforms | None = None, validate: bool = True) -> None:  # fmt: skip
        self.root = open_root(self.name, root, split, self.split_names)
        self.validate, self.problems = bool(validate), []
        self.dirs, self.list_dir, self.threshold = (t1_dir, t2_dir, label_dir), list_dir, threshold
        self.val_fraction, self.test_fraction = split_fractions(val_fraction, test_fraction, self.name)
        self.split_seed = int(split_seed)
        self.split = split
        super().__init__(root, split, crop, transforms)  # finds pairs (_find_pairs) and tiles them

    # ---- layout -------------------------------------------------------------------------------------------
    def _find_pairs(self) -> list[Pair]:
        t1, t2, label = self.dirs
        split_base = self.root / self.split
        if (split_base / t1).is_dir():
            self.split_protocol = f"split folders: {self.split}/"
            pairs = self._pairs(split_base)
            records = self._scan_pairs(pairs)
        elif (self.root / t1).is_dir():
            pairs = self._pairs(self.root)
            records = self._scan_pairs(pairs)
            pairs, records = self._select(pairs, records)
        elif self.split == "val" and (self.root / "train" / t1).is_dir():
            self.split_protocol = "split folders: no val/ folder (empty split)"
            pairs, records = [], []
        else:
            raise DatasetNotFoundError(self.name, self.root, f"folder {t1}/ (or {self.split}/{t1}/)", HINT)
        self.records = records
        self.record_problems(records)
        return pairs

    def _pairs(self, base: Path) -> list[Pair]:
        t1, t2, label = (base / d for d in self.dirs)
        missing = [f"{d.relative_to(self.root)}/" for d in (t1, t2, label) if not d.is_dir()]
        if missing:
            raise DatasetNotFoundError(self.name, self.root, missing, HINT)
        images = list_images(t1)
        if not images:
            raise DatasetNotFoundError(self.name, self.root, f"images in {t1.relative_to(self.root)}/", HINT)
        t2_files = {p.name: p for p in list_images(t2)}
        t2_stems = {p.stem: p for p in t2_files.values()}
        labels = {p.stem: p for p in list_images(label)}
        pairs, absent = [], []
        for image in images:
            other = t2_files.get(image.name) or t2_stems.get(image.stem)
            mask = labels.get(image.stem)
            absent += [f"{d.relative_to(self.root)}/{image.stem}.*"
                       for d, f in ((t2, other), (label, mask)) if f is None]  # fmt: skip
            if other is not None and mask is not None:
                pairs.append((image, other, mask))
        if absent:
            raise DatasetNotFoundError(self.name, self.root, absent, "every date-1 image needs its date-2 image and "
                                       "label under the same name")  # fmt: skip
        return pairs

    def _select(self, pairs: list[Pair], records: list[dict[str, Any]]) -> tuple[list[Pair], list[dict[str, Any]]]:
        """This split's pairs of a flat tree: from ``list/<split>.txt``, else a seeded split by has-change."""
        list_folder = self.root / self.list_dir
        if list_folder.is_dir() and any(list_folder.glob("*.txt")):
            path = list_folder / f"{self.split}.txt"
            self.split_protocol = f"split lists {self.list_dir}/*.txt"
            if not path.is_file():
                if self.split == "val":
                    return [], []
                raise DatasetNotFoundError(self.name, self.root, f"{self.list_dir}/{self.split}.txt", HINT)
            index = {}
            for k, pair in enumerate(pairs):
                index.setdefault(pair[0].name, k)
                index.setdefault(pair[0].stem, k)
            keep = []
            for number, line in enumerate(read_list(path), start=1):
                k = index.get(Path(line).name, index.get(Path(line).stem))
                if k is None:
                    self.problems.append((path, f"{self.name}: line {number}: {line!r} is no pair in "
                                          f"{self.dirs[0]}/; fix the list"))  # fmt: skip
                else:
                    keep.append(k)
            return [pairs[k] for k in keep], [records[k] for k in keep]
        changed = ["change" if r["has_change"] else "no change" for r in records]
        names = seeded_split(changed, self.val_fraction, self.test_fraction, self.split_seed)
        self.split_protocol = (f"seeded split stratified by change: val_fraction={self.val_fraction}, "
                               f"test_fraction={self.test_fraction}, split_seed={self.split_seed}")  # fmt: skip
        keep = [k for k, name in enumerate(names) if name == self.split]
        return [pairs[k] for k in keep], [records[k] for k in keep]

    # ---- content ------------------------------------------------------------------------------------------
    def _scan_pairs(self, pairs: list[Pair]) -> list[dict[str, Any]]:
        def compute() -> list[dict[str, Any]]:
            records = []
            for t1, t2, label in pairs:
                files = {"A": t1, "B": t2, "label": label}
                headers, problems, shapes = header_record(files, self.name, "A", ["B", "label"])
                values: dict[str, int] = {}
                if "label" in headers:
                    try:
                        values = value_counts(read_label(label, self.name))
                    except DatasetFileError as err:
                        problems.append((str(err.path), err.problem))
                records.append({"shapes": shapes, "problems": problems, "values": values})
            return records

        records = cached_scan(self.name, {}, [f for pair in pairs for f in pair], compute)
        for record, (_, _, label) in zip(records, pairs):
            record["problems"] = list(record["problems"])
            values = {int(v) for v in record["values"]}
            if self.threshold is None and not (values <= {0, 255} or values <= {0, 1}):
                odd = sorted(values - {0, 1, 255}) or sorted(values)
                record["problems"].append((str(label), f"{self.name}: label values {odd[:4]} in a change mask; masks "
                                           "hold 0/255 or 0/1 (pass threshold=128 for JPEG-compressed masks)"))
            record["has_change"] = bool(any(self._change_value(v) for v in values))
        return records

    def _change_value(self, value: int) -> bool:
        return value >= self.threshold if self.threshold is not None else value > 0

    def _read_change(self, path: Path) -> np.ndarray:
        label = read_label(path, self.name)
        if self.threshold is not None:
            return (label >= self.threshold).astype(np.uint8)
        values = set(np.unique(label).tolist())
        if not (values <= {0, 255} or values <= {0, 1}):
            raise DatasetFileError(path, f"{self.name}: label values {sorted(values)[:4]} in a change mask; masks "
                                   "hold 0/255 or 0/1")  # fmt: skip
        return (label > 0).astype(np.uint8)

    def _tile(self) -> list[tuple[int, int, int]]:
        """Tiles from the scanned headers (a pair whose headers are bad has none); no file is opened again."""
        if self.crop is None:
            return [(k, 0, 0) for k in range(len(self.pairs))]
        tiles = []
        for k, record in enumerate(self.records):
            size = next(((s[3], s[4]) for s in record["shapes"] if s[0] == "A"), None)
            if size is None or record["problems"]:
                continue
            width, height = size
            if width < self.crop or height < self.crop:
                self.problems.append((self.pairs[k][0], f"{self.name}: {width}x{height} px is smaller than "
                                      f"crop={self.crop}"))  # fmt: skip
                continue
            rows, cols = range(0, height - self.crop + 1, self.crop), range(0, width - self.crop + 1, self.crop)
            tiles += [(k, y, x) for y in rows for x in cols]
        self.record_problems([])  # crop problems found while tiling
        return tiles

    # ---- protocol -----------------------------------------------------------------------------------------
    @property
    def metainfo(self) -> dict[str, Any]:
        """Class names (``no change``, ``change``), ignore value, crop and the split that was used."""
        return {**super().metainfo, "split_protocol": self.split_protocol}

    def dominant_classes(self) -> np.ndarray:
        """Whether each sample changed (0/1): from the scan for whole pairs, from the labels for crops."""
        if self.crop is not None:
            return super().dominant_classes()
        return np.asarray([int(r["has_change"]) for r in self.records], dtype=np.int64)

    def scan_summary(self) -> ScanSummary:
        values: Counter = Counter()
        for record in self.records:
            values.update({int(v): n for v, n in record["values"].items()})
        binary = self.threshold is not None or set(values) <= {0, 255} or set(values) <= {0, 1}
        legend = {v: self.classes[int(self._change_value(v))] if binary or v in (0, 1, 255) else "invalid"
                  for v in values}  # fmt: skip
        counts = Counter({c: 0 for c in self.classes})
        for v, n in values.items():
            counts[legend[v]] += n
        return ScanSummary(class_counts=counts, count_unit="pixels", shapes=self.shapes_of(self.records),
                           label_values=values, legend=legend)  # fmt: skip

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, n={len(self)}, crop={self.crop}, root='{self.root}')"
