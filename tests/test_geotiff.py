"""GeoTIFF helpers: windowed reads, crop windows, label codes and clear errors for broken files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")

from rsdatasets.errors import DatasetFileError  # noqa: E402
from rsdatasets.geotiff import (  # noqa: E402
    IGNORE,
    codes_to_classes,
    label_codes,
    raster_info,
    read_window,
    tile_windows,
)


def write_tif(path: Path, array: np.ndarray, nodata: float | None = None, **profile) -> Path:
    """A (bands, h, w) array as a GeoTIFF, the way the real tiles are stored (strips, no compression)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bands, h, w = array.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fakes carry no georeferencing
        kw = dict(driver="GTiff", width=w, height=h, count=bands, dtype=str(array.dtype), nodata=nodata)
        with rasterio.open(path, "w", **{**kw, **profile}) as dst:
            dst.write(array)
    return path


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (3, 90, 70), dtype=np.uint8)
    return write_tif(tmp_path / "image.tif", array), array


@pytest.mark.parametrize("tiled", [False, True])
def test_windowed_read_matches_full_read(tmp_path: Path, tiled: bool) -> None:
    array = np.random.default_rng(1).normal(size=(2, 90, 70)).astype(np.float32)
    extra = {"tiled": True, "blockxsize": 32, "blockysize": 32} if tiled else {}
    path = write_tif(tmp_path / "x.tif", array, **extra)
    full = read_window(path)
    assert np.array_equal(full, array)
    for window in [(0, 0, 90, 70), (5, 7, 33, 20), (57, 38, 33, 32), (89, 69, 1, 1)]:
        r, c, h, w = window
        assert np.array_equal(read_window(path, window), full[:, r : r + h, c : c + w])
    assert np.array_equal(read_window(path, (3, 4, 10, 10), bands=[2]), full[1:2, 3:13, 4:14])


def test_raster_info(tmp_path: Path, image: tuple[Path, np.ndarray]) -> None:
    info = raster_info(image[0])
    assert (info.width, info.height, info.count, info.dtype, info.nodata) == (70, 90, 3, "uint8", None)
    dsm = write_tif(tmp_path / "dsm.tif", np.zeros((1, 4, 5), np.float32), nodata=-9999.0)
    assert raster_info(dsm).nodata == -9999.0 and raster_info(dsm).dtype == "float32"


@pytest.mark.parametrize(
    "width,height,crop,overlap", [(96, 96, 32, 0), (96, 80, 40, 8), (100, 37, 30, 29), (20, 50, 64, 0)]
)
def test_tile_windows_cover_raster_with_overlap(width: int, height: int, crop: int, overlap: int) -> None:
    windows = tile_windows(width, height, crop, overlap)
    covered = np.zeros((height, width), dtype=int)
    for r, c, h, w in windows:
        assert r >= 0 and c >= 0 and r + h <= height and c + w <= width
        assert (h, w) == (min(crop, height), min(crop, width))
        covered[r : r + h, c : c + w] += 1
    assert covered.min() >= 1, "every pixel lies in some crop"
    rows, cols = sorted({w[0] for w in windows}), sorted({w[1] for w in windows})
    assert rows[-1] + min(crop, height) == height and cols[-1] + min(crop, width) == width, "last crop is flush"
    for starts in (rows, cols):
        assert all(b - a <= crop - overlap for a, b in zip(starts, starts[1:])), "neighbours overlap enough"
    assert len(windows) == len(set(windows))


def test_tile_windows_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="overlap"):
        tile_windows(10, 10, 8, 8)
    with pytest.raises(ValueError, match="crop"):
        tile_windows(10, 10, 0, 0)


def test_truncated_tiff_names_the_file(tmp_path: Path, image: tuple[Path, np.ndarray]) -> None:
    data = image[0].read_bytes()
    body = tmp_path / "body_cut.tif"
    body.write_bytes(data[: len(data) // 2])  # header intact, pixel strips missing
    raster_info(body)  # the header still reads ...
    with pytest.raises(DatasetFileError, match="body_cut.tif.*truncated"):
        read_window(body)  # ... the pixels do not
    head = tmp_path / "head_cut.tif"
    head.write_bytes(data[:100])
    with pytest.raises(DatasetFileError, match="head_cut.tif"):
        raster_info(head)
    junk = tmp_path / "junk.tif"
    junk.write_text("not a tiff")
    with pytest.raises(DatasetFileError, match="junk.tif"):
        read_window(junk, (0, 0, 1, 1))


def test_bad_window_or_band_names_the_file(image: tuple[Path, np.ndarray]) -> None:
    with pytest.raises(DatasetFileError, match="image.tif.*outside"):
        read_window(image[0], (80, 0, 20, 10))
    with pytest.raises(DatasetFileError, match="image.tif.*has 3"):
        read_window(image[0], bands=[4])


def test_label_codes_and_unknown_colours() -> None:
    rgb = np.array([[[255, 0, 250]], [[255, 0, 250]], [[255, 255, 250]]], dtype=np.uint8)  # (3, 1, 3)
    codes = label_codes(rgb)
    assert codes.tolist() == [[0xFFFFFF, 0x0000FF, 0xFAFAFA]]
    mask = codes_to_classes(codes, {0xFFFFFF: 0, 0x0000FF: 1})
    assert mask.dtype == np.int64 and mask.tolist() == [[0, 1, IGNORE]]
    las = label_codes(np.array([[[2, 6, 65]]], dtype=np.uint8))
    assert codes_to_classes(las, {2: 0, 6: 2}).tolist() == [[0, 2, IGNORE]]
