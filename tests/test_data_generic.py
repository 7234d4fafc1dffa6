"""The generic readers (image_folder, mmseg_segmentation, change_pairs, voc_detection) on tiny trees made here,
and `rsbench data check` on them: clean copies pass with counts per split and class; each bad input is one
clear line naming the file and a non-zero exit."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from benchmark.cli import main
from rsdatasets import build_dataset
from rsdatasets.check import check_dataset
from rsdatasets.errors import DatasetFileError, DatasetNotFoundError
from rsdatasets.generic import seeded_split

CLASSES = ("forest", "river", "urban")


@pytest.fixture(autouse=True)
def _scan_cache(tmp_path, monkeypatch):
    """The readers cache their scans under $RSBENCH_DATA/index: keep that inside the test's folder."""
    monkeypatch.setenv("RSBENCH_DATA", str(tmp_path / "cache"))


def _rgb(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def _geotiff(path: Path, array: np.ndarray, nodata: float | None = None) -> Path:
    """A (bands, H, W) array as a GeoTIFF without georeferencing."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=array.shape[2], height=array.shape[1],
                           count=array.shape[0], dtype=str(array.dtype), nodata=nodata) as dst:  # fmt: skip
            dst.write(array)
    return path


# ---- makers: one tiny tree per layout ------------------------------------------------------------------------
def make_image_folder(root: Path, per_class: int = 6, px: int = 32) -> Path:
    """``ROOT/<class>/<image>``: PNG, JPEG and TIFF mixed, as real copies are."""
    suffixes = (".png", ".jpg", ".tif")
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            _save(root / name / f"{name}_{i:02d}{suffixes[(c + i) % 3]}", _rgb(10 * c + i, px, px))
    return root


def make_mmseg(root: Path, px: int = 32, n: dict | None = None, dsm: bool = True) -> Path:
    """``img_dir``/``ann_dir``/``dsm_dir`` per split, index PNG masks (255 = unlabelled), ``classes.json``."""
    for s, (split, count) in enumerate((n or {"train": 6, "val": 3}).items()):
        for i in range(count):
            rng = np.random.default_rng(100 * s + i)
            _save(root / "img_dir" / split / f"tile_{i}.png", _rgb(100 * s + i, px, px))
            mask = np.full((px, px), i % 3, np.uint8)  # dominant class i % 3
            mask[: px // 4] = rng.integers(0, 3, (px // 4, px), dtype=np.uint8)
            mask[0, :4] = 255
            _save(root / "ann_dir" / split / f"tile_{i}.png", mask)
            if dsm:
                heights = rng.normal(20, 5, (1, px, px)).astype(np.float32)
                heights[0, -1, -1] = -9999.0
                _geotiff(root / "dsm_dir" / split / f"tile_{i}.tif", heights, nodata=-9999.0)
    (root / "classes.json").write_text(json.dumps({"classes": ["road", "roof", "tree"], "ignore_index": 255}))
    return root


def _change_mask(i: int, px: int, high: int = 255) -> np.ndarray:
    mask = np.zeros((px, px), np.uint8)
    if i % 2:
        mask[2 : 6 + i, 3:9] = high
    return mask


def make_change_pairs(root: Path, n: int = 10, px: int = 32) -> Path:
    """``A/``, ``B/``, ``label/`` with 0/255 masks; every second pair changed."""
    for i in range(n):
        _save(root / "A" / f"pair_{i}.png", _rgb(i, px, px))
        _save(root / "B" / f"pair_{i}.png", _rgb(i + 50, px, px))
        _save(root / "label" / f"pair_{i}.png", _change_mask(i, px))
    return root


def voc_xml(objects: list, width: int = 64, height: int = 64, filename: str | None = None) -> str:
    """A VOC annotation; an object is (name, (x0, y0, x1, y1)) or (name, box, difficult) or a ready XML string."""
    body = ""
    for obj in objects:
        if isinstance(obj, str):
            body += obj
            continue
        name, (x0, y0, x1, y1), *rest = obj
        body += (f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                 f"<difficult>{int(bool(rest and rest[0]))}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                 f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")  # fmt: skip
    name = f"<filename>{filename}</filename>" if filename else ""
    size = f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
    return f"<annotation>{name}{size}{body}</annotation>"


def make_voc(root: Path, n: int = 10, px: int = 64) -> Path:
    """``JPEGImages/``, ``Annotations/`` (ships everywhere, planes in odd images), no ImageSets."""
    for i in range(n):
        _save(root / "JPEGImages" / f"{i:05d}.jpg", _rgb(i, px, px))
        objects = [("ship", (2, 3, 20 + i, 30))] + ([("plane", (30, 30, 60, 50), True)] if i % 2 else [])
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{i:05d}.xml").write_text(voc_xml(objects, px, px))
    return root


def _check(root: Path, dataset: str, *options: str) -> int:
    args = ["data", "check", str(root), "--dataset", dataset]
    return main(args + (["--dataset-options", *options] if options else []))


def _bad_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("bad ")]


# ---- seeded split ----------------------------------------------------------------------------------------------
def test_seeded_split_is_stratified_deterministic_and_stable_when_a_class_is_added():
    strata = ["a"] * 10 + ["b"] * 20
    split = seeded_split(strata, 0.1, 0.2, seed=3)
    assert (split == seeded_split(strata, 0.1, 0.2, seed=3)).all()
    assert (split != seeded_split(strata, 0.1, 0.2, seed=4)).any()
    for name, n in (("a", 10), ("b", 20)):
        part = split[np.asarray(strata) == name]
        assert (part == "test").sum() == round(0.2 * n) and (part == "val").sum() == round(0.1 * n)
    grown = seeded_split(strata + ["c"] * 7, 0.1, 0.2, seed=3)
    assert (grown[:30] == split).all()  # the new class leaves the others' assignment alone
    assert (seeded_split(["x"], 0.1, 0.5, 0) == "train").all()  # a one-item class stays in train


# ---- image_folder -------------------------------------------------------------------------------------------
def test_image_folder_splits_samples_and_protocol(tmp_path):
    root = make_image_folder(tmp_path / "scenes")
    splits = {s: build_dataset("image_folder", s, root=root) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [12, 3, 3]  # per class: 4 / 1 / 1 of 6
    files = [set(ds.files) for ds in splits.values()]
    assert not (files[0] & files[1]) and not (files[0] & files[2]) and len(set.union(*files)) == 18
    ds = splits["train"]
    assert ds.metainfo["scene_classes"] == CLASSES
    assert "split_seed=0" in ds.metainfo["split_protocol"]
    assert np.bincount(ds.label_summary("scene_class")).tolist() == [4, 4, 4]
    sample = ds[5]
    assert sample["rgb"].shape == (3, 32, 32) and sample["rgb"].dtype == torch.float32
    assert 0.0 <= float(sample["rgb"].min()) and float(sample["rgb"].max()) <= 1.0
    assert CLASSES[int(sample["label"])] == ds.files[5].parent.name
    assert isinstance(ds.plot(sample), Figure)
    other_seed = build_dataset("image_folder", "train", root=root, split_seed=1)
    assert set(other_seed.files) != files[0]


def test_image_folder_split_lists_and_split_folders(tmp_path):
    root = make_image_folder(tmp_path / "lists")
    (root / "train.txt").write_text("forest/forest_00.png\nriver_01.tif\nurban_02\n")
    (root / "test.txt").write_text("forest_03.png\n")
    train = build_dataset("image_folder", "train", root=root)
    assert [p.name for p in train.files] == ["forest_00.png", "river_01.tif", "urban_02.jpg"]
    assert train.labels.tolist() == [0, 1, 2] and "split lists" in train.metainfo["split_protocol"]
    assert len(build_dataset("image_folder", "val", root=root)) == 0  # no val.txt: an empty val split
    (root / "test.txt").write_text("nowhere.png\n")
    with pytest.raises(DatasetFileError, match="line 1: 'nowhere.png' is no image"):
        build_dataset("image_folder", "test", root=root)

    folders = tmp_path / "folders"
    for split, n in (("train", 3), ("test", 2)):
        make_image_folder(folders / split, per_class=n)
    test = build_dataset("image_folder", "test", root=folders)
    assert len(test) == 6 and test.metainfo["layout"] == "folders"


def test_image_folder_reads_multiband_geotiffs_with_chosen_bands(tmp_path):
    root = tmp_path / "s2"
    for c, name in enumerate(CLASSES):
        for i in range(3):
            bands = np.stack([np.full((16, 16), 1000 * (b + 1) + c, np.uint16) for b in range(13)])
            _geotiff(root / name / f"{name}_{i}.tif", bands)
    ds = build_dataset("image_folder", "train", root=root, bands="4,3,2", ms_bands=list(range(1, 14)), scale=10000,
                       test_fraction=0.34)  # fmt: skip
    sample = ds[0]
    assert sample["rgb"][:, 0, 0].tolist() == pytest.approx([0.4, 0.3, 0.2], abs=1e-3)
    assert sample["ms"].shape == (13, 16, 16)
    with pytest.raises(DatasetFileError, match="bands=\\[14\\]"):
        build_dataset("image_folder", "train", root=root, bands=14, test_fraction=0.34)[0]


def test_image_folder_check_reports_counts_and_passes(tmp_path, capsys):
    root = make_image_folder(tmp_path / "scenes")
    assert _check(root, "image_folder") == 0
    out = capsys.readouterr().out
    assert "OK" in out and "images per class" in out and "seeded split stratified by class" in out
    report = check_dataset("image_folder", root)
    assert dict(report.class_counts["train"]) == {"forest": 4, "river": 4, "urban": 4}
    assert report.shapes[("train", "image", 3, "uint8", "32x32")] == 12


def test_image_folder_class_folder_without_images_is_one_line_and_exit_1(tmp_path, capsys):
    root = make_image_folder(tmp_path / "scenes")
    (root / "desert").mkdir()
    (root / "desert" / "notes.txt").write_text("no images here")
    assert _check(root, "image_folder") == 1
    out, err = capsys.readouterr()
    bad = _bad_lines(out)
    assert any("desert" in line and "holds no images" in line for line in bad), out
    assert "problem(s)" in err
    with pytest.raises(DatasetFileError, match="class folder 'desert/' holds no images"):
        build_dataset("image_folder", "train", root=root)


def test_image_folder_mixed_sizes_and_unreadable_files(tmp_path, capsys):
    root = make_image_folder(tmp_path / "scenes")
    _save(root / "river" / "river_99.png", _rgb(0, 30, 32))
    with pytest.raises(DatasetFileError, match="2 sizes .*pass size="):
        build_dataset("image_folder", "train", root=root)
    assert len(build_dataset("image_folder", "train", root=root, size=32)) >= 12
    (root / "urban" / "urban_00.png").write_bytes(b"not a png")
    assert _check(root, "image_folder", "size=32") == 1
    assert any("urban_00.png" in line and "unreadable" in line for line in _bad_lines(capsys.readouterr().out))


# ---- mmseg_segmentation ----------------------------------------------------------------------------------------
def test_mmseg_samples_with_dsm_and_metainfo(tmp_path):
    root = make_mmseg(tmp_path / "seg")
    train = build_dataset("mmseg_segmentation", "train", root=root)
    test = build_dataset("mmseg_segmentation", "test", root=root)
    assert len(train) == 6 and len(test) == 3 and "test reads val/" in test.metainfo["split_protocol"]
    sample = train[1]
    assert sample["rgb"].shape == (3, 32, 32) and sample["mask"].dtype == torch.int64
    assert set(sample["mask"].unique().tolist()) <= {0, 1, 2, 255} and int(sample["mask"][0, 0]) == 255
    assert sample["dsm"].shape == (1, 32, 32) and sample["dsm_valid"].dtype == torch.bool
    assert not bool(sample["dsm_valid"][0, -1, -1]) and float(sample["dsm"][0, -1, -1]) == 0.0  # nodata
    assert int(sample["dsm_valid"].sum()) == 32 * 32 - 1
    assert train.metainfo["classes"] == ("road", "roof", "tree") and train.metainfo["modalities"] == ["rgb", "dsm"]
    assert train.label_summary("dominant_class").tolist() == [0, 1, 2, 0, 1, 2]
    assert isinstance(train.plot(sample), Figure)
    no_dsm = build_dataset("mmseg_segmentation", "train", root=root, extra_dirs={})
    assert "dsm" not in no_dsm[0]


def test_mmseg_reduce_zero_label_palette_masks_and_presets(tmp_path):
    """Potsdam as mmsegmentation's converter writes it: 0 = boundary (ignored), 1..6 the classes, palette PNG."""
    root = tmp_path / "potsdam_mmseg"
    for split in ("train", "val"):
        for i in range(2):
            _save(root / "img_dir" / split / f"2_10_{i}_0_32_32.png", _rgb(i, 32, 32))
            mask = Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32).__mod__(7).astype(np.uint8), "P")
            mask.putpalette([v for c in range(256) for v in (c, 255 - c, 0)])
            mask.save((root / "ann_dir" / split).mkdir(parents=True, exist_ok=True) or
                      root / "ann_dir" / split / f"2_10_{i}_0_32_32.png")  # fmt: skip
    ds = build_dataset("mmseg_segmentation", "train", root=root, preset="potsdam")
    raw = np.asarray(Image.open(root / "ann_dir" / "train" / "2_10_0_0_32_32.png"))
    mask = ds[0]["mask"].numpy()
    assert (mask[raw == 0] == 255).all() and (mask[raw == 3] == 2).all() and set(np.unique(mask)) == {*range(6), 255}
    assert ds.metainfo["classes"][0] == "impervious_surface" and ds.metainfo["reduce_zero_label"]
    with pytest.raises(DatasetFileError, match="mask value\\(s\\) 6"):  # without the reduction, 6 is no class
        build_dataset("mmseg_segmentation", "train", root=root, classes="a,b,c,d,e,f")


