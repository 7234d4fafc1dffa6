"""``voc_detection``: object detection from Pascal VOC XML, horizontal boxes, including DIOR and DIOR-R.

The layout is VOC's, with DIOR's variants::

    ROOT/JPEGImages/<id>.jpg                   (DIOR: JPEGImages-trainval/ and JPEGImages-test/)
    ROOT/Annotations/<id>.xml                  (DIOR: Annotations/Horizontal Bounding Boxes/ or
                                                      Annotations/Oriented Bounding Boxes/ for DIOR-R)
    ROOT/ImageSets/Main/{train,val,test}.txt   (optional: one id per line)

Every ``<object>`` gives one horizontal box (pixels, as written):

* VOC: ``<bndbox><xmin/><ymin/><xmax/><ymax/></bndbox>``; some DIOR files put these four in a
  ``<robndbox>`` element, which is read the same way;
* DIOR-R (the oriented release, ``<type>robndbox</type>``): ``<robndbox>`` with the four corners
  ``x_left_top, y_left_top, x_right_top, ..., y_left_bottom`` -> the corners' min/max (as mmrotate's
  ``DIORDataset`` reads them);
* roLabelImg's oriented boxes: ``<robndbox><cx/><cy/><w/><h/><angle/></robndbox>`` (angle in radians)
  -> the rotated rectangle's corners' min/max.

A horizontal box that reaches outside its image (size from the image file) or has max < min is an
error naming the XML, unless ``clip_boxes=True``; boxes from oriented ones are clipped to the image,
since a rotated rectangle around an object at the border legitimately pokes out, and only one entirely
outside is an error. Zero-area boxes are dropped. ``<difficult>1</difficult>`` sets ``box_difficult``.
Class ids follow ``classes`` (option or ``classes.json``), else the sorted names found in every XML of
the copy (all splits, so ids agree between splits). Without ``ImageSets/Main``, a seeded random split
is drawn (``val_fraction``, ``test_fraction``, ``split_seed``) and recorded in ``metainfo``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from . import register_dataset
from .detection import Annotation, DetectionDataset, _pack
from .errors import DatasetFileError, DatasetNotFoundError
from .generic import (
    IMAGE_SUFFIXES,
    CheckedReader,
    ScanSummary,
    as_name_list,
    cached_scan,
    header_record,
    load_meta_file,
    open_root,
    read_list,
    seeded_split,
    split_fractions,
)
from .scene_classification import Transforms

HINT = "VOC layout: ROOT/JPEGImages/ and ROOT/Annotations/ (docs/datasets.md, 'Your own data')"
CORNERS = ("x_left_top", "y_left_top", "x_right_top", "y_right_top", "x_right_bottom", "y_right_bottom",
           "x_left_bottom", "y_left_bottom")  # fmt: skip
SIDES = ("xmin", "ymin", "xmax", "ymax")


def _number(element: ElementTree.Element, tag: str) -> float:
    text = element.findtext(tag)
    if text is None:
        raise ValueError(f"no <{tag}>")
    return float(text)


def object_box(obj: ElementTree.Element) -> tuple[list[float], bool]:
    """(x0, y0, x1, y1) of one ``<object>`` and whether it came from an oriented box (see the module doc)."""
    for tag in ("bndbox", "robndbox"):
        box = obj.find(tag)
        if box is not None and box.find("xmin") is not None:
            return [_number(box, t) for t in SIDES], False
    box = obj.find("robndbox")
    if box is None:
        raise ValueError("no <bndbox> or <robndbox>")
    if box.find("x_left_top") is not None:
        values = [_number(box, t) for t in CORNERS]
        xs, ys = values[0::2], values[1::2]
    else:
        cx, cy, w, h, angle = (_number(box, t) for t in ("cx", "cy", "w", "h", "angle"))
        cos, sin = math.cos(angle), math.sin(angle)
        corners = [(cx + dx * cos - dy * sin, cy + dx * sin + dy * cos)
                   for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2))]  # fmt: skip
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    return [min(xs), min(ys), max(xs), max(ys)], True


def parse_voc(path: Path, dataset: str) -> tuple[list[dict[str, Any]], str | None]:
    """Objects (name, box, oriented, difficult) and ``<filename>`` of a VOC XML; one clear error if malformed."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as err:
        raise DatasetFileError(path, f"{dataset}: malformed XML ({err}); re-extract or fix the annotation") from err
    objects = []
    for number, obj in enumerate(root.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        try:
            box, oriented = object_box(obj)
        except ValueError as err:
            what = f"object {number} ({name or 'no name'})"
            raise DatasetFileError(path, f"{dataset}: {what}: {err}; fix the XML") from err
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        objects.append({"name": name, "box": box, "oriented": oriented, "difficult": difficult})
    return objects, root.findtext("filename")


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@register_dataset("voc_detection")
class VOCDetection(CheckedReader, DetectionDataset):
    """Horizontal-box detection from Pascal VOC XML (VOC, DIOR, DIOR-R oriented boxes as their bounding box).

    Args:
        root: the folder holding ``Annotations/`` and the image folder(s).
        split: ``train``, ``val`` or ``test``.
        classes: class names in id order (else ``classes.json``, else every name in the XML files, sorted).
            Names are matched exactly, then ignoring case, spaces, hyphens and underscores.
        boxes: ``auto`` (DIOR's ``Horizontal Bounding Boxes`` if present, else ``Oriented Bounding Boxes``,
            else ``Annotations/`` itself), ``horizontal`` or ``oriented``.
        clip_boxes: clip horizontal boxes that reach outside the image instead of reporting them.
        crop, overlap, min_visible: tiling, as the ``dior`` / ``dota`` readers.
        val_fraction, test_fraction, split_seed: the seeded split used without ``ImageSets/Main``.
        transforms, validate: as the other readers.
    """

    name = "voc_detection"
    splits = split_names = ("train", "val", "test")

    def __init__(self, root: str | Path, split: str = "train", classes: Any = None, boxes: str = "auto",
                 clip_boxes: bool = False, crop: int | None = None, overlap: int = 0, min_visible: float = 0.5,
                 val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0,
                 transforms: Transforms | None = None, validate: bool = True) -> None:  # fmt: skip
        self.root = open_root(self.name, root, split, self.split_names)
        if boxes not in ("auto", "horizontal", "oriented"):
            raise ValueError(f"{self.name}: boxes must be auto, horizontal or oriented, got {boxes!r}")
        self.validate, self.problems, self.split = bool(validate), [], split
        self.boxes, self.clip_boxes = boxes, bool(clip_boxes)
        self.val_fraction, self.test_fraction = split_fractions(val_fraction, test_fraction, self.name)
        self.split_seed = int(split_seed)
        self.declared = as_name_list(classes) or as_name_list(load_meta_file(self.root, self.name).get("classes"))
        super().__init__(root, split, crop, overlap, min_visible, transforms)  # lists items (_find_items)
        self._sizes = {k: tuple(s[3:5]) for k, r in enumerate(self.records) for s in r["shapes"] if s[0] == "image"}

    # ---- layout -------------------------------------------------------------------------------------------
    def _annotation_dir(self) -> Path:
        base = self.root / "Annotations"
        if not base.is_dir():
            raise DatasetNotFoundError(self.name, self.root, "folder Annotations/", HINT)
        horizontal, oriented = base / "Horizontal Bounding Boxes", base / "Oriented Bounding Boxes"
        if self.boxes == "oriented" or (self.boxes == "auto" and not horizontal.is_dir() and oriented.is_dir()):
            if not oriented.is_dir():
                raise DatasetNotFoundError(self.name, self.root, "folder Annotations/Oriented Bounding Boxes/", HINT)
            return oriented
        return horizontal if horizontal.is_dir() else base

    def _image_dirs(self) -> list[Path]:
        dirs = [d for d in sorted(self.root.iterdir()) if d.is_dir() and d.name.startswith("JPEGImages")]
        if not dirs:
            raise DatasetNotFoundError(self.name, self.root, "folder JPEGImages/ (or JPEGImages-trainval/, ...)", HINT)
        return dirs

    def _find_items(self) -> list[tuple[Path, Path]]:
        ann_dir = self._annotation_dir()
        xmls = sorted(p for p in ann_dir.glob("*.xml") if not p.name.startswith("."))
        if not xmls:
            raise DatasetNotFoundError(self.name, self.root, f"*.xml in {ann_dir.relative_to(self.root)}/", HINT)
        images: dict[str, Path] = {}
        for folder in self._image_dirs():
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    images.setdefault(path.name, path)
                    images.setdefault(path.stem, path)
        records = cached_scan(self.name, {"boxes": self.boxes}, [*xmls, *sorted(set(images.values()))],
                              lambda: [self._scan(x, images) for x in xmls])  # fmt: skip
        self.classes = self.declared or tuple(sorted({o["name"] for r in records for o in r["objects"]}))
        if not self.classes:
            raise ValueError(f"{self.name}: no <object> in any XML and no classes given; pass classes=a,b,c")
        self._index = {c: i for i, c in enumerate(self.classes)}
        self._loose = {_key(c): i for i, c in enumerate(self.classes)}
        keep = self._select([x.stem for x in xmls], records)
        judged = [self._judge(records[k], xmls[k]) for k in keep]
        self.record_problems(judged)
        # Without validation, an item whose image is missing or unreadable is reported, not served.
        usable = [j for j, record in enumerate(judged) if any(s[0] == "image" for s in record["shapes"])]
        self.records = [judged[j] for j in usable]
        return [(Path(judged[j]["image"]), xmls[keep[j]]) for j in usable]

    def _select(self, ids: list[str], records: list[dict[str, Any]]) -> list[int]:
        """Positions of this split's items: ``ImageSets/Main/<split>.txt``, else a seeded random split."""
        main = next((m for m in (self.root / "ImageSets" / "Main", self.root / "ImageSets") if m.is_dir()), None)
        if main is not None and any(main.glob("*.txt")):
            self.split_protocol = f"split lists {main.relative_to(self.root)}/*.txt"
            path = main / f"{self.split}.txt"
            if not path.is_file():
                if self.split == "val":
                    return []
                raise DatasetNotFoundError(self.name, self.root, f"{path.relative_to(self.root)}", HINT)
            where = {i: k for k, i in enumerate(ids)}
            keep = []
            for number, line in enumerate(read_list(path), start=1):
                k = where.get(Path(line.split()[0]).stem)
                if k is None:
                    self.problems.append((path, f"{self.name}: line {number}: {line!r} has no XML in Annotations; "
                                          "fix the list or add the annotation"))  # fmt: skip
                else:
                    keep.append(k)
            return keep
        names = seeded_split(["all"] * len(ids), self.val_fraction, self.test_fraction, self.split_seed)
        self.split_protocol = (f"seeded random split: val_fraction={self.val_fraction}, "
                               f"test_fraction={self.test_fraction}, split_seed={self.split_seed}")  # fmt: skip
        return [k for k, name in enumerate(names) if name == self.split]

    # ---- content ------------------------------------------------------------------------------------------
    def _scan(self, xml: Path, images: dict[str, Path]) -> dict[str, Any]:
        """One annotation: its objects and its image's header (cached; judged against the options later)."""
        try:
            objects, filename = parse_voc(xml, self.name)
        except DatasetFileError as err:
            return {"image": None, "objects": [], "shapes": [], "problems": [(str(xml), err.problem)]}
        image = images.get(filename or "") or images.get(xml.stem)
        if image is None:
            problem = f"{self.name}: no image {xml.stem}.* (or <filename> {filename}) in the JPEGImages folder(s)"
            return {"image": None, "objects": objects, "shapes": [], "problems": [(str(xml), problem)]}
        _, problems, shapes = header_record({"image": image}, self.name)
        return {"image": str(image), "objects": objects, "shapes": shapes, "problems": problems}

    def _judge(self, record: dict[str, Any], xml: Path) -> dict[str, Any]:
        """Boxes and labels of one record under this reader's classes and clipping rule, plus their problems."""
        size = next(((s[3], s[4]) for s in record["shapes"] if s[0] == "image"), None)
        try:
            boxes, labels, difficult = self._boxes(record["objects"], xml, size)
            judged = {"boxes": boxes, "labels": labels, "difficult": difficult, "problems": record["problems"]}
        except DatasetFileError as err:
            judged = {"boxes": [], "labels": [], "difficult": [], "problems": [*record["problems"],
                                                                               (str(xml), err.problem)]}
        return {**record, **judged}

    def _label(self, name: str, xml: Path) -> int:
        label = self._index.get(name, self._loose.get(_key(name)))
        if label is None:
            raise DatasetFileError(xml, f"{self.name}: class {name!r} is not among the declared classes "
                                   f"{list(self.classes)}; add it to classes or fix the XML")  # fmt: skip
        return label

    def _boxes(self, objects: list[dict[str, Any]], xml: Path, size: tuple[int, int] | None) -> tuple[list, list, list]:
        boxes, labels, difficult = [], [], []
        for obj in objects:
            label = self._label(obj["name"], xml)
            x0, y0, x1, y1 = obj["box"]
            if x1 < x0 or y1 < y0:
                raise DatasetFileError(xml, f"{self.name}: box {[x0, y0, x1, y1]} of {obj['name']!r} has max < min; "
                                       "fix or delete that object")  # fmt: skip
            if size is not None:
                width, height = size
                outside = x0 < 0 or y0 < 0 or x1 > width or y1 > height
                gone = x0 >= width or y0 >= height or x1 <= 0 or y1 <= 0
                if gone or (outside and not (obj["oriented"] or self.clip_boxes)):
                    where = "entirely outside" if gone else "outside"
                    hint = "" if gone or obj["oriented"] else " (clip_boxes=True clips such boxes)"
                    raise DatasetFileError(xml, f"{self.name}: box {[x0, y0, x1, y1]} of {obj['name']!r} lies {where} "
                                           f"the {width}x{height} image; fix or delete that object{hint}")  # fmt: skip
                x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
                y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
            if x1 > x0 and y1 > y0:  # zero-area boxes carry no signal and break box-delta encoding
                boxes.append([x0, y0, x1, y1])
                labels.append(label)
                difficult.append(bool(obj["difficult"]))
        return boxes, labels, difficult

    def _parse(self, path: Path, width: int | None, height: int | None) -> Annotation:
        """The boxes of one annotation (parsed again, so a file edited since the scan is read as it is now)."""
        objects, _ = parse_voc(path, self.name)
        return _pack(*self._boxes(objects, path, (width, height) if width is not None else None))

    # ---- protocol -----------------------------------------------------------------------------------------
    @property
    def metainfo(self) -> dict[str, Any]:
        """Class names (``det_classes``, what the detection task reads), crop and the split that was used."""
        return {**super().metainfo, "split_protocol": self.split_protocol}

    def box_labels_per_sample(self) -> list[np.ndarray]:
        """Class ids in every sample from the scan (no file opened), cropped like the samples."""
        out = []
        for k, y, x in self.tiles:
            record = self.records[k]
            ann = _pack(record["boxes"], record["labels"], record["difficult"])
            out.append(self._crop(ann, x, y)[1])
        return out

    def scan_summary(self) -> ScanSummary:
        counts = Counter({c: 0 for c in self.classes})
        counts.update(self.classes[label] for record in self.records for label in record["labels"])
        summary = ScanSummary(class_counts=counts, count_unit="boxes", shapes=self.shapes_of(self.records))
        empty = sum(1 for record in self.records if not record["labels"])
        if empty:
            summary.notes.append(f"{empty} image(s) without boxes")
        return summary

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, n={len(self)}, crop={self.crop}, root='{self.root}')"
