"""Horizontal-box object-detection readers: DIOR (VOC XML) and DOTA v1.0 (polygon TXT).

Samples: ``rgb`` float32 (3, H, W) in [0, 1], ``boxes`` float32 (N, 4) xyxy in pixels,
``box_labels`` int64 (N,), ``box_difficult`` bool (N,) and ``index``; N may be 0. Annotations
are parsed when a sample is read (construction only lists files), and
:meth:`DetectionDataset.box_labels_per_sample` gives every sample's labels without decoding images.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from xml.etree import ElementTree

import numpy as np
import torch
from torch.utils.data import Dataset

from . import register_dataset
from .errors import DatasetFileError, DatasetNotFoundError
from .scene_classification import Transforms, as_image, check_index, image_size, load_rgb, rgb_tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# DIOR paper order; XML names vary in case and hyphens ("Expressway-Service-area"), so names are
# compared after lower-casing and dropping everything but letters and digits.
DIOR_CLASSES = (
    "airplane", "airport", "baseballfield", "basketballcourt", "bridge", "chimney", "dam", "expresswayservicearea",
    "expresswaytollstation", "golffield", "groundtrackfield", "harbor", "overpass", "ship", "stadium",
    "storagetank", "tenniscourt", "trainstation", "vehicle", "windmill",
)  # fmt: skip
DOTA_CLASSES = (
    "plane", "ship", "storage-tank", "baseball-diamond", "tennis-court", "basketball-court", "ground-track-field",
    "harbor", "bridge", "large-vehicle", "small-vehicle", "helicopter", "roundabout", "soccer-ball-field",
    "swimming-pool",
)  # fmt: skip
Annotation = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (N, 4) float32, labels (N,) int64, difficult (N,)


def _pack(boxes: list[list[float]], labels: list[int], difficult: list[bool]) -> Annotation:
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64), np.asarray(difficult, bool)


def _starts(length: int, crop: int, stride: int) -> list[int]:
    """Tile origins covering ``length``; the last tile is aligned to the far edge instead of padding."""
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop + 1, stride))
    return starts if starts[-1] == length - crop else [*starts, length - crop]


class DetectionDataset(Dataset):
    """Base of the detection readers: (image, annotation) items -> optional tiles -> samples.

    With ``crop``, images are cut into ``crop`` x ``crop`` tiles with ``overlap`` pixels shared by
    neighbours (smaller images are zero-padded); a box is kept in a tile, clipped to it, when at
    least ``min_visible`` of its area lies inside.
    """

    name: ClassVar[str]
    splits: ClassVar[tuple[str, ...]]
    classes: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        crop: int | None = None,
        overlap: int = 0,
        min_visible: float = 0.5,
        transforms: Transforms | None = None,
    ) -> None:
        if split not in self.splits:
            raise ValueError(f"{self.name}: unknown split {split!r}; valid splits: {', '.join(self.splits)}")
        if crop is not None and not 0 <= overlap < crop:
            raise ValueError(f"{self.name}: need 0 <= overlap < crop, got crop={crop}, overlap={overlap}")
        self.root, self.split, self.transforms = Path(root).expanduser(), split, transforms
        self.crop, self.overlap, self.min_visible = crop, overlap, min_visible
        self.items = self._find_items()
        self.tiles: list[tuple[int, int, int]] = []
        self._sizes: dict[int, tuple[int, int]] = {}
        for k, (image, _) in enumerate(self.items):
            if crop is None:
                self.tiles.append((k, 0, 0))
                continue
            width, height = self._sizes[k] = image_size(image, self.name)
            stride = crop - overlap
            self.tiles += [(k, y, x) for y in _starts(height, crop, stride) for x in _starts(width, crop, stride)]
        self._cache: tuple[int, np.ndarray, Annotation] | None = None

    def _find_items(self) -> list[tuple[Path, Path]]:
        raise NotImplementedError

    def _parse(self, path: Path, width: int | None, height: int | None) -> Annotation:
        """Boxes of one annotation file; bounds are checked (or clipped) when the image size is given."""
        raise NotImplementedError

    def _crop(self, ann: Annotation, x: int, y: int) -> Annotation:
        boxes, labels, difficult = ann
        if self.crop is None or not len(boxes):
            return ann
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        inside = np.clip(boxes - np.array([x, y, x, y], np.float32), 0, self.crop)
        visible = (inside[:, 2] - inside[:, 0]) * (inside[:, 3] - inside[:, 1])
        keep = (visible > 0) & (visible >= self.min_visible * area)
        return inside[keep], labels[keep], difficult[keep]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": None}

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = check_index(index, len(self), f"{self.name} {self.split} split")
        k, y, x = self.tiles[i]
        if self._cache is None or self._cache[0] != k:  # one decoded image kept: its tiles are usually read together
            image = load_rgb(self.items[k][0], self.name)
            self._cache = (k, image, self._parse(self.items[k][1], image.shape[1], image.shape[0]))
        _, image, ann = self._cache
        if self.crop is not None:
            tile = np.zeros((self.crop, self.crop, 3), np.uint8)  # zero padding where the image is smaller
            part = image[y : y + self.crop, x : x + self.crop]
            tile[: part.shape[0], : part.shape[1]] = part
            image = tile
        boxes, labels, difficult = self._crop(ann, x, y)
        sample = {
            "rgb": rgb_tensor(image),
            "boxes": torch.from_numpy(boxes.reshape(-1, 4).astype(np.float32)),
            "box_labels": torch.from_numpy(labels.astype(np.int64)),
            "box_difficult": torch.from_numpy(difficult.astype(bool)),
            "index": i,
        }
        return self.transforms(sample) if self.transforms is not None else sample

    def box_labels_per_sample(self) -> list[np.ndarray]:
        """Class ids in every sample from the annotation files alone (no image decoding), e.g. for strata."""
        out, parsed = [], {}
        for k, y, x in self.tiles:
            if k not in parsed:
                parsed[k] = self._parse(self.items[k][1], *self._sizes.get(k, (None, None)))
            out.append(self._crop(parsed[k], x, y)[1])
        return out

    def label_summary(self, kind: str) -> list[np.ndarray] | None:
        """``box_classes`` from the annotation files alone (``rsdatasets.protocol``)."""
        return self.box_labels_per_sample() if kind == "box_classes" else None

    @property
    def metainfo(self) -> dict[str, Any]:
        """Class names in the form mmengine evaluators and visualizers read."""
        return {"classes": self.classes, "det_classes": self.classes, "crop": self.crop}

    def plot(self, sample: dict[str, Any], show_titles: bool = True, suptitle: str | None = None) -> Figure:
        """The image with its boxes, one colour per class and the class name at each box's corner."""
        from matplotlib import colormaps
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle

        fig = Figure(figsize=(6, 6.3), layout="constrained")
        ax = fig.subplots()
        ax.imshow(as_image(sample["rgb"]))
        ax.set_axis_off()
        colours = colormaps["tab20"]
        boxes = torch.as_tensor(sample["boxes"]).reshape(-1, 4).tolist()
        for (x0, y0, x1, y1), lab in zip(boxes, torch.as_tensor(sample["box_labels"]).tolist()):
            colour = colours(lab % 20)
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, linewidth=1, edgecolor=colour))
            ax.text(x0, y0, self.classes[lab], color=colour, fontsize=6, va="bottom")
        if show_titles:
            ax.set_title(f"{self.name} {self.split} #{sample.get('index', '?')}: {len(boxes)} boxes", fontsize=9)
        if suptitle is not None:
            fig.suptitle(suptitle)
        return fig

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, n={len(self)}, crop={self.crop}, root='{self.root}')"