def test_mmseg_check_passes_and_counts_pixels(tmp_path, capsys):
    root = make_mmseg(tmp_path / "seg")
    assert _check(root, "mmseg_segmentation") == 0
    out = capsys.readouterr().out
    assert "pixels per class" in out and "dsm" in out
    report = check_dataset("mmseg_segmentation", root)
    counts = report.class_counts["train"]
    assert sum(counts.values()) == 6 * 32 * 32 and counts["(ignored)"] == 6 * 4
    assert report.legend[255] == "ignore" and report.legend[1] == "roof"
    assert report.label_colours[255] == (6 + 3) * 4  # val and test read the same folder: counted once


def test_mmseg_undeclared_mask_value_is_one_line_and_exit_1(tmp_path, capsys):
    root = make_mmseg(tmp_path / "seg")
    mask = np.zeros((32, 32), np.uint8)
    mask[5, 5] = 7
    _save(root / "ann_dir" / "train" / "tile_2.png", mask)
    assert _check(root, "mmseg_segmentation") == 1
    bad = _bad_lines(capsys.readouterr().out)
    assert len(bad) == 1 and "tile_2.png" in bad[0] and "mask value(s) 7 (1 px)" in bad[0] and "declare" in bad[0]
    with pytest.raises(DatasetFileError, match="tile_2.png: .*mask value\\(s\\) 7"):
        build_dataset("mmseg_segmentation", "train", root=root)


