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


class _Canvas:
    """Mutable land-cover state (metres -> pixels) shared by the layout painters."""

    def __init__(self, rng: np.random.Generator, size: int, gsd: float) -> None:
        self.rng, self.size, self.gsd = rng, size, gsd
        self.area = (size * gsd / 64.0) ** 2  # object counts scale with ground area
        relief = rng.uniform(1.0, 5.0)  # a few metres over the tile
        self.terrain = (rng.uniform(30, 120) + relief * smooth_noise(rng, size, 2)).astype(np.float32)
        self.mask = np.full((size, size), LOW_VEGETATION, np.int64)
        self.ndsm = (0.2 * rng.random((size, size))).astype(np.float32)
        self.refl = np.tile(self.colour(GRASS).astype(np.float32)[:, None, None], (1, size, size))
        self.blocked = np.zeros((size, size), bool)  # no building here: roads, water, objects + margin
        self.water = np.zeros((size, size), bool)
        self.buildings, self.cars = [], []  # rectangles (y0, y1, x0, x1), clipped to the tile

    def px(self, metres: float) -> int:
        return max(1, int(round(metres / self.gsd)))

    def colour(self, base: np.ndarray, sd: float = 0.03) -> np.ndarray:
        return np.clip(base + self.rng.normal(0.0, sd, 4), 0.01, 1.0)

    def paint(self, sel, cls: int, colour: np.ndarray, height=0.0) -> None:
        """Set class, height and reflectance on a (ys, xs) slice pair or a boolean mask."""
        self.mask[sel], self.ndsm[sel] = cls, height
        rect = isinstance(sel, tuple)
        self.refl[(slice(None), *sel) if rect else (slice(None), sel)] = (
            colour[:, None, None] if rect else colour[:, None]
        )

    def fork(self) -> _Canvas:
        twin = object.__new__(_Canvas)
        twin.__dict__.update(
            self.__dict__,
            mask=self.mask.copy(),
            ndsm=self.ndsm.copy(),
            refl=self.refl.copy(),
            blocked=self.blocked.copy(),
            buildings=list(self.buildings),
            cars=list(self.cars),
        )
        return twin


def _strip(c: _Canvas, width_m: float, cls: int, colour: np.ndarray, height: float = 0.05) -> None:
    """A straight road/track across the scene (its orientation is randomised later by :func:`_d4`)."""
    w = c.px(width_m)
    y = int(c.rng.integers(0, max(1, c.size - w)))
    c.paint((slice(y, y + w), slice(None)), cls, c.colour(colour, 0.02), height)
    c.blocked[max(0, y - 1) : y + w + 1] = True


def _verge(c: _Canvas, width_m: float, n_trees: int, radius_m=(1.5, 3.5)) -> int:
    """A grass strip with a few trees along the left edge; returns its width in pixels."""
    w = c.px(width_m)
    c.paint((slice(None), slice(0, w)), LOW_VEGETATION, c.colour(GRASS), 0.1)
    _trees(c, n_trees, np.broadcast_to(np.arange(c.size) < w, c.mask.shape), radius_m)
    return w


