"""UC Merced / AID / RESISC45 readers on tiny fakes in the official class-folder layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from rsdatasets import build_dataset
from rsdatasets.errors import DatasetFileError, DatasetNotFoundError
from rsdatasets.scene_classification import AID, RESISC45, UCMerced, stratified_split

PX = 24


def _write(path: Path, colour: int, size: tuple[int, int] = (PX, PX)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(colour)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def make_ucmerced(root: Path, per_class: int = 5) -> Path:
    """``UCMerced_LandUse/Images/<class>/<class>NN.tif``; one tile is 24 x 22 like the odd real ones."""
    for c, name in enumerate(UCMerced.classes):
        for i in range(per_class):
            size = (PX, PX - 2) if (c, i) == (0, 0) else (PX, PX)
            _write(root / "UCMerced_LandUse" / "Images" / name / f"{name}{i:02d}.tif", c * 100 + i, size)
    return root


def make_aid(root: Path, per_class: int = 10) -> Path:
    """``AID/<Class>/<class>_<n>.jpg`` (folder CamelCase, file names lower case, numbered from 1)."""
    for c, name in enumerate(AID.classes):
        for i in range(1, per_class + 1):
            _write(root / "AID" / name / f"{name.lower()}_{i}.jpg", c * 100 + i)
    return root


def make_resisc45(root: Path, per_class: int = 5) -> Path:
    """``NWPU-RESISC45/<class>/<class>_NNN.jpg``."""
    for c, name in enumerate(RESISC45.classes):
        for i in range(1, per_class + 1):
            _write(root / "NWPU-RESISC45" / name / f"{name}_{i:03d}.jpg", c * 100 + i)
    return root


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("scene")
    return {
        "ucmerced": make_ucmerced(base / "ucm"),
        "aid": make_aid(base / "aid"),
        "resisc45": make_resisc45(base / "resisc"),
    }


@pytest.mark.parametrize(("name", "px"), [("ucmerced", 256), ("aid", PX), ("resisc45", PX)])
def test_sample_keys_shapes_dtypes(roots, name, px):
    ds = build_dataset(name, "train", root=roots[name])
    sample = ds[0]
    assert set(sample) == {"rgb", "label", "index"}
    assert sample["rgb"].shape == (3, px, px) and sample["rgb"].dtype == torch.float32
    assert 0.0 <= float(sample["rgb"].min()) and float(sample["rgb"].max()) <= 1.0
    assert sample["label"].dtype == torch.int64 and sample["label"].shape == ()
    assert ds.metainfo["classes"] == ds.metainfo["scene_classes"] == type(ds).classes
    assert len(type(ds).classes) == {"ucmerced": 21, "aid": 30, "resisc45": 45}[name]
    assert isinstance(ds.plot(sample), Figure)


def test_ucmerced_resizes_odd_tiles(roots):
    ds = UCMerced(roots["ucmerced"], split="train", size=PX)
    shapes = {tuple(ds[i]["rgb"].shape) for i in range(len(ds))}
    assert shapes == {(3, PX, PX)}  # the 24 x 22 tile is resized too, so batches stack


@pytest.mark.parametrize(
    ("cls", "key", "per_class", "ratio", "n_train"),
    [
        (UCMerced, "ucmerced", 5, 0.8, 4),
        (AID, "aid", 10, 0.2, 2),
        (AID, "aid", 10, 0.5, 5),
        (RESISC45, "resisc45", 5, 0.2, 1),
    ],
)
def test_split_is_stratified_disjoint_and_deterministic(roots, cls, key, per_class, ratio, n_train):
    train, test = (cls(roots[key], split=s, train_ratio=ratio) for s in ("train", "test"))
    assert not set(train.files) & set(test.files)
    assert len(train) + len(test) == per_class * len(cls.classes)
    assert np.bincount(train.scene_labels(), minlength=len(cls.classes)).tolist() == [n_train] * len(cls.classes)
    assert train.files == cls(roots[key], split="train", train_ratio=ratio).files  # same seed, same split
    assert train.files != cls(roots[key], split="train", train_ratio=ratio, seed=1).files
    # scene_labels (no decoding) agrees with the samples and with the class folder of each file
    assert [int(train[i]["label"]) for i in range(len(train))] == train.scene_labels().tolist()
    assert all(f.parent.name == cls.classes[c] for f, c in zip(train.files, train.scene_labels()))


def test_stratified_split_counts():
    labels = np.repeat([0, 1, 2], [10, 20, 5])
    split = stratified_split(labels, 0.2, seed=3)
    assert np.bincount(labels[split["train"]]).tolist() == [2, 4, 1]
    assert sorted(np.concatenate(list(split.values()))) == list(range(len(labels)))


def test_invalid_split_and_ratio(roots):
    with pytest.raises(ValueError, match="train_ratio"):
        AID(roots["aid"], train_ratio=0.3)
    with pytest.raises(ValueError, match="unknown split"):
        RESISC45(roots["resisc45"], split="val")


def test_missing_root_and_class_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="UCMerced_LandUse/Images"):
        UCMerced(tmp_path)
    root = make_resisc45(tmp_path / "r", per_class=1)
    (root / "NWPU-RESISC45" / "wetland" / "wetland_001.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="wetland"):
        RESISC45(root)
    (root / "NWPU-RESISC45" / "wetland").rmdir()
    with pytest.raises(DatasetNotFoundError, match="NWPU-RESISC45/wetland/"):
        RESISC45(root)


def test_unknown_class_folder_is_an_error(tmp_path):
    root = make_resisc45(tmp_path, per_class=1)
    _write(root / "NWPU-RESISC45" / "volcano" / "volcano_001.jpg", 1)
    with pytest.raises(DatasetFileError, match="volcano"):
        RESISC45(root)


def test_corrupt_image_names_the_file(tmp_path):
    root = make_aid(tmp_path, per_class=1)
    bad = root / "AID" / "Airport" / "airport_1.jpg"
    bad.write_bytes(b"not a jpeg")
    ds = AID(root, split="test", train_ratio=0.5)  # 1 image per class: round(0.5) = 0 to train, all to test
    with pytest.raises(DatasetFileError, match="airport_1.jpg"):
        ds[ds.files.index(bad)]
