"""ISPRS 2D semantic labelling benchmarks, Potsdam and Vaihingen, read as distributed (no conversion).

Samples are crops read by window from the original tiles. Labels are colour-coded TIFFs mapped
through an explicit legend; any other colour (JPEG noise, anti-aliasing, the black boundary of the
eroded labels) becomes 255 (ignore), never a nearby class. Class ids follow the synthetic benchmark
(``impervious, building, low_vegetation, tree, car, clutter``), not TorchGeo's clutter-first order.
See docs/datasets.md for where to get the data and the expected folder tree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import register_dataset
from .errors import DatasetNotFoundError
from .geotiff import Tile, TiledRasterDataset, Window, read_window

CLASSES = ("impervious", "building", "low_vegetation", "tree", "car", "clutter")
PALETTE = ((255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0))
LEGEND = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(PALETTE)}  # 0xRRGGBB -> class id
BOUNDARY = 0x000000  # black: the eroded ("noBoundary") labels blank object borders on purpose
SPLITS = ("train", "val", "test", "trainval")

# Official 2D semantic labelling contest tiles (same lists as TorchGeo and mmsegmentation use).
POTSDAM_TRAIN = ("2_10", "2_11", "2_12", "3_10", "3_11", "3_12", "4_10", "4_11", "4_12", "5_10", "5_11", "5_12",
                 "6_7", "6_8", "6_9", "6_10", "6_11", "6_12", "7_7", "7_8", "7_9", "7_10", "7_11", "7_12")  # fmt: skip
POTSDAM_TEST = ("2_13", "2_14", "3_13", "3_14", "4_13", "4_14", "4_15", "5_13", "5_14", "5_15", "6_13", "6_14",
                "6_15", "7_13")  # fmt: skip
VAIHINGEN_TRAIN = ("1", "3", "5", "7", "11", "13", "15", "17", "21", "23", "26", "28", "30", "32", "34", "37")
VAIHINGEN_TEST = ("2", "4", "6", "8", "10", "12", "14", "16", "20", "22", "24", "27", "29", "31", "33", "35", "38")


def split_tiles(train: Sequence[str], test: Sequence[str], split: str, val_fraction: float, split_seed: int,
                dataset: str) -> list[str]:  # fmt: skip
    """Tile ids of a split: official test; official train minus a seeded ``val`` hold-out; or both of those."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for {dataset}; valid splits: {', '.join(SPLITS)}")
    if split == "test":
        return list(test)
    if split == "trainval":
        return list(train)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(val_fraction * len(train)))
    if split == "val" and n_val == 0:
        raise ValueError(f"{dataset} split 'val' is empty with val_fraction={val_fraction}; use e.g. 0.15")
    val = set(np.random.default_rng(split_seed).permutation(sorted(train))[:n_val].tolist())
    return [t for t in train if (t in val) == (split == "val")]


def find_file(root: Path, folders: Sequence[str], name: str) -> Path | None:
    """``root/folder/name``, also one folder deeper (``2_Ortho_RGB/2_Ortho_RGB/...``, as some zips unpack)."""
    for folder in folders:
        for path in (root / folder / name, root / folder / folder / name):
            if path.is_file():
                return path
    return None


def locate(dataset: str, root: Path, wanted: dict[str, dict[str, tuple[Sequence[str], str]]]) -> list[Tile]:
    """Tiles from ``{tile_id: {role: (folders, file name)}}``; any missing file -> DatasetNotFoundError."""
    if not root.is_dir():
        raise DatasetNotFoundError(dataset, root, "a folder", "pass root= the folder you unpacked it into")
    tiles, missing = [], []
    for tile_id, roles in wanted.items():
        files = {role: find_file(root, folders, name) for role, (folders, name) in roles.items()}
        missing += [f"{roles[r][0][0]}/{roles[r][1]}" for r, p in files.items() if p is None]
        tiles.append(Tile(tile_id, {r: p for r, p in files.items() if p is not None}))
    if missing:
        raise DatasetNotFoundError(dataset, root, missing, "unpack the missing archives there (docs/datasets.md)")
    return tiles


