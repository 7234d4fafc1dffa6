"""DIOR (VOC XML) and DOTA v1.0 (polygon TXT) readers on tiny fakes in the official layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from rsdatasets import build_dataset
from rsdatasets.detection import DIOR, DIOR_CLASSES, DOTA, DOTA_CLASSES
from rsdatasets.errors import DatasetFileError, DatasetNotFoundError

HBB = "Annotations/Horizontal Bounding Boxes"


def _image(path: Path, width: int, height: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)


def _voc(path: Path, name: str, objects: list[tuple[str, tuple[int, int, int, int]]], px: int = 64) -> None:
    """A DIOR horizontal-box annotation (tab-indented VOC XML, integer pixel coordinates, no <difficult>)."""
    body = "".join(
        f"\t<object>\n\t\t<name>{cls}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<bndbox>\n"
        f"\t\t\t<xmin>{x0}</xmin>\n\t\t\t<ymin>{y0}</ymin>\n\t\t\t<xmax>{x1}</xmax>\n\t\t\t<ymax>{y1}</ymax>\n"
        "\t\t</bndbox>\n\t</object>\n"
        for cls, (x0, y0, x1, y1) in objects
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<annotation>\n\t<filename>{name}.jpg</filename>\n\t<source>\n\t\t<database>DIOR</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{px}</width>\n\t\t<height>{px}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        f"\t<segmented>0</segmented>\n{body}</annotation>\n"
    )


DIOR_OBJECTS = {  # ids as in the release: five digits, trainval first, test after
    "00001": [("airplane", (2, 3, 20, 30)), ("Expressway-Service-area", (10, 10, 64, 50))],
    "00002": [("vehicle", (0, 0, 5, 5))],
    "00003": [],
    "00004": [("Expressway-toll-station", (30, 30, 40, 40)), ("windmill", (1, 1, 2, 9))],
}


def make_dior(root: Path) -> Path:
    """``JPEGImages-{trainval,test}/``, ``Annotations/Horizontal Bounding Boxes/``, ``ImageSets/Main/*.txt``."""
    splits = {"train": ["00001", "00003"], "val": ["00002"], "test": ["00004"]}
    for split, ids in splits.items():
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for i in ids:
            folder = "JPEGImages-test" if split == "test" else "JPEGImages-trainval"
            _image(root / folder / f"{i}.jpg", 64, 64, int(i))
            _voc(root / HBB / f"{i}.xml", i, DIOR_OBJECTS[i])
    return root


def make_dota(root: Path) -> Path:
    """``{train,val}/images/P<nnnn>.png`` + ``labelTxt/P<nnnn>.txt`` with the v1.0 header lines."""
    _image(root / "train" / "images" / "P0000.png", 64, 48)
    (root / "train" / "labelTxt").mkdir(parents=True)
    (root / "train" / "labelTxt" / "P0000.txt").write_text(
        "imagesource:GoogleEarth\ngsd:0.146343590398\n"
        "10 5 30 5 30 20 10 20 plane 0\n"  # axis-aligned
        "40.5 10 50 20 40.5 30 31 20 small-vehicle 1\n"  # rotated (a diamond): min/max of the corners
        "-6 40 20 40 20 60 -6 60 harbor 0\n"  # reaches past the left and bottom borders: clipped
    )
    _image(root / "train" / "images" / "P0001.png", 40, 40, 1)
    (root / "train" / "labelTxt" / "P0001.txt").write_text("imagesource:GoogleEarth\ngsd:null\n")  # no objects
    _image(root / "val" / "images" / "P0002.png", 32, 32, 2)
    (root / "val" / "labelTxt").mkdir(parents=True)
    (root / "val" / "labelTxt" / "P0002.txt").write_text("1 1 9 1 9 9 1 9 ship 0\n")  # no header: also valid
    return root


def check_sample(sample: dict, shape: tuple[int, int]) -> None:
    assert {"rgb", "boxes", "box_labels", "box_difficult", "index"} <= set(sample)
    assert sample["rgb"].shape == (3, *shape) and sample["rgb"].dtype == torch.float32
    n = len(sample["box_labels"])
    assert sample["boxes"].shape == (n, 4) and sample["boxes"].dtype == torch.float32
    assert sample["box_labels"].dtype == torch.int64 and sample["box_difficult"].dtype == torch.bool


def test_dior_samples_splits_and_class_names(tmp_path):
    root = make_dior(tmp_path)
    ds = {s: build_dataset("dior", s, root=root) for s in ("train", "val", "test")}
    assert [len(d) for d in ds.values()] == [2, 1, 1]
    assert [p.name for p, _ in ds["test"].items] == ["00004.jpg"]
    assert ds["test"].items[0][0].parent.name == "JPEGImages-test"
    first = ds["train"][0]
    check_sample(first, (64, 64))
    assert first["boxes"].tolist() == [[2, 3, 20, 30], [10, 10, 64, 50]]
    assert [DIOR_CLASSES[i] for i in first["box_labels"]] == ["airplane", "expresswayservicearea"]
    empty = ds["train"][1]
    check_sample(empty, (64, 64))
    assert empty["boxes"].shape == (0, 4)
    assert [DIOR_CLASSES[i] for i in ds["test"][0]["box_labels"]] == ["expresswaytollstation", "windmill"]
    assert [x.tolist() for x in ds["train"].box_labels_per_sample()] == [[0, 7], []]
    assert len(DIOR_CLASSES) == 20 and ds["val"].metainfo["classes"] == DIOR_CLASSES
    assert isinstance(ds["train"].plot(first), Figure)


@pytest.mark.parametrize(
    ("objects", "match"),
    [
        ([("helipad", (1, 1, 5, 5))], "unknown class 'helipad'"),
        ([("ship", (50, 50, 70, 60))], "outside the 64x64 image"),
        ([("ship", (9, 9, 5, 5))], "inverted"),
    ],
)
def test_dior_bad_annotations_name_the_file(tmp_path, objects, match):
    root = make_dior(tmp_path)
    _voc(root / HBB / "00002.xml", "00002", objects)
    with pytest.raises(DatasetFileError, match=rf"00002\.xml.*{match}"):
        DIOR(root, "val")[0]


def test_dior_malformed_and_missing_files(tmp_path):
    root = make_dior(tmp_path)
    (root / HBB / "00002.xml").write_text("<annotation><object>")
    with pytest.raises(DatasetFileError, match=r"00002\.xml.*malformed XML"):
        DIOR(root, "val")[0]
    (root / HBB / "00004.xml").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"Horizontal Bounding Boxes/00004\.xml"):
        DIOR(root, "test")
    (root / "JPEGImages-trainval" / "00003.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"JPEGImages-trainval/00003\.jpg"):
        DIOR(root, "train")
    with pytest.raises(DatasetNotFoundError, match=r"ImageSets/Main/train\.txt"):
        DIOR(tmp_path / "nowhere")


def test_dota_polygons_to_clipped_boxes(tmp_path):
    root = make_dota(tmp_path)
    ds = build_dataset("dota", "train", root=root)
    assert len(ds) == 2
    sample = ds[0]
    check_sample(sample, (48, 64))
    assert sample["boxes"].tolist() == [[10, 5, 30, 20], [31, 10, 50, 30], [0, 40, 20, 48]]
    assert [DOTA_CLASSES[i] for i in sample["box_labels"]] == ["plane", "small-vehicle", "harbor"]
    assert sample["box_difficult"].tolist() == [False, True, False]
    check_sample(ds[1], (40, 40))
    assert ds[1]["boxes"].shape == (0, 4) and ds[1]["box_labels"].shape == (0,)
    test = DOTA(root, "test")  # test labels are withheld: the test split reads the official val folder
    assert [p.parent.parent.name for p, _ in test.items] == ["val"] and test[0]["boxes"].tolist() == [[1, 1, 9, 9]]
    assert len(DOTA_CLASSES) == 15
    assert isinstance(ds.plot(sample), Figure)


def test_dota_crop_tiles(tmp_path):
    ds = DOTA(make_dota(tmp_path), "train", crop=32)
    # 64 x 48 image: columns at 0, 32; rows at 0 and 16 (last tile aligned to the edge); 40 x 40: 0, 8 both ways
    assert ds.tiles[:4] == [(0, 0, 0), (0, 0, 32), (0, 16, 0), (0, 16, 32)] and len(ds) == 8
    for i in range(len(ds)):
        check_sample(ds[i], (32, 32))
    top_left = ds[0]  # plane whole; the diamond (31..50) keeps 1/19 of its area < min_visible: dropped
    assert top_left["boxes"].tolist() == [[10, 5, 30, 20]]
    bottom_right = ds[3]  # origin (32, 16): the diamond is inside (-1 clipped), the harbor is not
    assert bottom_right["boxes"].tolist() == [[0, 0, 18, 14]] and bottom_right["box_labels"].tolist() == [10]
    assert [x.tolist() for x in ds.box_labels_per_sample()] == [ds[i]["box_labels"].tolist() for i in range(8)]
    padded = DOTA(tmp_path, "val", crop=48)  # 32 px image in a 48 px tile: zero padding
    assert len(padded) == 1 and padded[0]["rgb"][:, 32:, :].abs().sum() == 0
    assert DOTA(tmp_path, "train", crop=32, overlap=16).tiles[:3] == [(0, 0, 0), (0, 0, 16), (0, 0, 32)]


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("1 1 9 1 9 9 1 9 container-crane 0", "line 3: unknown class 'container-crane'"),
        ("100 100 120 100 120 120 100 120 plane 0", "line 3: polygon outside the 64x48 image"),
        ("1 1 9 1 9 9 plane 0", "line 3: not 'x1 y1"),
        ("1 1 9 1 nine 9 1 9 plane 0", "line 3: non-numeric"),
    ],
)
def test_dota_bad_lines_name_file_and_line(tmp_path, line, match):
    root = make_dota(tmp_path)
    (root / "train" / "labelTxt" / "P0000.txt").write_text(f"imagesource:GoogleEarth\ngsd:0.1\n{line}\n")
    with pytest.raises(DatasetFileError, match=rf"P0000\.txt.*{match}"):
        DOTA(root, "train")[0]


def test_dota_missing_files(tmp_path):
    root = make_dota(tmp_path)
    (root / "train" / "labelTxt" / "P0001.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"labelTxt/P0001\.txt"):
        DOTA(root, "train")
    with pytest.raises(DatasetNotFoundError, match="train/images/"):
        DOTA(tmp_path / "nowhere")
    (root / "val" / "images" / "P0002.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetFileError, match=r"P0002\.png"):
        DOTA(root, "val")[0]
