"""The layouts of the synthetic scene model: a land-cover canvas in metres and the painters of each scene type
(residential, industrial, forest, farmland, water, parking), the D4 symmetry and the later image's changes.

Part of :mod:`rsdatasets.scene_model`, which draws a layout and renders it; materials are
:mod:`rsdatasets.scene_materials`.
"""

from __future__ import annotations

import numpy as np

from .scene_materials import (
    ASPHALT,
    BUILDING,
    CAR,
    CAR_HEIGHT,
    CAR_PAINT,
    CHANGE_PROB,
    CLUTTER,
    CONCRETE,
    CROPS,
    FOLIAGE,
    GRASS,
    IMPERVIOUS,
    LOW_VEGETATION,
    ROOFS,
    SEG_CLASSES,
    SOIL,
    TREE,
    WATER_REFL,
    smooth_noise,
)


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