class _ISPRS(TiledRasterDataset):
    classes, palette, label_table = CLASSES, PALETTE, LEGEND
    split_names = ("train", "val", "test")

    def _init_common(self, labels: str, train: Sequence[str], test: Sequence[str], split: str, val_fraction: float,
                     split_seed: int, exclude: Sequence[str], tiles: Sequence[str] | None) -> None:  # fmt: skip
        """Label variant and this split's tile ids (official lists, seeded val, ``exclude``/``tiles`` filters)."""
        if labels not in ("full", "no_boundary"):
            raise ValueError(f"labels must be 'full' or 'no_boundary', got {labels!r}")
        self.labels = labels
        self.ignore_codes = frozenset({BOUNDARY}) if labels == "no_boundary" else frozenset()
        unknown = sorted(set(tiles or ()) - set(train) - set(test))
        if unknown:
            raise ValueError(f"{self.dataset_name} has no tiles {unknown}; official ids look like {train[0]!r}")
        drop = set(exclude)
        ids = split_tiles([t for t in train if t not in drop], [t for t in test if t not in drop], split,
                          val_fraction, split_seed, self.dataset_name)  # fmt: skip
        self.tile_ids = [t for t in ids if tiles is None or t in set(tiles)]

    def _heights(self, tile: Tile, window: Window, sample: dict[str, Any]) -> dict[str, Any]:
        for role in ("dsm", "ndsm"):
            if role in tile.files:
                sample[role], valid = self.heights(tile.files[role], window)
                sample.setdefault("dsm_valid", valid)  # from the DSM when there is one
        sample["mask"] = self.mask(tile.files["label"], window)
        return sample


@register_dataset("potsdam")
class Potsdam(_ISPRS):
    """ISPRS Potsdam: 38 tiles of 6000x6000 px at 5 cm; 24 official train tiles, 14 test tiles.

    Args:
        root: folder holding ``2_Ortho_RGB/``, ``3_Ortho_IRRG/``, ``4_Ortho_RGBIR/``, ``1_DSM/``,
            ``1_DSM_normalisation/``, ``5_Labels_all/``, ``5_Labels_all_noBoundary/`` (only those needed).
        split: ``train`` (official train minus the val hold-out), ``val``, ``test`` (official test) or
            ``trainval`` (all 24 official train tiles).
        image: ``RGB``, ``IRRG`` (``rgb`` holds IR,R,G; ``ms`` the IR band) or ``RGBIR`` (``ms`` = IR).
        labels: ``full`` or ``no_boundary`` (eroded borders are black -> 255, as the contest scores).
        crop, overlap: crop size and minimum overlap in pixels (last crop flush with the tile border).
        dsm: read ``1_DSM`` as ``dsm`` (float32 metres) with ``dsm_valid``.
        ndsm: also read ``1_DSM_normalisation`` as ``ndsm``: 8-bit JPEG grey levels (0-255), NOT metres.
        val_fraction, split_seed: share of the official train tiles held out as ``val`` and its seed.
        exclude: tile ids to drop (e.g. ``("7_10",)``, whose label many works report as faulty).
        tiles: keep only these tile ids of the split (quick runs on a few tiles); unknown ids are an error.
        validate: raise on header problems (band count, dtype, size); ``False`` records them in ``problems``.
    """

    dataset_name = "potsdam"
    folders = {"RGB": "2_Ortho_RGB", "IRRG": "3_Ortho_IRRG", "RGBIR": "4_Ortho_RGBIR"}

    def __init__(self, root: str | Path = "data/potsdam", split: str = "train", image: str = "RGB",
                 labels: str = "full", crop: int = 512, overlap: int = 0, dsm: bool = True, ndsm: bool = False,
                 val_fraction: float = 0.15, split_seed: int = 0, exclude: Sequence[str] = (),
                 tiles: Sequence[str] | None = None,
                 transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 validate: bool = True) -> None:  # fmt: skip
        if image not in self.folders:
            raise ValueError(f"image must be one of {', '.join(self.folders)}, got {image!r}")
        self._init_common(labels, POTSDAM_TRAIN, POTSDAM_TEST, split, val_fraction, split_seed, exclude, tiles)
        self.image, self.use_dsm, self.use_ndsm = image, dsm, ndsm
        self.bands = {"image": 4 if image == "RGBIR" else 3, "label": 3, "dsm": 1, "ndsm": 1}
        super().__init__(root, split, crop, overlap, transforms, validate)

    def _locate(self) -> list[Tile]:
        wanted = {}
        for t in self.tile_ids:
            padded = "_".join(f"{int(p):02d}" for p in t.split("_"))  # DSM files use 02_10, images 2_10
            roles = {"image": ((self.folders[self.image],), f"top_potsdam_{t}_{self.image}.tif")}
            if self.labels == "full":
                roles["label"] = (("5_Labels_all", "5_Labels_for_participants"), f"top_potsdam_{t}_label.tif")
            else:
                folders = ("5_Labels_all_noBoundary", "5_Labels_for_participants_no_Boundary")
                roles["label"] = (folders, f"top_potsdam_{t}_label_noBoundary.tif")
            if self.use_dsm:
                roles["dsm"] = (("1_DSM",), f"dsm_potsdam_{padded}.tif")
            if self.use_ndsm:
                roles["ndsm"] = (("1_DSM_normalisation",), f"dsm_potsdam_{padded}_normalized_lastools.jpg")
            wanted[t] = roles
        return locate(self.dataset_name, self.root, wanted)

    def _sample(self, tile: Tile, window: Window) -> dict[str, Any]:
        pixels = torch.from_numpy(read_window(tile.files["image"], window).astype(np.float32) / np.float32(255))
        sample: dict[str, Any] = {"rgb": pixels[:3]}
        if self.image != "RGB":  # the IR band: first of IRRG, last of RGBIR
            sample["ms"] = pixels[:1].clone() if self.image == "IRRG" else pixels[3:4]
        return self._heights(tile, window, sample)