def test_mmseg_missing_ann_dir_and_mask_size_mismatch(tmp_path, capsys):
    root = make_mmseg(tmp_path / "seg", dsm=False)
    _save(root / "ann_dir" / "val" / "tile_1.png", np.zeros((16, 32), np.uint8))
    assert _check(root, "mmseg_segmentation") == 1
    bad = _bad_lines(capsys.readouterr().out)
    assert any("tile_1.png" in line and "mask is 32x16 but its image" in line for line in bad), bad
    import shutil

    shutil.rmtree(root / "ann_dir")
    assert _check(root, "mmseg_segmentation") == 1
    out = capsys.readouterr().out
    assert any("expected folder ann_dir/" in line for line in _bad_lines(out)), out
    with pytest.raises(DatasetNotFoundError, match="ann_dir/"):
        build_dataset("mmseg_segmentation", "train", root=root)


def test_mmseg_needs_class_names(tmp_path):
    root = make_mmseg(tmp_path / "seg", dsm=False)
    (root / "classes.json").unlink()
    with pytest.raises(ValueError, match="no class names; pass classes="):
        build_dataset("mmseg_segmentation", "train", root=root)
    assert len(build_dataset("mmseg_segmentation", "train", root=root, classes="a,b,c")) == 6


# ---- change_pairs --------------------------------------------------------------------------------------------
def test_change_pairs_samples_seeded_split_and_crops(tmp_path):
    root = make_change_pairs(tmp_path / "cd")
    splits = {s: build_dataset("change_pairs", s, root=root) for s in ("train", "val", "test")}
    assert sum(len(ds) for ds in splits.values()) == 10 and len(splits["test"]) == 2
    assert splits["test"].label_summary("has_change").tolist() in ([0, 1], [1, 0])  # stratified: one of each
    assert "stratified by change" in splits["train"].metainfo["split_protocol"]
    sample = splits["train"][0]
    assert {"rgb", "rgb_t2", "change"} <= set(sample) and sample["change"].dtype == torch.int64
    assert set(sample["change"].unique().tolist()) <= {0, 1}
    assert isinstance(splits["train"].plot(sample), Figure)
    tiles = build_dataset("change_pairs", "train", root=root, crop=16)
    assert len(tiles) == 4 * len(splits["train"]) and tiles[0]["rgb"].shape == (3, 16, 16)
    assert tiles.label_summary("has_change").sum() >= 1


