"""Procedural aerial-scene generator behind the embedded synthetic benchmark (numpy only).

:func:`generate_scene` draws one scene whose modalities are physically coupled: terrain, land cover
laid out in metres, object heights, optical bands from per-material reflectance *and* shadows cast
from the heights, a DSM with nodata holes, boxes, a scene class derived from the composition and a
later image (t2) for building change. Layout types (:data:`SCENE_CLASSES`): ``residential`` (gardens,
roads, 3-12 m houses, trees, cars), ``industrial`` (concrete, 6-25 m halls, containers), ``forest``,
``farmland`` (striped fields, bare field, track, hedge), ``water`` (lake/river, green banks) and
``parking`` (rows of cars); the label itself comes from :func:`scene_class_from_composition`.
"""

from __future__ import annotations

import numpy as np

from .scene_layouts import LAYOUTS, _Canvas, _d4, _evolve
from .scene_materials import (  # noqa: F401  (the scene model's classes and materials, re-exported)
    ASPHALT,
    BUILDING,
    CAR,
    CAR_HEIGHT,
    CAR_PAINT,
    CHANGE_PROB,
    CLUTTER,
    CONCRETE,
    CROPS,
    DET_CLASSES,
    FARMLAND,
    FOLIAGE,
    FOREST,
    GRASS,
    IMPERVIOUS,
    INDUSTRIAL,
    LOW_VEGETATION,
    NODATA_PROB,
    PARKING,
    RESIDENTIAL,
    ROOFS,
    SCENE_CLASSES,
    SEG_CLASSES,
    SHADOW_GAIN,
    SHADOW_STEP,
    SOIL,
    TEXTURE_AMP,
    TREE,
    WATER,
    WATER_REFL,
    cast_shadows,
    scene_class_from_composition,
    smooth_noise,
)


def _render(c: _Canvas, tex: np.ndarray, elevation: float) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance x grain x illumination x terrain shading x cast shadows -> (4,H,W), shadow."""
    shadow = cast_shadows(c.terrain + c.ndsm, c.gsd, elevation)
    gy, gx = np.gradient(c.terrain, c.gsd)
    e = np.radians(elevation)  # Lambert on terrain only: roofs are flat, walls invisible from nadir
    hill = (np.sin(e) + np.cos(e) * (gy + gx) / np.sqrt(2)) / np.sqrt(1 + gx**2 + gy**2) / np.sin(e)
    light = np.clip(hill, 0.7, 1.3) * np.where(shadow, SHADOW_GAIN, 1.0)
    gain = c.rng.uniform(0.85, 1.15) * c.rng.normal(1.0, 0.04, (4, 1, 1))  # global light + colour cast
    return (c.refl * (1 + TEXTURE_AMP[c.mask] * tex) * light * gain).astype(np.float32), shadow


def _sensor(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return np.clip(img + rng.normal(0.0, sigma, img.shape), 0.0, 1.0).astype(np.float32)


def generate_scene(
    rng: np.random.Generator, size: int = 64, gsd: float = 1.0, layout: int | None = None
) -> dict[str, np.ndarray]:
    """Draw one coupled multi-modal scene (all randomness from ``rng``).

    Returns ``rgb`` (3,H,W) and ``ms`` (4,H,W: blue, green, red, NIR) float32 in [0, 1], ``dsm`` and
    ``ndsm`` (1,H,W) metres (0 where ``dsm_valid`` is False), ``dsm_valid`` bool (1,H,W), ``mask``
    int64 (H,W) over :data:`SEG_CLASSES`, ``boxes`` float32 (N,4) xyxy pixels with ``box_labels``
    int64 over :data:`DET_CLASSES`, scalar int64 ``label`` over :data:`SCENE_CLASSES`, the later
    image ``rgb_t2`` with its mask ``mask_t2`` and ``change`` int64 (H,W) = building footprint xor.
    Diagnostics: ``layout`` (intended class), ``terrain`` (H,W) and the t1 ``shadow`` map (H,W).
    ``layout`` forces a layout type (index into :data:`SCENE_CLASSES`) instead of sampling it.
    """
    c = _Canvas(rng, size, gsd)
    layout = int(rng.integers(len(LAYOUTS))) if layout is None else int(layout)
    LAYOUTS[layout](c)
    _d4(c, int(rng.integers(4)), bool(rng.random() < 0.5))
    t2 = _evolve(c)
    # Static material grain, identical at both dates.
    tex = 0.7 * smooth_noise(rng, size, max(2, size // 5)) + 0.5 * rng.standard_normal((size, size))
    img, shadow = _render(c, tex, rng.uniform(45, 65))
    rgb = _sensor(img[:3], rng, 0.012)
    ms = _sensor(img[[2, 1, 0, 3]] * rng.normal(1.0, 0.03, (4, 1, 1)), rng, 0.015)
    # Seasonal vegetation shift, new light and shorter/longer shadows: plain differencing is not enough.
    season = np.isin(t2.mask, (LOW_VEGETATION, TREE))[None] * rng.normal(0.0, 0.08, (4, 1, 1))
    t2.refl = (t2.refl * (1 + season)).astype(np.float32)
    rgb_t2 = _sensor(_render(t2, tex, rng.uniform(40, 70))[0][:3], rng, 0.015)

    ndsm = c.ndsm.astype(np.float32)
    dsm = (c.terrain + ndsm).astype(np.float32)
    valid = np.ones((size, size), bool)
    if rng.random() < NODATA_PROB:  # stereo/radar hole: an irregular blob, stored as 0, never faked
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(0.05, 0.15, 2) * size
        yy, xx = np.ogrid[:size, :size]
        valid = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 + 0.3 * smooth_noise(rng, size, 4) >= 1
        valid[min(int(cy), size - 1), min(int(cx), size - 1)] = False
    dsm[~valid], ndsm[~valid] = 0.0, 0.0
    rects = c.buildings + c.cars
    return {
        "rgb": rgb,
        "ms": ms,
        "dsm": dsm[None],
        "ndsm": ndsm[None],
        "dsm_valid": valid[None],
        "mask": c.mask.astype(np.int64),
        "boxes": np.array([(x0, y0, x1, y1) for y0, y1, x0, x1 in rects], np.float32).reshape(-1, 4),
        "box_labels": np.array([0] * len(c.buildings) + [1] * len(c.cars), np.int64),
        "label": np.int64(scene_class_from_composition(c.mask)),
        "rgb_t2": rgb_t2,
        "mask_t2": t2.mask.astype(np.int64),
        "change": ((c.mask == BUILDING) ^ (t2.mask == BUILDING)).astype(np.int64),
        "layout": np.int64(layout),
        "terrain": c.terrain.astype(np.float32),
        "shadow": shadow,
    }