def _buildings(
    c: _Canvas,
    n: int,
    side_m: tuple[float, float],
    height_m: tuple[float, float],
    allowed=(LOW_VEGETATION, IMPERVIOUS, CLUTTER),
    tries: int = 25,
    clutter: bool = False,
) -> int:
    """Rejection-sample up to ``n`` free flat-roofed footprints; returns how many were placed.

    ``clutter=True`` makes small raised objects (sheds, containers) that are no detection targets."""
    lut, placed = np.isin(np.arange(len(SEG_CLASSES)), allowed), 0
    for _ in range(n * tries):
        if placed == n:
            break
        h, w = c.px(c.rng.uniform(*side_m)), c.px(c.rng.uniform(*side_m))
        # Up to a quarter may stick out of the tile, as in real crops.
        y0 = int(c.rng.integers(-(h // 4), c.size - h + h // 4 + 1))
        x0 = int(c.rng.integers(-(w // 4), c.size - w + w // 4 + 1))
        ys, xs = slice(max(y0, 0), min(y0 + h, c.size)), slice(max(x0, 0), min(x0 + w, c.size))
        if ys.start >= ys.stop or xs.start >= xs.stop or c.blocked[ys, xs].any() or not lut[c.mask[ys, xs]].all():
            continue
        ground = c.terrain[ys, xs]
        roof = ground.max() + c.rng.uniform(*height_m)  # flat in absolute height, whatever the slope
        roof_colour = c.colour(ROOFS[c.rng.integers(len(ROOFS))], 0.02)
        c.paint((ys, xs), CLUTTER if clutter else BUILDING, roof_colour, roof - ground)
        m = c.px(1.5)
        c.blocked[max(ys.start - m, 0) : ys.stop + m, max(xs.start - m, 0) : xs.stop + m] = True
        if not clutter:
            c.buildings.append((ys.start, ys.stop, xs.start, xs.stop))
        placed += 1
    return placed


def _car(c: _Canvas, y: int, x: int, vertical: bool) -> bool:
    h, w = (c.px(4.5), c.px(1.9)) if vertical else (c.px(1.9), c.px(4.5))
    ys, xs = slice(y, y + h), slice(x, x + w)
    # Inside, on free asphalt (roads are building-blocked), a pixel apart so that boxes stay separable.
    if (
        y + h > c.size
        or x + w > c.size
        or (c.mask[ys, xs] != IMPERVIOUS).any()
        or (c.mask[max(y - 1, 0) : y + h + 1, max(x - 1, 0) : x + w + 1] == CAR).any()
    ):
        return False
    c.paint((ys, xs), CAR, c.colour(CAR_PAINT[c.rng.integers(len(CAR_PAINT))], 0.03), CAR_HEIGHT)
    c.cars.append((y, y + h, x, x + w))
    return True


def _scatter_cars(c: _Canvas, n: int) -> None:
    spots = np.flatnonzero(c.mask == IMPERVIOUS)
    for spot in c.rng.choice(spots, n * 4) if n > 0 and spots.size else ():
        # Mostly along the (still horizontal) roads; stop once n are parked.
        n -= _car(c, int(spot // c.size), int(spot % c.size), bool(c.rng.random() < 0.2))
        if n == 0:
            return


def _trees(c: _Canvas, n: int, region: np.ndarray | None = None, radius_m=(1.5, 4.0), height_m=(4.0, 15.0)) -> None:
    """Round crowns with dome-shaped heights, rasterised for all trees at once."""
    rng, s = c.rng, c.size
    idx = np.flatnonzero(np.ones((s, s), bool) if region is None else region)
    if n <= 0 or idx.size == 0:
        return
    pick = rng.choice(idx, n)
    cy, cx = pick // s + rng.random(n), pick % s + rng.random(n)
    r, top = rng.uniform(*radius_m, n) / c.gsd + 0.5, rng.uniform(*height_m, n)
    k = int(np.ceil(r.max()))
    oy, ox = (g.ravel() for g in np.mgrid[-k : k + 1, -k : k + 1])
    yy, xx = cy.astype(np.int64)[:, None] + oy, cx.astype(np.int64)[:, None] + ox
    d2 = ((yy + 0.5 - cy[:, None]) ** 2 + (xx + 0.5 - cx[:, None]) ** 2) / r[:, None] ** 2
    ok = (d2 < 1) & (yy >= 0) & (yy < s) & (xx >= 0) & (xx < s)
    flat, dome = (yy * s + xx)[ok], np.sqrt(1 - d2[ok])
    height, shade = np.zeros(s * s), np.zeros(s * s)
    np.maximum.at(height, flat, np.broadcast_to(top[:, None], ok.shape)[ok] * (0.55 + 0.45 * dome))
    np.maximum.at(shade, flat, dome)
    height, shade = height.reshape(s, s), shade.reshape(s, s)
    crown = (height > 0) & (c.mask != BUILDING) & (c.mask != CAR) & ~c.water
    c.mask[crown], c.ndsm[crown] = TREE, np.maximum(c.ndsm[crown], height[crown])
    c.refl[:, crown] = c.colour(FOLIAGE, 0.02)[:, None] * (0.6 + 0.4 * shade[crown])


def _residential(c: _Canvas) -> None:
    rng = c.rng
    for _ in range(int(rng.integers(1, 3))):
        _strip(c, rng.uniform(5, 8), IMPERVIOUS, ASPHALT)
    _buildings(c, max(3, rng.poisson(c.area * 8)), (8, 15), (3, 12), tries=15)
    _buildings(c, int(rng.integers(0, 3)), (3, 6), (0.3, 2.0), clutter=True)  # garden sheds
    _trees(c, rng.poisson(c.area * rng.uniform(8, 25)))
    _scatter_cars(c, rng.poisson(c.area * 3))


def _industrial(c: _Canvas) -> None:
    rng, k = c.rng, min(1.0, c.size * c.gsd / 64)  # halls and verges shrink with small tiles
    c.paint(np.ones_like(c.blocked), IMPERVIOUS, c.colour(CONCRETE), 0.0)
    if rng.random() < 0.6:
        _strip(c, rng.uniform(6, 9), IMPERVIOUS, ASPHALT)
    if rng.random() < 0.5:
        _verge(c, k * rng.uniform(4, 9), rng.poisson(c.area * 4), (1.5, 3.0))
    _buildings(c, max(2, rng.poisson(c.area * 3)), (18 * k, 38 * k), (6, 25), tries=25)
    _buildings(c, rng.poisson(c.area * 4), (2.5, 6), (2.4, 2.8), (IMPERVIOUS,), clutter=True)  # containers
    _scatter_cars(c, rng.poisson(c.area * 4))


def _forest(c: _Canvas) -> None:
    c.refl[:] = c.colour(GRASS * 0.85)[:, None, None]
    if c.rng.random() < 0.4:
        _strip(c, c.rng.uniform(2, 3.5), CLUTTER, SOIL)
    # Poisson coverage 1 - exp(-n a / A) of 60-85 %, with E[r^2] = 9.33 m^2 for r ~ U(2, 4) m.
    n = -np.log(1 - c.rng.uniform(0.6, 0.85)) * 4096 * c.area / (np.pi * 9.33)
    _trees(c, int(n), radius_m=(2.0, 4.0), height_m=(8.0, 15.0))


def _farmland(c: _Canvas) -> None:
    rng, s = c.rng, c.size
    ys = np.r_[0, np.unique(rng.integers(s // 5, s - s // 5, rng.integers(1, 3))), s]
    xs = np.r_[0, np.unique(rng.integers(s // 5, s - s // 5, rng.integers(1, 3))), s]
    yy, xx = np.mgrid[0:s, 0:s]
    bare_left = rng.random() < 0.4  # at most one bare field, small enough not to read as water
    for i in range(len(ys) - 1):
        for j in range(len(xs) - 1):
            sel = (slice(ys[i], ys[i + 1]), slice(xs[j], xs[j + 1]))
            if bare_left and (ys[i + 1] - ys[i]) * (xs[j + 1] - xs[j]) < 0.28 * s**2:
                bare_left = False
                c.paint(sel, CLUTTER, c.colour(SOIL), 0.0)
                continue
            rows = np.sin(2 * np.pi * (yy if rng.random() < 0.5 else xx)[sel] * c.gsd / rng.uniform(2, 5))
            c.paint(sel, LOW_VEGETATION, c.colour(CROPS[rng.integers(len(CROPS))]), rng.uniform(0, 0.5))
            c.refl[:, sel[0], sel[1]] *= 1 + 0.08 * rows
    if rng.random() < 0.5:
        _strip(c, rng.uniform(3, 4.5), IMPERVIOUS, ASPHALT)
    if rng.random() < 0.5:  # hedge along a field border
        hedge = np.broadcast_to(np.arange(s)[:, None] == ys[1], (s, s))
        _trees(c, int(s * c.gsd / 5), hedge, (1.5, 2.5), (4.0, 9.0))
    _buildings(c, int(rng.random() < 0.3 * min(1.0, c.area)), (8, 12), (4, 9))  # farm house


def _water(c: _Canvas) -> None:
    rng, s = c.rng, c.size
    target = rng.uniform(0.4, 0.65)
    if rng.random() < 0.5:  # lake
        field = smooth_noise(rng, s, 2) + 0.3 * smooth_noise(rng, s, 5)
        c.water = field >= np.quantile(field, 1 - target)
    else:  # meandering river
        centre = s * rng.uniform(0.35, 0.65) + 0.15 * s * smooth_noise(rng, s, 2)[:, 0]
        c.water = np.abs(np.arange(s)[None, :] - centre[:, None]) < target * s / 2
    c.terrain[c.water] = np.quantile(c.terrain, 0.05) - 0.3  # a water surface is flat and low
    c.paint(c.water, CLUTTER, c.colour(WATER_REFL, 0.01), 0.0)
    c.blocked |= c.water
    _trees(c, rng.poisson(c.area * 30), ~c.water)
    _buildings(c, int(rng.random() < 0.3), (8, 12), (3, 9))


def _parking(c: _Canvas) -> None:
    rng, s = c.rng, c.size
    c.paint(np.ones_like(c.blocked), IMPERVIOUS, c.colour(ASPHALT), 0.0)
    w = _verge(c, rng.uniform(4, 10), rng.poisson(c.area * 6))
    length, gap, pitch, occupied = c.px(4.6), c.px(0.6), c.px(2.6), rng.uniform(0.55, 0.95)
    y = int(rng.integers(0, c.px(3) + 1))
    while y + length <= s:
        for row in (y, y + length + gap):  # back-to-back rows, then an aisle
            for x in range(w + c.px(1), s, pitch):
                if rng.random() < occupied:
                    _car(c, row, x, vertical=True)
        y += 2 * length + gap + c.px(6.5)


LAYOUTS = (_residential, _industrial, _forest, _farmland, _water, _parking)  # index = intended class


def _d4(c: _Canvas, k: int, flip: bool) -> None:
    """Rotate/flip the canvas and its rectangles so that layouts have no preferred orientation."""
    s = c.size

    def rect(r: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        y0, y1, x0, x1 = r
        for _ in range(k):  # np.rot90: new (y, x) = (s - 1 - x, y)
            y0, y1, x0, x1 = s - x1, s - x0, y0, y1
        return (y0, y1, s - x1, s - x0) if flip else (y0, y1, x0, x1)

    for key in ("terrain", "mask", "ndsm", "refl", "blocked", "water"):
        a = np.rot90(getattr(c, key), k, axes=(-2, -1))
        setattr(c, key, np.ascontiguousarray(a[..., ::-1] if flip else a))
    c.buildings, c.cars = [rect(r) for r in c.buildings], [rect(r) for r in c.cars]


def _evolve(c: _Canvas) -> _Canvas:
    """The same scene later: some buildings demolished and/or some built on free ground."""
    t2, rng = c.fork(), c.rng
    if rng.random() >= CHANGE_PROB:
        return t2
    demolish = bool(t2.buildings) and rng.random() < 0.6
    if demolish:
        k = min(len(t2.buildings), int(rng.integers(1, 3)))
        for i in sorted(rng.choice(len(t2.buildings), k, replace=False), reverse=True):
            y0, y1, x0, x1 = t2.buildings.pop(i)
            cls, base = (LOW_VEGETATION, GRASS) if rng.random() < 0.6 else (CLUTTER, SOIL)
            t2.paint((slice(y0, y1), slice(x0, x1)), cls, t2.colour(base), 0.1)
    if not demolish or rng.random() < 0.4:  # build on open ground, clearing trees if needed
        _buildings(t2, int(rng.integers(1, 3)), (6, 14), (3, 12), (LOW_VEGETATION, CLUTTER, TREE), 40)
    return t2


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