def test_change_pairs_list_files_zero_one_masks_and_folder_names(tmp_path):
    root = tmp_path / "s2looking"
    for i in range(4):
        _save(root / "Image1" / f"{i}.png", _rgb(i, 16, 16))
        _save(root / "Image2" / f"{i}.png", _rgb(i + 9, 16, 16))
        _save(root / "label" / f"{i}.png", _change_mask(i, 16, high=1))
    (root / "list").mkdir()
    (root / "list" / "train.txt").write_text("0.png\n1.png\n2\n")
    (root / "list" / "test.txt").write_text("3.png\n")
    kw = dict(root=root, t1_dir="Image1", t2_dir="Image2")
    train = build_dataset("change_pairs", "train", **kw)
    assert [p[0].name for p in train.pairs] == ["0.png", "1.png", "2.png"]
    assert int(train[1]["change"].max()) == 1 and train.label_summary("has_change").tolist() == [0, 1, 0]
    assert len(build_dataset("change_pairs", "test", **kw)) == 1


def test_change_pairs_size_mismatch_and_bad_mask_values(tmp_path, capsys):
    root = make_change_pairs(tmp_path / "cd")
    _save(root / "B" / "pair_3.png", _rgb(3, 32, 24))
    grey = _change_mask(5, 32)
    grey[0, 0] = 128
    _save(root / "label" / "pair_5.png", grey)
    assert _check(root, "change_pairs") == 1
    bad = _bad_lines(capsys.readouterr().out)
    assert any("pair_3.png" in b and "B is 24x32 but its A pair_3.png is 32x32" in b for b in bad), bad
    assert any("pair_5.png" in b and "label values [128]" in b for b in bad), bad
    with pytest.raises(DatasetFileError, match="re-export the pair at one size|label values"):
        build_dataset("change_pairs", "train", root=root)
    # JPEG-compressed masks: a threshold reads them
    ok = build_dataset("change_pairs", "train", root=make_change_pairs(tmp_path / "cd2"), threshold=128)
    assert len(ok) == 8


