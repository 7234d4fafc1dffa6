"""LEVIR-CD / SECOND / CDD readers on tiny fakes in the official layouts (PNG/JPG, 0/255 and colour labels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from rsdatasets import build_dataset
from rsdatasets.change_detection import CDD, LEVIRCD, SECOND, SECOND_COLOURS
from rsdatasets.errors import DatasetFileError, DatasetNotFoundError

WHITE = (255, 255, 255)
CLASS_COLOURS = [c for c in SECOND_COLOURS if c != WHITE]


def _rgb(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(seed: int, h: int, w: int) -> np.ndarray:
    """0/255 building-change mask: one rectangle per image, none for seed % 3 == 0."""
    m = np.zeros((h, w), np.uint8)
    if seed % 3:
        m[h // 8 : h // 4 + seed % 5, w // 2 : w // 2 + 5] = 255
    return m


def _save(path: Path, array: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def make_levircd(root: Path, px: int = 64, flat: bool = False) -> Path:
    """Official zips extracted: ``<split>/{A,B,label}/<split>_<n>.png`` (or TorchGeo's flat ``{A,B,label}/``)."""
    for s, split in enumerate(("train", "val", "test")):
        for n in range(1, 3):
            base = root if flat else root / split
            seed = 10 * s + n
            _save(base / "A" / f"{split}_{n}.png", _rgb(seed, px, px))
            _save(base / "B" / f"{split}_{n}.png", _rgb(seed + 100, px, px))
            _save(base / "label" / f"{split}_{n}.png", _mask(seed, px, px))
    return root


def make_second(root: Path, n: int = 10, px: int = 32) -> Path:
    """SECOND training set: ``{im1,im2,label1,label2}/<nnnnn>.png``, labels as RGB colour maps (white = no change)."""
    for i in range(n):
        name = f"{i + 1:05d}.png"
        label1 = np.full((px, px, 3), 255, np.uint8)
        label2 = label1.copy()
        label1[: 4 + i, :6] = CLASS_COLOURS[i % 6]  # changed: class at date 1 ...
        label2[: 4 + i, :6] = CLASS_COLOURS[(i + 1) % 6]  # ... and another at date 2, same pixels
        _save(root / "im1" / name, _rgb(i, px, px))
        _save(root / "im2" / name, _rgb(i + 50, px, px))
        _save(root / "label1" / name, label1)
        _save(root / "label2" / name, label2)
    return root


def make_cdd(root: Path, px: int = 32) -> Path:
    """CDD real subset: ``subset/{train,val,test}/{A,B,OUT}/<nnnnn>.jpg``, OUT a 0/255 mask saved as JPEG."""
    for s, split in enumerate(("train", "val", "test")):
        for i in range(2):
            base, name, seed = root / "subset" / split, f"{i:05d}.jpg", 10 * s + i + 1
            _save(base / "A" / name, _rgb(seed, px, px), quality=90)
            _save(base / "B" / name, _rgb(seed + 100, px, px), quality=90)
            _save(base / "OUT" / name, _mask(seed, px, px), quality=75)
    return root


def check_sample(sample: dict, px: int) -> None:
    assert {"rgb", "rgb_t2", "change", "index"} <= set(sample)
    for key in ("rgb", "rgb_t2"):
        assert sample[key].shape == (3, px, px) and sample[key].dtype == torch.float32
        assert 0.0 <= float(sample[key].min()) and float(sample[key].max()) <= 1.0
    assert sample["change"].shape == (px, px) and sample["change"].dtype == torch.int64
    assert set(sample["change"].unique().tolist()) <= {0, 1}


@pytest.mark.parametrize("flat", [False, True])
def test_levircd_tiles_and_label_mapping(tmp_path, flat):
    root = make_levircd(tmp_path, flat=flat)
    ds = build_dataset("levir_cd", "val", root=root, crop=32)
    assert len(ds) == 2 * 4  # two 64 px pairs, four 32 px tiles each, no overlap
    for i in range(len(ds)):
        check_sample(ds[i], 32)
    # tile 3 of pair 0 is the bottom-right quarter of val_1
    a = np.asarray(Image.open((root if flat else root / "val") / "A" / "val_1.png"))
    label = np.asarray(Image.open((root if flat else root / "val") / "label" / "val_1.png"))
    assert torch.equal(ds[3]["rgb"], torch.from_numpy(a[32:, 32:].transpose(2, 0, 1).copy()).float() / 255)
    assert torch.equal(ds[3]["change"], torch.from_numpy((label[32:, 32:] == 255).astype(np.int64)))
    full = LEVIRCD(root, "val", crop=None)
    assert len(full) == 2 and full[0]["change"].sum() == int((label == 255).sum())
    flags = ds.change_flags()
    assert flags.tolist() == [int(ds[i]["change"].any()) for i in range(len(ds))]
    assert isinstance(ds.plot({**ds[0], "prediction": torch.zeros(2, 32, 32)}), Figure)


def test_levircd_default_crop_is_256(tmp_path):
    ds = LEVIRCD(make_levircd(tmp_path, px=512), "test")
    assert ds.crop == 256 and len(ds) == 2 * 4
    check_sample(ds[-1], 256)


def test_levircd_official_splits_are_disjoint(tmp_path):
    root = make_levircd(tmp_path)
    files = {s: {p[0].name for p in LEVIRCD(root, s, crop=32).pairs} for s in ("train", "val", "test")}
    assert files == {s: {f"{s}_1.png", f"{s}_2.png"} for s in files}


def test_levircd_errors(tmp_path):
    root = make_levircd(tmp_path)
    _save(root / "train" / "label" / "train_1.png", np.full((64, 64), 128, np.uint8))
    with pytest.raises(DatasetFileError, match=r"train_1\.png.*128"):
        LEVIRCD(root, "train", crop=32)[0]
    _save(root / "train" / "B" / "train_2.png", _rgb(0, 48, 64))  # B smaller than A
    with pytest.raises(DatasetFileError, match=r"B/train_2\.png.*64x48"):
        LEVIRCD(root, "train", crop=None)[1]
    with pytest.raises(DatasetFileError, match="smaller than crop"):
        LEVIRCD(root, "train", crop=128)
    (root / "test" / "label" / "test_2.png").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"test/label/test_2\.png"):
        LEVIRCD(root, "test", crop=32)
    for f in (root / "val" / "B").iterdir():
        f.unlink()
    (root / "val" / "B").rmdir()
    with pytest.raises(DatasetNotFoundError, match="val/B/"):
        LEVIRCD(root, "val", crop=32)
    with pytest.raises(DatasetNotFoundError, match="levir_cd"):
        LEVIRCD(tmp_path / "nowhere")


