"""US3D as released for the IEEE GRSS Data Fusion Contest 2019, track 1 (single-view semantic 3D).

WorldView-3 RGB images (1024x1024, uint8) of Jacksonville (JAX) and Omaha (OMA) with above-ground
level heights (AGL, float32 metres, NaN where unknown) and LAS class labels (CLS, uint8). Files are
named ``<CITY>_<tile>_<image>_<RGB|AGL|CLS>.tif``: several satellite images of one geographic tile.
Only the training release has reference data, so train/val/test are seeded splits of it, made by
geographic tile (never by image) so that no place is seen in two splits.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import register_dataset
from .errors import DatasetNotFoundError
from .geotiff import Tile, TiledRasterDataset, Window, read_window

NAME = re.compile(r"^([A-Z]{3})_(\d{3})_(\d{3})_RGB\.tif$")
CLASSES = ("ground", "tree", "building", "water", "bridge")
PALETTE = ((170, 120, 80), (0, 160, 0), (220, 40, 40), (40, 90, 220), (240, 200, 0))
LAS_CODES = {2: 0, 5: 1, 6: 2, 9: 3, 17: 4}  # LAS classification -> class id (DFC2019 data README)
UNLABELLED = 65  # LAS code the contest uses for "not labelled": ignored, never a class
SPLITS = ("train", "val", "test", "trainval")


def _files(root: Path, pattern: str, suffix: str) -> dict[str, Path]:
    """``stem -> path`` of ``*<suffix>`` in folders matching ``pattern`` or one level below them.

    The contest zips unpack as ``Train-Track1-RGB/Track1-RGB/...`` or flat, and large ones were split
    into ``Train-Track1-RGB-1``, ``-2``: all of these are accepted.
    """
    found: dict[str, Path] = {}
    for path in sorted([*root.glob(f"{pattern}/*{suffix}"), *root.glob(f"{pattern}/*/*{suffix}")]):
        found.setdefault(path.name[: -len(suffix)], path)
    return found


@register_dataset("us3d")
class US3D(TiledRasterDataset):
    """DFC2019 track-1 US3D: ``rgb``, ``ndsm`` (= AGL, metres), ``dsm_valid`` (False at NaN/nodata), ``mask``.

    Args:
        root: folder holding ``Train-Track1-RGB/`` (``*_RGB.tif``) and ``Train-Track1-Truth/``
            (``*_AGL.tif``, ``*_CLS.tif``).
        split: ``train``, ``val``, ``test`` or ``trainval`` (train + val).
        crop, overlap: crop size and minimum overlap in pixels (the 1024 px images give 4 crops of 512).
        val_fraction, test_fraction, split_seed: shares of the geographic tiles of each city held out.
        validate: raise on header problems (band count, dtype, size); ``False`` records them in ``problems``.
    """

    dataset_name = "us3d"
    classes, palette, label_table = CLASSES, PALETTE, LAS_CODES
    ignore_codes = frozenset({UNLABELLED})
    bands = {"image": 3, "agl": 1, "label": 1}
    split_names = ("train", "val", "test")

    def __init__(self, root: str | Path = "data/us3d", split: str = "train", crop: int = 512, overlap: int = 0,
                 val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0,
                 transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 validate: bool = True) -> None:  # fmt: skip
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} for us3d; valid splits: {', '.join(SPLITS)}")
        if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
            fractions = f"val_fraction={val_fraction}, test_fraction={test_fraction}"
            raise ValueError(f"need fractions >= 0 that sum below 1, got {fractions}")
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        super().__init__(root, split, crop, overlap, transforms, validate)

    def _locate(self) -> list[Tile]:
        rgb = {s: p for s, p in _files(self.root, "Train-Track1-RGB*", "_RGB.tif").items() if NAME.match(p.name)}
        if not rgb:
            where = "Train-Track1-RGB/<CITY>_<tile>_<image>_RGB.tif (e.g. JAX_004_006_RGB.tif)"
            raise DatasetNotFoundError(self.dataset_name, self.root, where, "unpack Train-Track1-RGB.zip there")
        agl = _files(self.root, "Train-Track1-Truth*", "_AGL.tif")
        cls = _files(self.root, "Train-Track1-Truth*", "_CLS.tif")
        missing = [f"Train-Track1-Truth/{s}_{kind}.tif" for s in rgb for kind, have in (("AGL", agl), ("CLS", cls))
                   if s not in have]  # fmt: skip
        if missing:
            raise DatasetNotFoundError(self.dataset_name, self.root, missing, "unpack Train-Track1-Truth.zip there")
        keep = self._split_places(sorted({s.rsplit("_", 1)[0] for s in rgb}))
        return [Tile(s, {"image": rgb[s], "agl": agl[s], "label": cls[s]}) for s in sorted(rgb)
                if s.rsplit("_", 1)[0] in keep]  # fmt: skip

    def _split_places(self, places: list[str]) -> set[str]:
        """The geographic tiles (``JAX_004``) of this split: seeded per city so every split sees both."""
        keep: set[str] = set()
        rng = np.random.default_rng(self.split_seed)
        for city in sorted({p[:3] for p in places}):
            order = rng.permutation([p for p in places if p[:3] == city]).tolist()
            n_test, n_val = (int(round(f * len(order))) for f in (self.test_fraction, self.val_fraction))
            parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
            parts["trainval"] = parts["val"] + parts["train"]
            keep.update(parts[self.split])
        return keep

    def _sample(self, tile: Tile, window: Window) -> dict[str, Any]:
        rgb = torch.from_numpy(read_window(tile.files["image"], window).astype(np.float32) / np.float32(255))
        ndsm, valid = self.heights(tile.files["agl"], window)
        return {"rgb": rgb, "ndsm": ndsm, "dsm_valid": valid, "mask": self.mask(tile.files["label"], window)}

    @property
    def metainfo(self) -> dict[str, Any]:
        return {**super().metainfo, "las_codes": dict(LAS_CODES), "unlabelled_code": UNLABELLED}