# ---- voc_detection -------------------------------------------------------------------------------------------
def test_voc_samples_classes_and_seeded_split(tmp_path):
    root = make_voc(tmp_path / "voc")
    splits = {s: build_dataset("voc_detection", s, root=root) for s in ("train", "val", "test")}
    assert [len(ds) for ds in splits.values()] == [7, 1, 2]
    train = splits["train"]
    assert train.metainfo["det_classes"] == ("plane", "ship")  # sorted names from every XML
    sample = train[0]
    k = train.items[0][1].stem
    assert sample["boxes"][0].tolist() == [2.0, 3.0, 20.0 + int(k), 30.0]
    assert sample["box_labels"][0] == 1 and sample["box_difficult"].tolist() == [False] + [True] * (int(k) % 2)
    assert [a.tolist() for a in train.label_summary("box_classes")] == [
        [1] + [0] * (int(x.stem) % 2) for _, x in train.items]  # fmt: skip
    assert isinstance(train.plot(sample), Figure)


def test_voc_dior_r_oriented_boxes_rolabelimg_and_robndbox_with_sides(tmp_path):
    """DIOR-R's corner format (mmrotate's DIORDataset reads the same tags), roLabelImg's cx/cy/w/h/angle, and
    DIOR's horizontal files that put xmin..ymax inside <robndbox>."""
    root = tmp_path / "DIOR"
    obb = "Annotations/Oriented Bounding Boxes"
    corners = ("<object><type>robndbox</type><name>Expressway-Service-area</name><pose>Unspecified</pose>"
               "<truncated>0</truncated><difficult>0</difficult><robndbox><x_left_top>10</x_left_top>"
               "<y_left_top>5</y_left_top><x_right_top>40</x_right_top><y_right_top>12</y_right_top>"
               "<x_right_bottom>35</x_right_bottom><y_right_bottom>30</y_right_bottom>"
               "<x_left_bottom>6</x_left_bottom><y_left_bottom>22</y_left_bottom></robndbox><angle>15</angle></object>")
    border = corners.replace("<x_left_bottom>6<", "<x_left_bottom>-4<")  # pokes out of the image: clipped
    rolabel = (f"<object><name>ship</name><robndbox><cx>32</cx><cy>32</cy><w>20</w><h>10</h>"
               f"<angle>{math.pi / 2}</angle></robndbox></object>")
    sides = ("<object><name>ship</name><robndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax>"
             "</robndbox></object>")
    for i, objects in enumerate(([corners], [border, rolabel], [sides])):
        folder = "JPEGImages-test" if i == 2 else "JPEGImages-trainval"
        _save(root / folder / f"{i + 1:05d}.jpg", _rgb(i, 64, 64))
        (root / obb).mkdir(parents=True, exist_ok=True)
        (root / obb / f"{i + 1:05d}.xml").write_text(voc_xml(objects, filename=f"{i + 1:05d}.jpg"))
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("00001\n00002\n")
    (root / "ImageSets" / "Main" / "test.txt").write_text("00003\n")
    classes = "expresswayservicearea,ship"
    train = build_dataset("voc_detection", "train", root=root, classes=classes)
    assert train[0]["boxes"].tolist() == [[6.0, 5.0, 40.0, 30.0]]  # min/max of the four corners
    second = train[1]
    assert second["boxes"][0].tolist() == [0.0, 5.0, 40.0, 30.0]
    assert second["boxes"][1].tolist() == pytest.approx([27.0, 22.0, 37.0, 42.0], abs=1e-4)  # rotated 90 degrees
    assert second["box_labels"].tolist() == [0, 1]
    test = build_dataset("voc_detection", "test", root=root, classes=classes)
    assert test[0]["boxes"].tolist() == [[1.0, 2.0, 3.0, 4.0]] and "ImageSets/Main" in test.metainfo["split_protocol"]


