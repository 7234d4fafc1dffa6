"""Intervals for single cells and for paired comparisons, by bootstrap over test tiles (and seeds), and over seeds.

* :func:`tile_ci`: percentile bootstrap CI of one cell's metric over its test tiles, with scipy's
  ``scipy.stats.bootstrap``. Resampling tiles (not pixels or boxes) keeps the dependence of pixels
  within a tile, as torchgeo-bench does for its per-cell intervals; a single-seed cell has an
  interval too. It covers test-set sampling only, not training noise.
* :func:`paired_difference`: the difference between two backbones evaluated on the same test tiles
  with the same (split seed, training seed) pairs, with a CI that resamples seeds and test tiles
  together. Written here because scipy's bootstrap resamples one axis (or paired observations);
  the two-way version draws, per resample, seeds with replacement and one multiset of tiles
  shared by both backbones and every drawn seed, then averages the per-seed differences.

Metrics are recomputed from per-tile sufficient statistics (``TiledMetric.resample``), so a
resample of mIoU is the ratio of resampled sums, not a mean of per-tile IoUs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

Resample = Callable[[dict, np.ndarray], np.ndarray]
# Defaults of every interval rsbench prints (docs/reports.md), here and nowhere else. Intervals are computed when
# a run is read, so changing them changes reports, never a stored cell (they are not in the code fingerprint).
#: Confidence level of every interval.
CONFIDENCE = 0.95
#: Resamples of the bootstraps over test tiles (one cell; seeds x tiles) and over seeds alone.
N_RESAMPLES = 2000
N_SEED_RESAMPLES = 9999
#: Seed of every bootstrap's generator, so a report is reproducible.
SEED = 0
#: How reports write the confidence level ("95 %").
CONFIDENCE_TEXT = f"{CONFIDENCE * 100:g} %"


def n_tiles(stats: dict[str, np.ndarray]) -> int:
    """Number of test tiles behind a cell's statistics (detection: the per-tile ground-truth table)."""
    return len(stats["gt_count"]) if "gt_count" in stats else len(next(iter(stats.values())))


def tile_weights(indices: np.ndarray, n: int) -> np.ndarray:
    """Rows of tile indices (R x n, drawn with replacement) -> rows of tile multiplicities (R x n)."""
    indices = np.atleast_2d(indices)
    weights = np.zeros((indices.shape[0], n))
    rows = np.repeat(np.arange(indices.shape[0]), indices.shape[1])
    np.add.at(weights, (rows, indices.ravel()), 1.0)
    return weights


def tile_ci(resample: Resample, stats: dict[str, np.ndarray], confidence: float = CONFIDENCE,
            n_resamples: int = N_RESAMPLES, seed: int = SEED) -> tuple[float, float]:  # fmt: skip
    """Percentile bootstrap CI of a cell's metric over its test tiles (NaN, NaN for fewer than 2 tiles)."""
    n = n_tiles(stats)
    if n < 2:
        return math.nan, math.nan

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        flat = np.asarray(idx, dtype=np.int64).reshape(-1, idx.shape[-1])
        return resample(stats, tile_weights(flat, n)).reshape(idx.shape[:-1])

    values = statistic(np.arange(n)[None])
    if not np.isfinite(values).all():
        return math.nan, math.nan
    result = scipy_stats.bootstrap(
        (np.arange(n),), statistic, vectorized=True, n_resamples=n_resamples, confidence_level=confidence,
        method="percentile", batch=200, rng=np.random.default_rng(seed),
    )  # fmt: skip
    low, high = result.confidence_interval
    return float(low), float(high)


@dataclass
class PairedDifference:
    """``mean`` over seeds of (A - B) on the same tiles, its CI, and whether the CI excludes 0."""

    mean: float
    low: float
    high: float
    n_seeds: int
    n_tiles: int

    @property
    def resolved(self) -> bool:
        """The CI lies on one side of 0: the sign of the difference is supported."""
        return bool(self.low > 0 or self.high < 0)


def paired_difference(
    resample: Resample,
    stats_a: Sequence[dict[str, np.ndarray]],
    stats_b: Sequence[dict[str, np.ndarray]] | None,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    batch: int = 250,
) -> PairedDifference:
    """Difference A - B of a metric over paired seeds, with a two-way (seeds x tiles) percentile bootstrap CI.

    ``stats_a[i]`` and ``stats_b[i]`` are the tile statistics of the two backbones' cells with the
    same split and training seed, on the same test tiles in the same order. ``stats_b=None`` gives
    the mean of A itself with the same two-way interval (a backbone's line over seeds).
    """
    if stats_b is not None and len(stats_a) != len(stats_b):
        raise ValueError(f"paired seeds needed: {len(stats_a)} cells against {len(stats_b)}")
    if not stats_a:
        raise ValueError("no cells to compare")
    n = n_tiles(stats_a[0])
    if any(n_tiles(s) != n for s in (*stats_a, *(stats_b or ()))):
        raise ValueError("paired cells must be evaluated on the same test tiles")
    k = len(stats_a)
    ones = np.ones((1, n))

    def values(weights: np.ndarray) -> np.ndarray:  # k x r
        a = np.stack([resample(x, weights) for x in stats_a])
        return a if stats_b is None else a - np.stack([resample(x, weights) for x in stats_b])

    observed = float(values(ones)[:, 0].mean())
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, n_resamples, batch):
        r = min(batch, n_resamples - start)
        weights = tile_weights(rng.integers(0, n, (r, n)), n)
        diffs = values(weights)
        seeds = rng.integers(0, k, (r, k))  # seeds drawn with replacement, per resample
        draws.append(diffs[seeds, np.arange(r)[:, None]].mean(1))
    draws = np.concatenate(draws)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0 or not math.isfinite(observed):
        return PairedDifference(observed, math.nan, math.nan, k, n)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return PairedDifference(observed, float(low), float(high), k, n)


def bootstrap_ci(values, confidence: float = CONFIDENCE, n_resamples: int = N_SEED_RESAMPLES,
                 seed: int = SEED) -> tuple[float, float]:  # fmt: skip
    """Percentile bootstrap CI of the mean over seeds; (nan, nan) with fewer than two values.

    Percentile rather than scipy's default BCa: with 2-3 seeds BCa's acceleration is undefined for
    tied values, and the percentile interval can be worked out by hand (with n <= 3 seeds it is
    exactly [min, max], since all n draws hit the minimum with probability n**-n >= 1/27 > 2.5 %).
    The generator is seeded, so a report is reproducible.
    """
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size < 2:
        return math.nan, math.nan
    if np.all(values == values[0]):  # no spread: the interval collapses (scipy would warn on degenerate data)
        return float(values[0]), float(values[0])
    result = scipy_stats.bootstrap(
        (values,), np.mean, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
        rng=np.random.default_rng(seed),
    )  # fmt: skip
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
