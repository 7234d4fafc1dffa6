"""ISPRS Potsdam/Vaihingen readers on tiny fakes in the exact distributed layout (names, dtypes, bands)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

rasterio = pytest.importorskip("rasterio")

from rsdatasets import build_dataset  # noqa: E402
from rsdatasets.check import check_dataset, print_report  # noqa: E402
from rsdatasets.errors import DatasetFileError, DatasetNotFoundError  # noqa: E402
from rsdatasets.isprs import (  # noqa: E402
    PALETTE,
    POTSDAM_TEST,
    POTSDAM_TRAIN,
    VAIHINGEN_TEST,
    VAIHINGEN_TRAIN,
    Potsdam,
    Vaihingen,
    split_tiles,
)

TILES = ("2_10", "2_11", "2_13")  # two official train tiles, one official test tile
NOISE = (250, 250, 250)  # JPEG-ish near-white: must become 255, never "impervious"
N_NOISE = 5


def write(path: Path, array: np.ndarray, driver: str = "GTiff", nodata: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver=driver, width=array.shape[2], height=array.shape[1],
                           count=array.shape[0], dtype=str(array.dtype), nodata=nodata) as dst:  # fmt: skip
            dst.write(array)
    return path


def classes_of(h: int, w: int) -> np.ndarray:
    """The fake class layout: 16 px cells cycling through the six classes."""
    r, c = np.mgrid[:h, :w]
    return (r // 16 + c // 16) % 6


def label_colours(h: int, w: int, boundary: bool = False) -> np.ndarray:
    rgb = np.asarray(PALETTE, dtype=np.uint8)[classes_of(h, w)].transpose(2, 0, 1).copy()
    rgb[:, 0, :N_NOISE] = np.array(NOISE, np.uint8)[:, None]
    if boundary:
        rgb[:, 15::16, :] = 0  # the eroded labels blank borders in black
    return rgb


def heights(h: int, w: int) -> np.ndarray:
    dsm = (30.0 + np.arange(h * w, dtype=np.float32).reshape(1, h, w) / 100).astype(np.float32)
    dsm[0, 2:4, 2:6] = np.nan
    dsm[0, 10, 10:13] = -9999.0  # the file's nodata value
    return dsm


def make_potsdam(root: Path, tiles=TILES, h: int = 96, w: int = 96, extras: bool = True) -> Path:
    rng = np.random.default_rng(0)
    for t in tiles:
        padded = "_".join(f"{int(p):02d}" for p in t.split("_"))
        rgbir = rng.integers(0, 256, (4, h, w), dtype=np.uint8)
        write(root / f"2_Ortho_RGB/top_potsdam_{t}_RGB.tif", rgbir[:3])
        write(root / f"5_Labels_all/top_potsdam_{t}_label.tif", label_colours(h, w))
        if extras:
            write(root / f"3_Ortho_IRRG/top_potsdam_{t}_IRRG.tif", rgbir[[3, 0, 1]])
            write(root / f"4_Ortho_RGBIR/top_potsdam_{t}_RGBIR.tif", rgbir)
            write(root / f"1_DSM/dsm_potsdam_{padded}.tif", heights(h, w), nodata=-9999.0)
            ndsm = rng.integers(0, 256, (1, h, w), dtype=np.uint8)
            write(root / f"1_DSM_normalisation/dsm_potsdam_{padded}_normalized_lastools.jpg", ndsm, driver="JPEG")
            name = f"5_Labels_all_noBoundary/top_potsdam_{t}_label_noBoundary.tif"
            write(root / name, label_colours(h, w, boundary=True))
    return root


@pytest.fixture
def potsdam(tmp_path: Path) -> Path:
    return make_potsdam(tmp_path / "potsdam")


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSBENCH_DATA", str(tmp_path / "cache"))  # dominant-class cache stays in tmp


@pytest.mark.parametrize("image", ["RGB", "IRRG", "RGBIR"])
def test_potsdam_sample_contract(potsdam: Path, image: str) -> None:
    ds = Potsdam(potsdam, split="trainval", image=image, tiles=TILES, crop=64, overlap=0)
    assert len(ds) == 2 * 4 and ds.metainfo["classes"][0] == "impervious"
    s = ds[0]
    assert s["rgb"].dtype == torch.float32 and s["rgb"].shape == (3, 64, 64)
    assert 0.0 <= float(s["rgb"].min()) and float(s["rgb"].max()) <= 1.0
    assert s["dsm"].dtype == torch.float32 and s["dsm"].shape == (1, 64, 64)
    assert s["dsm_valid"].dtype == torch.bool and s["mask"].dtype == torch.int64 and s["mask"].shape == (64, 64)
    rgbir = rasterio.open(potsdam / "4_Ortho_RGBIR/top_potsdam_2_10_RGBIR.tif").read()[:, :64, :64] / 255.0
    first = {"RGB": rgbir[:3], "IRRG": rgbir[[3, 0, 1]], "RGBIR": rgbir[:3]}[image]
    assert np.allclose(s["rgb"].numpy(), first, atol=1e-6)
    if image == "RGB":
        assert "ms" not in s
    else:
        assert s["ms"].shape == (1, 64, 64) and np.allclose(s["ms"].numpy(), rgbir[3:4], atol=1e-6)


def test_crops_cover_tile_and_colours_map_to_classes(potsdam: Path) -> None:
    ds = Potsdam(potsdam, split="trainval", tiles=("2_10",), crop=40, overlap=8)
    canvas = np.full((96, 96), -1, dtype=np.int64)
    for i, (_, (r, c, h, w)) in enumerate(ds.index):
        canvas[r : r + h, c : c + w] = ds[i]["mask"].numpy()
    expected = classes_of(96, 96)
    expected[0, :N_NOISE] = 255  # unknown colour -> ignore, not the nearest class
    assert np.array_equal(canvas, expected)
    assert len(ds) == 9  # starts 0, 32, 56 on each axis


def test_no_boundary_labels_ignore_black_and_check_reports_unknown(potsdam: Path) -> None:
    ds = Potsdam(potsdam, split="trainval", tiles=("2_10",), labels="no_boundary", crop=96)
    mask = ds[0]["mask"].numpy()
    assert (mask[15::16] == 255).all() and (mask[0, :N_NOISE] == 255).all()
    report = check_dataset("potsdam", potsdam, tiles=TILES, labels="no_boundary")
    code = (NOISE[0] << 16) | (NOISE[1] << 8) | NOISE[2]
    assert report.unknown_colours == {code: N_NOISE * len(TILES)}, "black is an expected ignore code"
    assert report.ok, report.summary()  # a few stray pixels are a warning, not a bad file
    assert any("label_noBoundary.tif" in str(p) and "(250,250,250)" in r for p, r in report.warnings)
    assert "outside the legend" in report.summary()
    print_report(report)


def test_many_unknown_colours_make_a_bad_file(potsdam: Path) -> None:
    write(potsdam / "5_Labels_all/top_potsdam_2_11_label.tif", np.full((3, 96, 96), 7, np.uint8))
    report = check_dataset("potsdam", potsdam, tiles=TILES, dsm=False)
    assert not report.ok
    assert [p.name for p, _ in report.bad_files] == ["top_potsdam_2_11_label.tif"]


def test_missing_files_name_what_is_missing(potsdam: Path, tmp_path: Path) -> None:
    (potsdam / "1_DSM/dsm_potsdam_02_11.tif").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"potsdam .*1_DSM/dsm_potsdam_02_11\.tif") as err:
        Potsdam(potsdam, split="trainval", tiles=TILES)
    assert isinstance(err.value, FileNotFoundError) and "\n" not in str(err.value)
    assert len(Potsdam(potsdam, split="trainval", tiles=TILES, dsm=False, crop=96)) == 2  # no DSM needed
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        Potsdam(tmp_path / "nowhere")
    report = check_dataset("potsdam", potsdam, tiles=TILES)
    assert not report.ok and any("dsm_potsdam_02_11" in e for e in report.errors)


def test_truncated_tiff_is_one_clear_error(potsdam: Path) -> None:
    label = potsdam / "5_Labels_all/top_potsdam_2_11_label.tif"
    label.write_bytes(label.read_bytes()[:5000])  # header intact, strips cut
    ds = Potsdam(potsdam, split="trainval", tiles=TILES, crop=96)
    with pytest.raises(DatasetFileError, match="top_potsdam_2_11_label.tif.*truncated"):
        ds[1]
    image = potsdam / "2_Ortho_RGB/top_potsdam_2_10_RGB.tif"
    image.write_bytes(image.read_bytes()[:64])  # header cut
    with pytest.raises(DatasetFileError, match="top_potsdam_2_10_RGB.tif"):
        Potsdam(potsdam, split="trainval", tiles=TILES)
    report = check_dataset("potsdam", potsdam, tiles=TILES)
    bad = {p.name for p, _ in report.bad_files}
    assert {"top_potsdam_2_11_label.tif", "top_potsdam_2_10_RGB.tif"} <= bad and not report.ok


def test_wrong_band_count_and_dsm_size(potsdam: Path) -> None:
    write(potsdam / "2_Ortho_RGB/top_potsdam_2_10_RGB.tif", np.zeros((4, 96, 96), np.uint8))
    with pytest.raises(DatasetFileError, match="top_potsdam_2_10_RGB.tif: 4 bands, expected 3"):
        Potsdam(potsdam, split="trainval", tiles=TILES)
    write(potsdam / "2_Ortho_RGB/top_potsdam_2_10_RGB.tif", np.zeros((3, 96, 96), np.uint8))
    write(potsdam / "1_DSM/dsm_potsdam_02_11.tif", np.zeros((1, 96, 95), np.float32))  # one column short
    with pytest.raises(DatasetFileError, match=r"dsm_potsdam_02_11\.tif: dsm is 95x96 .*top_potsdam_2_11_RGB\.tif"):
        Potsdam(potsdam, split="trainval", tiles=TILES)
    report = check_dataset("potsdam", potsdam, tiles=TILES)
    assert [p.name for p, _ in report.bad_files] == ["dsm_potsdam_02_11.tif"]
    assert report.crops["test"] == Potsdam(potsdam, split="test", tiles=TILES).__len__()


def test_nodata_heights_are_masked_never_nan(potsdam: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Potsdam(potsdam, split="trainval", tiles=("2_10",), crop=96)[0]
    valid, dsm = s["dsm_valid"][0].numpy(), s["dsm"][0].numpy()
    assert not valid[2:4, 2:6].any() and not valid[10, 10:13].any() and valid.sum() == 96 * 96 - 8 - 3
    assert np.isfinite(dsm).all() and (dsm[~valid] == 0).all()
    assert np.allclose(dsm[valid], heights(96, 96)[0][valid])
    monkeypatch.setattr("rsdatasets.check.BLOCK", 40)  # several blocks per file, as on real tiles
    report = check_dataset("potsdam", potsdam, tiles=TILES)
    assert report.label_colours.total() == 96 * 96 * len(TILES), "blocks are disjoint: each pixel counted once"
    fractions = {f.path.name: f.nodata_fraction for f in report.files if f.role == "dsm"}
    assert fractions["dsm_potsdam_02_10.tif"] == pytest.approx(11 / 96**2)
    assert any(p.name == "dsm_potsdam_02_10.tif" and "nodata" in r for p, r in report.warnings)


def test_ndsm_option(potsdam: Path) -> None:
    s = Potsdam(potsdam, split="test", tiles=TILES, ndsm=True, crop=96)[0]
    assert s["ndsm"].dtype == torch.float32 and s["ndsm"].shape == (1, 96, 96) and float(s["ndsm"].max()) > 1


def test_official_splits(tmp_path: Path) -> None:
    assert len(POTSDAM_TRAIN) == 24 and len(POTSDAM_TEST) == 14 and not set(POTSDAM_TRAIN) & set(POTSDAM_TEST)
    assert len(VAIHINGEN_TRAIN) == 16 and len(VAIHINGEN_TEST) == 17 and not set(VAIHINGEN_TRAIN) & set(VAIHINGEN_TEST)
    train, val = (split_tiles(POTSDAM_TRAIN, POTSDAM_TEST, s, 0.15, 0, "potsdam") for s in ("train", "val"))
    assert len(val) == 4 and sorted(train + val) == sorted(POTSDAM_TRAIN)
    assert val == split_tiles(POTSDAM_TRAIN, POTSDAM_TEST, "val", 0.15, 0, "potsdam")  # seeded
    assert val != split_tiles(POTSDAM_TRAIN, POTSDAM_TEST, "val", 0.15, 1, "potsdam")
    root = make_potsdam(tmp_path / "full", POTSDAM_TRAIN + POTSDAM_TEST, 16, 16, extras=False)
    sizes = {s: len(Potsdam(root, split=s, dsm=False, crop=16)) for s in ("train", "val", "test", "trainval")}
    assert sizes == {"train": 20, "val": 4, "test": 14, "trainval": 24}
    assert {t.id for t in Potsdam(root, split="test", dsm=False).tiles} == set(POTSDAM_TEST)
    with pytest.raises(ValueError, match="split"):
        Potsdam(root, split="pool")


def test_dominant_classes_cached(potsdam: Path, tmp_path: Path) -> None:
    ds = Potsdam(potsdam, split="trainval", tiles=TILES, crop=16)
    dominant = ds.dominant_classes()
    assert len(dominant) == len(ds) == 2 * 36 and dominant.dtype == np.int64
    windows = [w for _, w in ds.index]
    assert all(d == classes_of(96, 96)[r + 8, c + 8] for d, (r, c, _, _) in zip(dominant, windows))
    assert list((tmp_path / "cache" / "index").glob("potsdam-*.npy"))
    assert np.array_equal(Potsdam(potsdam, split="trainval", tiles=TILES, crop=16).dominant_classes(), dominant)


def test_plot_and_registry(potsdam: Path) -> None:
    from matplotlib.figure import Figure

    ds = build_dataset("potsdam", "trainval", root=potsdam, tiles=TILES, crop=48)
    sample = ds[0]
    assert isinstance(ds.plot(sample), Figure)
    assert isinstance(ds.plot({**sample, "prediction": torch.randn(6, 48, 48)}, suptitle="x"), Figure)
    batch = torch.utils.data.default_collate([ds[0], ds[len(ds) - 1]])  # what the training loop does
    assert batch["rgb"].shape == (2, 3, 48, 48) and batch["mask"].shape == (2, 48, 48)


def test_vaihingen(tmp_path: Path) -> None:
    root = tmp_path / "vaihingen"
    rng = np.random.default_rng(0)
    for n, (h, w) in {"1": (80, 64), "3": (64, 72), "2": (64, 64)}.items():
        irrg = rng.integers(0, 256, (3, h, w), dtype=np.uint8)
        write(root / f"top/top_mosaic_09cm_area{n}.tif", irrg)
        write(root / f"dsm/dsm_09cm_matching_area{n}.tif", heights(h, w), nodata=-9999.0)
        write(root / f"gts_for_participants/top_mosaic_09cm_area{n}.tif", label_colours(h, w))
        write(root / f"gts_eroded_for_participants/top_mosaic_09cm_area{n}_noBoundary.tif", label_colours(h, w, True))
    ds = Vaihingen(root, split="trainval", tiles=("1", "3", "2"), crop=64)
    assert [t.id for t in ds.tiles] == ["1", "3"] and len(ds) == 2 + 2
    s = ds[0]
    irrg = rasterio.open(root / "top/top_mosaic_09cm_area1.tif").read()[:, :64, :64] / 255.0
    assert np.allclose(s["rgb"].numpy(), irrg, atol=1e-6) and np.allclose(s["ms"].numpy(), irrg[:1], atol=1e-6)
    assert s["mask"][0, :N_NOISE].eq(255).all() and not s["dsm_valid"][0, 2:4, 2:6].any()
    test = Vaihingen(root, split="test", tiles=("2",), labels="no_boundary", crop=64)
    assert len(test) == 1 and (test[0]["mask"][15] == 255).all() and len(test.dominant_classes()) == 1
    write(root / "dsm/dsm_09cm_matching_area3.tif", np.zeros((1, 10, 10), np.float32))
    with pytest.raises(DatasetFileError, match="dsm_09cm_matching_area3.tif.*top_mosaic_09cm_area3.tif"):
        Vaihingen(root, split="trainval", tiles=("1", "3"))
    with pytest.raises(DatasetNotFoundError, match="gts_for_participants/top_mosaic_09cm_area5.tif"):
        Vaihingen(root, split="trainval", tiles=("1", "5"))