def test_voc_box_outside_its_image_is_one_line_and_exit_1(tmp_path, capsys):
    root = make_voc(tmp_path / "voc")
    (root / "Annotations" / "00004.xml").write_text(voc_xml([("ship", (10, 10, 70, 20))]))
    assert _check(root, "voc_detection") == 1
    bad = _bad_lines(capsys.readouterr().out)
    assert len(bad) == 1 and "00004.xml" in bad[0] and "outside the 64x64 image" in bad[0] and "clip_boxes" in bad[0]
    with pytest.raises(DatasetFileError, match="00004.xml: .*outside the 64x64 image"):
        for split in ("train", "val", "test"):
            build_dataset("voc_detection", split, root=root)
    clipped = [build_dataset("voc_detection", s, root=root, clip_boxes=True) for s in ("train", "val", "test")]
    boxes = [ds[i]["boxes"] for ds in clipped for i in range(len(ds)) if ds.items[i][1].stem == "00004"]
    assert boxes[0].tolist() == [[10.0, 10.0, 64.0, 20.0]]


def test_voc_unknown_class_malformed_xml_and_missing_image(tmp_path, capsys):
    root = make_voc(tmp_path / "voc")
    (root / "Annotations" / "00001.xml").write_text("<annotation><object>")
    (root / "Annotations" / "00002.xml").write_text(voc_xml([("tank", (1, 1, 5, 5))]))
    (root / "JPEGImages" / "00003.jpg").unlink()
    assert _check(root, "voc_detection", "classes=plane,ship") == 1
    bad = " ".join(_bad_lines(capsys.readouterr().out))
    assert "00001.xml" in bad and "malformed XML" in bad
    assert "00002.xml" in bad and "class 'tank' is not among the declared classes" in bad
    assert "00003.xml" in bad and "no image 00003" in bad
