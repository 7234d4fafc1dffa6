"""US3D (DFC2019 track 1) reader on a tiny fake in the contest's layout: RGB, AGL (NaN nodata), CLS."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

rasterio = pytest.importorskip("rasterio")

from rsdatasets import build_dataset  # noqa: E402
from rsdatasets.check import check_dataset  # noqa: E402
from rsdatasets.errors import DatasetFileError, DatasetNotFoundError  # noqa: E402
from rsdatasets.us3d import US3D  # noqa: E402

# Three geographic tiles per city; JAX_001 seen in two satellite images.
STEMS = ("JAX_001_002", "JAX_001_007", "JAX_002_001", "JAX_003_004", "OMA_011_001", "OMA_012_003", "OMA_013_002")
SIZE = 64


def write(path: Path, array: np.ndarray, nodata: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver="GTiff", width=array.shape[2], height=array.shape[1],
                           count=array.shape[0], dtype=str(array.dtype), nodata=nodata) as dst:  # fmt: skip
            dst.write(array)
    return path


def cls_map() -> np.ndarray:
    """LAS codes: ground left half, building right half, trees/water/bridge strips, unlabelled and one odd code."""
    cls = np.full((1, SIZE, SIZE), 2, dtype=np.uint8)
    cls[0, :, SIZE // 2 :] = 6
    cls[0, 40:44] = 5
    cls[0, 44:46] = 9
    cls[0, 46:48] = 17
    cls[0, 0, :3] = 65  # unlabelled: ignored on purpose
    cls[0, 1, :2] = 3  # not a DFC2019 class: ignored and reported
    return cls


def make_us3d(root: Path, nested: bool = False) -> Path:
    rng = np.random.default_rng(0)
    rgb_dir = root / "Train-Track1-RGB" / ("Track1-RGB" if nested else "")
    truth_dir = root / "Train-Track1-Truth" / ("Track1-Truth" if nested else "")
    for stem in STEMS:
        write(rgb_dir / f"{stem}_RGB.tif", rng.integers(0, 256, (3, SIZE, SIZE), dtype=np.uint8))
        agl = rng.uniform(0, 20, (1, SIZE, SIZE)).astype(np.float32)
        agl[0, 5:7, 5:9] = np.nan  # the contest marks unknown heights with NaN
        write(truth_dir / f"{stem}_AGL.tif", agl)
        write(truth_dir / f"{stem}_CLS.tif", cls_map())
    return root


@pytest.fixture
def us3d(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RSBENCH_DATA", str(tmp_path / "cache"))
    return make_us3d(tmp_path / "us3d")


def test_sample_contract(us3d: Path) -> None:
    ds = US3D(us3d, split="trainval", test_fraction=0.0, val_fraction=0.0, crop=32)
    assert len(ds.tiles) == len(STEMS) and len(ds) == 4 * len(STEMS)
    s = ds[0]
    assert s["rgb"].dtype == torch.float32 and s["rgb"].shape == (3, 32, 32) and float(s["rgb"].max()) <= 1
    assert s["ndsm"].dtype == torch.float32 and s["ndsm"].shape == (1, 32, 32)
    assert s["dsm_valid"].dtype == torch.bool and s["mask"].dtype == torch.int64 and s["mask"].shape == (32, 32)
    assert "dsm" not in s, "DFC2019 track 1 has heights above ground only"
    assert ds.metainfo["classes"] == ("ground", "tree", "building", "water", "bridge")


def test_nan_heights_are_invalid_never_nan(us3d: Path) -> None:
    s = US3D(us3d, split="trainval", test_fraction=0.0, val_fraction=0.0, crop=SIZE)[0]
    valid, agl = s["dsm_valid"][0].numpy(), s["ndsm"][0].numpy()
    assert not valid[5:7, 5:9].any() and valid.sum() == SIZE * SIZE - 8
    assert np.isfinite(agl).all() and (agl[~valid] == 0).all()
    truth = rasterio.open(us3d / "Train-Track1-Truth/JAX_001_002_AGL.tif").read(1)
    assert np.allclose(agl[valid], truth[valid])


def test_nodata_tag_is_respected(us3d: Path) -> None:
    agl = np.full((1, SIZE, SIZE), 3.0, np.float32)
    agl[0, 0, :10] = -999.0
    write(us3d / "Train-Track1-Truth/JAX_001_002_AGL.tif", agl, nodata=-999.0)
    s = US3D(us3d, split="trainval", test_fraction=0.0, val_fraction=0.0, crop=SIZE)[0]
    assert s["dsm_valid"][0].sum() == SIZE * SIZE - 10 and float(s["ndsm"].min()) == 0.0


def test_las_codes_map_to_classes(us3d: Path) -> None:
    mask = US3D(us3d, split="trainval", test_fraction=0.0, val_fraction=0.0, crop=SIZE)[0]["mask"].numpy()
    assert mask[20, 0] == 0 and mask[20, -1] == 2 and mask[41, 0] == 1 and mask[45, 0] == 3 and mask[47, 0] == 4
    assert (mask[0, :3] == 255).all() and (mask[1, :2] == 255).all()
    report = check_dataset("us3d", us3d)
    assert report.unknown_colours == {3: 2 * len(STEMS)}, "65 (unlabelled) is expected, 3 is not"
    assert report.ok and any("JAX_001_002_CLS.tif" in str(p) for p, _ in report.warnings)
    assert sum(report.crops.values()) == len(STEMS)  # default crop 512 > 64: one crop per image


def test_splits_are_seeded_and_by_place(us3d: Path) -> None:
    kw = dict(val_fraction=0.34, test_fraction=0.34, crop=SIZE)
    splits = {s: {t.id for t in US3D(us3d, split=s, **kw).tiles} for s in ("train", "val", "test")}
    assert set().union(*splits.values()) == set(STEMS) and sum(map(len, splits.values())) == len(STEMS)
    places = {s: {i.rsplit("_", 1)[0] for i in ids} for s, ids in splits.items()}
    assert not places["train"] & places["val"] and not places["train"] & places["test"]
    assert not places["val"] & places["test"]
    assert all({p[:3] for p in ps} == {"JAX", "OMA"} for ps in places.values()), "each split sees both cities"
    again = {t.id for t in US3D(us3d, split="test", **kw).tiles}
    assert again == splits["test"]
    assert {t.id for t in US3D(us3d, split="trainval", **kw).tiles} == splits["train"] | splits["val"]


def test_missing_files(us3d: Path, tmp_path: Path) -> None:
    (us3d / "Train-Track1-Truth/OMA_012_003_AGL.tif").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"us3d .*OMA_012_003_AGL\.tif"):
        US3D(us3d)
    with pytest.raises(DatasetNotFoundError, match="Train-Track1-RGB"):
        US3D(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="us3d"):
        US3D(tmp_path / "absent")


def test_nested_zip_layout(tmp_path: Path) -> None:
    root = make_us3d(tmp_path / "nested", nested=True)
    assert len(US3D(root, split="trainval", test_fraction=0.0, val_fraction=0.0, crop=SIZE)) == len(STEMS)


def test_bad_files(us3d: Path) -> None:
    write(us3d / "Train-Track1-Truth/JAX_002_001_AGL.tif", np.zeros((1, SIZE, SIZE - 1), np.float32))
    with pytest.raises(DatasetFileError, match=r"JAX_002_001_AGL\.tif: agl is 63x64 .*JAX_002_001_RGB\.tif"):
        US3D(us3d, split="trainval", test_fraction=0.0)
    write(us3d / "Train-Track1-RGB/JAX_002_001_RGB.tif", np.zeros((4, SIZE, SIZE - 1), np.uint8))
    with pytest.raises(DatasetFileError, match=r"JAX_002_001_RGB\.tif: 4 bands, expected 3"):
        US3D(us3d, split="trainval", test_fraction=0.0)
    cls = us3d / "Train-Track1-Truth/OMA_011_001_CLS.tif"
    cls.write_bytes(cls.read_bytes()[:1000])
    report = check_dataset("us3d", us3d)
    bad = {p.name: r for p, r in report.bad_files}
    assert not report.ok and "JAX_002_001_RGB.tif" in bad and "truncated" in bad["OMA_011_001_CLS.tif"]


def test_dominant_plot_registry(us3d: Path) -> None:
    from matplotlib.figure import Figure

    ds = build_dataset("us3d", "trainval", root=us3d, test_fraction=0.0, val_fraction=0.0, crop=32)
    dominant = ds.dominant_classes()
    assert len(dominant) == len(ds) and set(dominant.tolist()) <= {0, 2}
    assert isinstance(ds.plot(ds[0]), Figure)