def _first_dir(*candidates: Path) -> Path:
    return next((c for c in candidates if c.is_dir()), candidates[0])


def _match(dataset: str, root: Path, names: list[str], folder: Path, suffix: str, hint: str) -> list[Path]:
    """``folder/<name><suffix>`` for every name; DatasetNotFoundError listing the missing ones."""
    if not folder.is_dir():
        raise DatasetNotFoundError(dataset, root, f"folder {folder.relative_to(root)}/", hint)
    present = {p.name for p in folder.iterdir()}
    missing = [f"{folder.relative_to(root)}/{n}{suffix}" for n in names if f"{n}{suffix}" not in present]
    if missing:
        raise DatasetNotFoundError(dataset, root, missing, hint)
    return [folder / f"{n}{suffix}" for n in names]


@register_dataset("dior")
class DIOR(DetectionDataset):
    """DIOR: 23,463 RGB images of 800 px, 20 classes, horizontal boxes in VOC XML; official train/val/test.

    Layout: ``JPEGImages-trainval/*.jpg``, ``JPEGImages-test/*.jpg``, ``Annotations/Horizontal Bounding
    Boxes/*.xml`` (older releases: ``Annotations/*.xml``) and ``ImageSets/Main/{train,val,test}.txt``.
    A box outside the image or with max < min is an error; zero-area boxes are dropped.
    """

    name = "dior"
    splits = ("train", "val", "test")
    classes = DIOR_CLASSES
    _index = {c: i for i, c in enumerate(DIOR_CLASSES)}

    def _find_items(self) -> list[tuple[Path, Path]]:
        hint = "extract the DIOR images, annotations and ImageSets under ROOT (docs/datasets_more.md)"
        main = _first_dir(self.root / "ImageSets" / "Main", self.root / "Main")
        list_file = main / f"{self.split}.txt"
        if not list_file.is_file():
            raise DatasetNotFoundError(self.name, self.root, f"ImageSets/Main/{self.split}.txt", hint)
        ids = list_file.read_text().split()
        if not ids:
            raise DatasetFileError(list_file, f"{self.name}: the split list is empty; re-extract ImageSets")
        folder = "JPEGImages-test" if self.split == "test" else "JPEGImages-trainval"
        images = _match(self.name, self.root, ids, self.root / folder, ".jpg", hint)
        anns_dir = _first_dir(self.root / "Annotations" / "Horizontal Bounding Boxes", self.root / "Annotations")
        return list(zip(images, _match(self.name, self.root, ids, anns_dir, ".xml", hint)))

    def _parse(self, path: Path, width: int | None, height: int | None) -> Annotation:
        try:
            objects = list(ElementTree.parse(path).getroot().iter("object"))
        except ElementTree.ParseError as err:
            raise DatasetFileError(path, f"{self.name}: malformed XML ({err}); re-extract the annotations") from err
        boxes, labels, difficult = [], [], []
        for obj in objects:
            name = obj.findtext("name", "")
            key = re.sub(r"[^a-z0-9]", "", name.lower())
            if key not in self._index:
                raise DatasetFileError(path, f"{self.name}: unknown class {name!r}; not one of the 20 DIOR classes")
            try:
                x0, y0, x1, y1 = (float(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError) as err:
                raise DatasetFileError(path, f"{self.name}: {name!r} lacks a numeric bndbox ({err})") from err
            outside = width is not None and height is not None and (min(x0, y0) < 0 or x1 > width or y1 > height)
            if outside or x1 < x0 or y1 < y0:
                problem = f"box {[x0, y0, x1, y1]} of {name!r} is inverted or outside the {width}x{height} image"
                raise DatasetFileError(path, f"{self.name}: {problem}; fix or delete that object")
            if x1 > x0 and y1 > y0:  # zero-area boxes carry no signal and break box-delta encoding
                boxes.append([x0, y0, x1, y1])
                labels.append(self._index[key])
                difficult.append(obj.findtext("difficult", "0").strip() == "1")
        return _pack(boxes, labels, difficult)


@register_dataset("dota")
class DOTA(DetectionDataset):
    """DOTA v1.0 with horizontal boxes: ``{train,val}/images/*.png`` and ``{train,val}/labelTxt/*.txt``.

    Each label line is ``x1 y1 x2 y2 x3 y3 x4 y4 class difficult``; ``imagesource:``/``gsd:`` header
    lines are skipped. The box is the polygon's min/max, clipped to the image (polygons may reach past
    the border); a polygon entirely outside is an error, one that only touches the border is dropped.
    The test annotations are withheld by the authors, so the ``test`` split reads the official ``val``
    folder. Images are 800-4000 px: use ``crop`` (e.g. 1024 with ``overlap=200``) for fixed-size tiles.
    """

    name = "dota"
    splits = ("train", "val", "test")
    classes = DOTA_CLASSES
    _index = {c: i for i, c in enumerate(DOTA_CLASSES)}

    def _find_items(self) -> list[tuple[Path, Path]]:
        hint = "extract the DOTA v1.0 images and labelTxt-v1.0 annotations under ROOT (docs/datasets_more.md)"
        folder = self.root / ("val" if self.split == "test" else self.split)
        if not (folder / "images").is_dir():
            raise DatasetNotFoundError(self.name, self.root, f"folder {folder.name}/images/", hint)
        names = sorted(p.stem for p in (folder / "images").glob("*.png"))
        if not names:
            raise DatasetNotFoundError(self.name, self.root, f"{folder.name}/images/*.png", hint)
        labels = _first_dir(folder / "labelTxt", folder / "labelTxt-v1.0" / "labelTxt")
        images = _match(self.name, self.root, names, folder / "images", ".png", hint)
        return list(zip(images, _match(self.name, self.root, names, labels, ".txt", hint)))

    def _parse(self, path: Path, width: int | None, height: int | None) -> Annotation:
        boxes, labels, difficult = [], [], []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            parts = line.split()
            if not parts or line.startswith(("imagesource:", "gsd:")):
                continue
            where = f"{self.name}: line {number}"
            if len(parts) < 9:
                raise DatasetFileError(path, f"{where}: not 'x1 y1 ... x4 y4 class difficult'; re-extract it")
            try:
                xs, ys = np.array(parts[0:8:2], float), np.array(parts[1:8:2], float)
            except ValueError as err:
                raise DatasetFileError(path, f"{where}: non-numeric coordinates ({err}); re-extract labelTxt") from err
            if parts[8] not in self._index:
                raise DatasetFileError(path, f"{where}: unknown class {parts[8]!r}, not a DOTA v1.0 class")
            box = [xs.min(), ys.min(), xs.max(), ys.max()]
            if width is not None and height is not None:
                if box[0] > width or box[1] > height or box[2] < 0 or box[3] < 0:
                    raise DatasetFileError(path, f"{where}: polygon outside the {width}x{height} image")
                box = [min(max(v, 0.0), float(lim)) for v, lim in zip(box, (width, height, width, height))]
            if box[2] > box[0] and box[3] > box[1]:
                boxes.append(box)
                labels.append(self._index[parts[8]])
                difficult.append(len(parts) > 9 and parts[9] == "1")
        return _pack(boxes, labels, difficult)