@register_dataset("vaihingen")
class Vaihingen(_ISPRS):
    """ISPRS Vaihingen: 33 IRRG areas (about 2000x2500 px at 9 cm); 16 official train areas, 17 test.

    ``rgb`` holds the IR,R,G false-colour image (the only optical product), ``ms`` its IR band and
    ``dsm`` the matching DSM (float32 metres). Labels: ``gts_for_participants/`` (``full``) or
    ``gts_eroded_for_participants/`` (``no_boundary``); the test areas' labels come from the
    "COMPLETE" ground-truth archives, unpacked into the same folders. Other arguments as :class:`Potsdam`.
    """

    dataset_name = "vaihingen"

    def __init__(self, root: str | Path = "data/vaihingen", split: str = "train", labels: str = "full",
                 crop: int = 512, overlap: int = 0, dsm: bool = True, val_fraction: float = 0.15,
                 split_seed: int = 0, exclude: Sequence[str] = (), tiles: Sequence[str] | None = None,
                 transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 validate: bool = True) -> None:  # fmt: skip
        self._init_common(labels, VAIHINGEN_TRAIN, VAIHINGEN_TEST, split, val_fraction, split_seed, exclude, tiles)
        self.use_dsm = dsm
        self.bands = {"image": 3, "label": 3, "dsm": 1}
        super().__init__(root, split, crop, overlap, transforms, validate)

    def _locate(self) -> list[Tile]:
        wanted = {}
        for n in self.tile_ids:
            roles = {"image": (("top",), f"top_mosaic_09cm_area{n}.tif")}
            if self.labels == "full":
                roles["label"] = (("gts_for_participants",), f"top_mosaic_09cm_area{n}.tif")
            else:
                roles["label"] = (("gts_eroded_for_participants",), f"top_mosaic_09cm_area{n}_noBoundary.tif")
            if self.use_dsm:
                roles["dsm"] = (("dsm",), f"dsm_09cm_matching_area{n}.tif")
            wanted[n] = roles
        return locate(self.dataset_name, self.root, wanted)

    def _sample(self, tile: Tile, window: Window) -> dict[str, Any]:
        pixels = torch.from_numpy(read_window(tile.files["image"], window).astype(np.float32) / np.float32(255))
        return self._heights(tile, window, {"rgb": pixels, "ms": pixels[:1].clone()})