def test_second_binary_change_and_seeded_split(tmp_path):
    root = make_second(tmp_path)
    train, test = (build_dataset("second", s, root=root) for s in ("train", "test"))
    assert (len(train), len(test)) == (8, 2)
    assert not {p[0] for p in train.pairs} & {p[0] for p in test.pairs}
    assert train.pairs == SECOND(root, "train").pairs and train.pairs != SECOND(root, "train", seed=1).pairs
    for ds in (train, test):
        for i in range(len(ds)):
            sample = ds[i]
            check_sample(sample, 32)
            n = int(ds.pairs[i][0].stem) - 1  # the fake paints a (4 + n) x 6 changed block
            expected = torch.zeros(32, 32, dtype=torch.int64)
            expected[: 4 + n, :6] = 1
            assert torch.equal(sample["change"], expected)
    assert train.change_flags().tolist() == [1] * 8
    assert isinstance(train.plot(train[0]), Figure)


def test_second_presplit_copy_and_bad_colour(tmp_path):
    make_second(tmp_path / "train", n=3)
    make_second(tmp_path / "test", n=2)
    assert (len(SECOND(tmp_path, "train")), len(SECOND(tmp_path, "test"))) == (3, 2)
    root = make_second(tmp_path / "flat", n=3)
    label = np.full((32, 32, 3), 255, np.uint8)
    label[5, 7] = (10, 20, 30)
    _save(root / "label1" / "00002.png", label)
    ds = SECOND(root, "train", train_ratio=0.99)
    with pytest.raises(DatasetFileError, match=r"label1/00002\.png.*\(10, 20, 30\).*row 5, col 7"):
        [ds[i] for i in range(len(ds))]
    with pytest.raises(DatasetNotFoundError, match="im1/"):
        SECOND(tmp_path / "nowhere")


def test_cdd_jpeg_masks_are_thresholded(tmp_path):
    root = make_cdd(tmp_path)
    for split in ("train", "val", "test"):
        ds = build_dataset("cdd", split, root=root)
        assert len(ds) == 2
        for i in range(2):
            check_sample(ds[i], 32)
            clean = _mask(10 * ("train", "val", "test").index(split) + i + 1, 32, 32) == 255
            assert (ds[i]["change"].numpy() == clean).mean() > 0.98  # JPEG ringing may flip an edge pixel at most
    # the folder above subset/ (the official archive's Real/) works as root too
    assert len(CDD(tmp_path.parent / tmp_path.name, "val")) == 2
    nested = make_cdd(tmp_path / "x" / "Real")
    assert len(CDD(nested.parent, "test")) == 2
    _save(root / "subset" / "train" / "OUT" / "00001.jpg", np.full((32, 32), 120, np.uint8))
    with pytest.raises(DatasetFileError, match=r"OUT/00001\.jpg.*mid-grey"):
        CDD(root, "train")[1]
    (root / "subset" / "train" / "B" / "00000.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"B/00000\.jpg"):
        CDD(root, "train")
