"""Classes, materials and the physics of the synthetic scene model: reflectances, noise, shadows, the scene label.

Part of :mod:`rsdatasets.scene_model` (which re-exports these names); the layouts that paint with them are
:mod:`rsdatasets.scene_layouts`.
"""

from __future__ import annotations

import numpy as np

SEG_CLASSES = ("impervious", "building", "low_vegetation", "tree", "car", "clutter")
IMPERVIOUS, BUILDING, LOW_VEGETATION, TREE, CAR, CLUTTER = range(6)
SCENE_CLASSES = ("residential", "industrial", "forest", "farmland", "water", "parking")
RESIDENTIAL, INDUSTRIAL, FOREST, FARMLAND, WATER, PARKING = range(6)
DET_CLASSES = ("building", "car")

# Reflectance (R, G, B, NIR): NIR is what separates vegetation from water and man-made surfaces.
ASPHALT, CONCRETE = np.array([0.36, 0.36, 0.37, 0.24]), np.array([0.58, 0.57, 0.54, 0.30])
GRASS, FOLIAGE = np.array([0.33, 0.47, 0.22, 0.52]), np.array([0.17, 0.31, 0.13, 0.62])
WATER_REFL, SOIL = np.array([0.08, 0.16, 0.21, 0.035]), np.array([0.52, 0.42, 0.31, 0.30])
CROPS = np.array([[0.40, 0.55, 0.25, 0.58], [0.30, 0.42, 0.18, 0.50], [0.55, 0.52, 0.30, 0.46]])
ROOFS = np.array(
    [
        [0.62, 0.30, 0.24, 0.30],
        [0.30, 0.30, 0.32, 0.26],
        [0.72, 0.72, 0.70, 0.36],
        [0.50, 0.38, 0.30, 0.30],
        [0.35, 0.41, 0.50, 0.28],
        [0.82, 0.81, 0.78, 0.38],
    ]
)
CAR_PAINT = np.array(
    [
        [0.85, 0.85, 0.85, 0.30],
        [0.10, 0.10, 0.11, 0.12],
        [0.70, 0.12, 0.10, 0.24],
        [0.15, 0.22, 0.55, 0.18],
        [0.55, 0.56, 0.58, 0.25],
    ]
)
TEXTURE_AMP = np.array([0.05, 0.015, 0.09, 0.10, 0.01, 0.06], np.float32)  # roofs/cars are smooth
SHADOW_GAIN = 0.45  # diffuse sky light only
SHADOW_STEP = (1, 1)  # sun in the north-west (top-left): shadows fall towards the bottom-right
CAR_HEIGHT, NODATA_PROB, CHANGE_PROB = 1.5, 0.25, 0.6


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise: a (cells+1)^2 Gaussian grid bilinearly upsampled to (size, size)."""
    grid = rng.standard_normal((cells + 1, cells + 1))
    t = (np.arange(size) + 0.5) * (cells / size)
    i = np.minimum(t.astype(np.int64), cells - 1)
    f = t - i
    top = grid[i][:, i] * (1 - f) + grid[i][:, i + 1] * f
    bottom = grid[i + 1][:, i] * (1 - f) + grid[i + 1][:, i + 1] * f
    return top * (1 - f[:, None]) + bottom * f[:, None]


def cast_shadows(surface: np.ndarray, gsd: float, elevation_deg: float) -> np.ndarray:
    """Pixels that the surface (H,W, metres) hides from the sun (rays along :data:`SHADOW_STEP`)."""
    h, w = surface.shape
    drop = np.tan(np.radians(elevation_deg)) * gsd * np.hypot(*SHADOW_STEP)
    steps = int(min(max(h, w), np.ceil((surface.max() - surface.min()) / drop)))
    ray = np.full(surface.shape, -np.inf, np.float32)
    for k in range(1, steps + 1):
        np.maximum(ray[k:, k:], surface[:-k, :-k] - k * drop, out=ray[k:, k:])
    return ray > surface + 0.25  # tolerance: gentle terrain must not self-shadow


def scene_class_from_composition(mask: np.ndarray) -> int:
    """Scene class of a segmentation mask from its class fractions, by ordered rules.

    1. clutter >= 30 %  -> water (big water bodies are clutter; bare fields stay below this);
    2. tree >= 40 %     -> forest;
    3. car >= 5 %       -> parking;
    4. building >= 6 %  -> industrial if vegetation (low veg + tree) < 25 %, else residential;
    5. low veg >= 45 %  -> farmland;
    6. otherwise forest if trees outnumber low vegetation, farmland if vegetation >= 40 %, else
       parking (open paved ground).
    """
    mask = np.asarray(mask)
    frac = np.bincount(mask.ravel(), minlength=len(SEG_CLASSES))[: len(SEG_CLASSES)] / mask.size
    green = frac[LOW_VEGETATION] + frac[TREE]
    if frac[CLUTTER] >= 0.30:
        return WATER
    if frac[TREE] >= 0.40:
        return FOREST
    if frac[CAR] >= 0.05:
        return PARKING
    if frac[BUILDING] >= 0.06:
        return INDUSTRIAL if green < 0.25 else RESIDENTIAL
    if frac[LOW_VEGETATION] >= 0.45 or (green >= 0.40 and frac[LOW_VEGETATION] >= frac[TREE]):
        return FARMLAND
    return FOREST if frac[TREE] > frac[LOW_VEGETATION] else PARKING
