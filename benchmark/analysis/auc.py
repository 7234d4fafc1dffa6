"""What a reader looks for first: one label-efficiency number (here), and in ``aggregates`` an aggregate across
tasks, robustness and compute.

Pure functions on the long-format result rows (the columns ``analysis.prepare`` gives: ``task``,
``dataset``, ``protocol``, ``metric``, ``method``, ``backbone``, ``arch``, ``fraction``, ``split_seed``,
``train_seed``, ``value``, ``status``, ``config_hash``, ``lower``) and on per-tile statistics that the
caller hands in as ``stats_of(config_hash) -> dict | None``. Nothing here reads a file, so every
summary is recomputed at report time from the store and changing a definition never retrains a cell.

* **Label-efficiency AUC** (:func:`log_fraction_auc`, :func:`paired_auc`, :func:`label_efficiency_auc`):
  the area under metric vs log(fraction), divided by the log-fraction range, so it is the curve's mean
  level in the metric's own units. It is the AUC of the metric itself: for a lower-is-better metric
  (RMSE) a lower AUC is better, and ``lower`` travels with every row as it does for the metric. Its
  CI and its paired difference to random init use the two-way (seeds x test tiles) resampling of
  ``intervals.paired_difference``: one seed pair's whole curve is the unit drawn with replacement, and one
  multiset of test tiles is shared by every fraction, both backbones and every seed (the test split is
  the same at every fraction, so a hard tile is hard for the whole curve).
* **Aggregate** (:func:`normalization_anchors`, :func:`normalized_scores`, :func:`aggregate_scores`):
  per (task, fraction), 0 = random init, 1 = the reference; IQM with a stratified bootstrap CI and the
  probability of improvement over random init, as rliable defines them.
* **Robustness** (:func:`clean_rows`, :func:`corrupted_rows`, :func:`robustness_drops`,
  :func:`least_degraded`): each backbone's drop from clean under a corruption, paired over seeds and
  the same test tiles, and which backbone degrades least.
* **Compute** (:func:`adaptation_compute`, :func:`pretraining_compute`, :func:`pareto_front`).

rliable is not a dependency: its only releases (1.2.0, also as rliable-fork) pin ``arch<8``, and
``import arch`` 7.x fails under pandas 3 (``deprecate_kwarg``), while arch 8 rejects the
``random_state=None`` rliable passes. Its definitions are reproduced with scipy instead:
``aggregate_iqm`` is ``scipy.stats.trim_mean(scores, 0.25)`` over all runs and tasks, the stratified
bootstrap is ``scipy.stats.bootstrap`` with one sample per task (``paired=False`` resamples each sample
independently, i.e. runs within each task), and ``probability_of_improvement`` is the Mann-Whitney U
statistic over ``n * m`` (``scipy.stats.mannwhitneyu``), averaged over tasks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import integrate

from .comparisons import baseline_for
from .intervals import CONFIDENCE, N_RESAMPLES, SEED, PairedDifference, Resample, n_tiles, paired_difference
from .rows import BASELINE_METHOD, CLEAN, SEED_KEYS, clean_rows, corrupted_rows, is_corrupted  # noqa: F401 (re-exported)

#: What one comparison is made within: a task's metric on one dataset under one protocol.
GROUP_KEYS = ["task", "dataset", "protocol", "metric"]
#: A column of the aggregate: one (task, fraction).
COLUMN_KEYS = [*GROUP_KEYS, "fraction"]
#: What a corrupted test pass shares with its clean cell: the same trained model.
CELL_KEYS = [*GROUP_KEYS, "backbone", "fraction", *SEED_KEYS]

StatsOf = Callable[[str], "dict[str, np.ndarray] | None"]


def task_resampler(task: str) -> Resample | None:
    """The task's resampled primary metric (``Task.resample_primary``); None for a task not registered here."""
    from tasks import get_task

    try:
        return get_task(task).resample_primary
    except Exception:  # a plugin task that is not importable where the report is made
        return None


def _ok(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows[rows["status"] == "ok"] if "status" in rows else rows
    return rows[rows["value"].notna()]


def _direction(diff: PairedDifference, lower: bool) -> str:
    if not diff.resolved:
        return "not resolved"
    return "better" if (diff.high < 0 if lower else diff.low > 0) else "worse"


def _select(frame: pd.DataFrame, keys: Sequence[str], values: Sequence) -> pd.DataFrame:
    """The rows of ``frame`` whose ``keys`` columns equal ``values``."""
    mask = np.ones(len(frame), dtype=bool)
    for k, v in zip(keys, values):
        mask &= (frame[k] == v).to_numpy()
    return frame[mask]


def _percent_list(fractions) -> str:
    return ", ".join(f"{f * 100:.4g} %" for f in sorted(fractions))


# ---- combining several cells' statistics into one, so stats.paired_difference resamples them jointly ----


def _joint_stats(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One statistics dict holding ``parts`` (cells evaluated on the same test tiles) under prefixed keys."""
    n = n_tiles(parts[0])
    if any(n_tiles(p) != n for p in parts):
        raise ValueError("cells combined into one resample must be evaluated on the same test tiles")
    # First, a per-tile array: stats.n_tiles takes a dict's tile count from its first array (or gt_count).
    joint = {"tiles": np.zeros(n)}
    for i, part in enumerate(parts):
        joint.update({f"{i}/{k}": v for k, v in part.items()})
    return joint


def _linear_resample(resample: Resample, coefficients: Sequence[float]) -> Resample:
    """A Resample of ``_joint_stats(parts)``: sum_i coefficients[i] * resample(parts[i]) for the same tile weights."""
    coefficients = [float(c) for c in coefficients]

    def combined(stats: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        total = 0.0
        for i, c in enumerate(coefficients):
            if c != 0.0:
                prefix = f"{i}/"
                part = {k[len(prefix) :]: v for k, v in stats.items() if k.startswith(prefix)}
                total = total + c * np.asarray(resample(part, weights), dtype=float)
        return total

    return combined


# ---- 1. label-efficiency AUC ----


def log_fraction_auc(fractions: Sequence[float], values, axis: int = -1):
    """Area under ``values`` against log(fraction) (trapezoid rule), divided by the log-fraction range.

    The result is the curve's mean level in the metric's units (a flat curve at 40 has AUC 40), and
    the base of the logarithm cancels. ``values`` may hold many curves (fractions along ``axis``).
    NaN with fewer than two fractions: one point is no curve.
    """
    f = np.asarray(fractions, dtype=float)
    if f.ndim != 1 or (f <= 0).any() or (f > 1).any():
        raise ValueError(f"label fractions must be a list in (0, 1], got {fractions!r}")
    if len(np.unique(f)) != len(f):
        raise ValueError(f"each fraction once, got {fractions!r}")
    values = np.asarray(values, dtype=float)
    if values.shape[axis] != len(f):
        raise ValueError(f"{len(f)} fractions but {values.shape[axis]} values along axis {axis}")
    if len(f) < 2:
        return np.take(values, 0, axis=axis) * np.nan
    order = np.argsort(f)
    x = np.log(f[order])
    return integrate.trapezoid(np.take(values, order, axis=axis), x, axis=axis) / (x[-1] - x[0])


def auc_weights(fractions: Sequence[float]) -> np.ndarray:
    """The weight of each fraction's metric in ``log_fraction_auc`` (it is linear in the values); sums to 1."""
    return np.asarray(log_fraction_auc(fractions, np.eye(len(fractions)), axis=-1))


def paired_auc(
    resample: Resample,
    fractions: Sequence[float],
    curves_a: Sequence[Sequence[dict[str, np.ndarray]]],
    curves_b: Sequence[Sequence[dict[str, np.ndarray]]] | None = None,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> PairedDifference:
    """AUC(A) - AUC(B) over paired seeds with the two-way (seeds x tiles) CI; ``curves_b=None``: AUC(A) itself.

    ``curves_a[s][i]`` is the tile statistics of A's cell at ``fractions[i]`` with seed pair ``s``;
    ``curves_b[s][i]`` B's cell with the same seed pair and fraction. Every cell is evaluated on the
    same test tiles. Each resample recomputes every (fraction, seed) cell's metric from one tile
    multiset, forms each seed's AUC (difference), and averages over seeds drawn with replacement:
    ``intervals.paired_difference`` applied to whole curves.
    """
    if len(fractions) < 2:
        raise ValueError("an AUC needs at least two label fractions")
    if any(len(c) != len(fractions) for c in (*curves_a, *(curves_b or ()))):
        raise ValueError(f"every curve needs one cell per fraction ({len(fractions)})")
    curve_resample = _linear_resample(resample, auc_weights(fractions))
    joint_a = [_joint_stats(c) for c in curves_a]
    joint_b = None if curves_b is None else [_joint_stats(c) for c in curves_b]
    return paired_difference(curve_resample, joint_a, joint_b, confidence, n_resamples, seed)


def _seed_pairs(rows: pd.DataFrame) -> set[tuple]:
    return set(map(tuple, rows[SEED_KEYS].drop_duplicates().to_numpy().tolist()))


def _curve_of(rows: pd.DataFrame, fractions, seeds) -> tuple[np.ndarray, list[list[str]]]:
    """Values (seeds x fractions) and config hashes of one backbone's cells at ``fractions`` for ``seeds``."""
    cells = rows.drop_duplicates([*SEED_KEYS, "fraction"]).set_index([*SEED_KEYS, "fraction"])
    values = np.array([[float(cells.loc[(*s, f), "value"]) for f in fractions] for s in seeds])
    hashes = [[str(cells.loc[(*s, f), "config_hash"]) for f in fractions] for s in seeds]
    return values, hashes


def _curve_stats(hashes: list[list[str]], stats_of: StatsOf | None):
    if stats_of is None:
        return None
    curves = [[stats_of(h) for h in seed] for seed in hashes]
    return None if any(s is None for c in curves for s in c) else curves


def label_efficiency_auc(
    rows: pd.DataFrame,
    stats_of: StatsOf | None = None,
    resample_for: Callable[[str], Resample | None] = task_resampler,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> pd.DataFrame:
    """One row per backbone x (task, dataset, protocol, metric): its label-efficiency AUC and the paired
    difference to random init of its arch, each with a two-way (seeds x tiles) CI.

    ``rows``: per-cell result rows of the metrics to summarise (e.g. each task's primary metric);
    corrupted test passes are left out (``clean_rows``). Never rewarding a backbone for a fraction it was not run at:

    * ``auc`` uses the fractions every backbone of the group has (``fractions``), over the seed pairs
      present at each of them;
    * ``diff`` = AUC(backbone) - AUC(random init) uses the fractions both have (``diff_fractions``),
      over the seed pairs both have at each of them; ``verdict`` is better / worse only when its CI
      excludes 0, direction-aware (``lower``).

    Fewer than two such fractions give no AUC and say so in ``note``; without tile statistics
    (``stats_of`` None or a cell without them) the values come without intervals.
    """
    rows = _ok(clean_rows(rows))
    columns = [*GROUP_KEYS, "lower", "method", "backbone", "auc", "auc_low", "auc_high", "fractions", "n_seeds",
               "baseline", "diff", "diff_low", "diff_high", "diff_fractions", "diff_n_seeds", "verdict",
               "note"]  # fmt: skip
    records = []
    for key, group in rows.groupby(GROUP_KEYS, sort=True):
        lower = bool(group["lower"].iloc[0])
        resample = resample_for(key[0]) if stats_of is not None else None
        per_backbone = {b: set(own["fraction"]) for b, own in group.groupby("backbone")}
        common = sorted(set.intersection(*per_backbone.values()))
        everywhere = set.union(*per_backbone.values())
        for backbone, own in group.groupby("backbone", sort=True):
            notes = []
            if len(everywhere) > len(common):
                notes.append(f"left out (not run for every backbone): {_percent_list(everywhere - set(common))}")
            record = {**dict(zip(GROUP_KEYS, key)), "lower": lower, "method": own["method"].iloc[0],
                      "backbone": backbone, "fractions": _percent_list(common)}  # fmt: skip
            auc = _auc_with_ci(own, None, common, stats_of, resample, confidence, n_resamples, seed)
            if isinstance(auc, str):
                notes.append(auc)
            else:
                record.update(auc=auc[0].mean, auc_low=auc[0].low, auc_high=auc[0].high, n_seeds=auc[1])
            if own["method"].iloc[0] != BASELINE_METHOD:
                base = baseline_for(group, own["arch"].iloc[0] if "arch" in own else "")
                record["baseline"] = base
                if base is None:
                    notes.append("no random-init baseline")
                else:
                    ref = group[group["backbone"] == base]
                    both = sorted(set(own["fraction"]) & set(ref["fraction"]))
                    record["diff_fractions"] = _percent_list(both)
                    diff = _auc_with_ci(own, ref, both, stats_of, resample, confidence, n_resamples, seed)
                    if isinstance(diff, str):
                        notes.append(f"difference: {diff}")
                    else:
                        d, k = diff
                        record.update(diff=d.mean, diff_low=d.low, diff_high=d.high, diff_n_seeds=k,
                                      verdict=_direction(d, lower) if d.low == d.low else "no interval")  # fmt: skip
            record["note"] = "; ".join(notes)
            records.append(record)
    return pd.DataFrame.from_records(records, columns=columns)


def _auc_with_ci(own, ref, fractions, stats_of, resample, confidence, n_resamples, seed):
    """(PairedDifference, n seed pairs) of AUC(own) [- AUC(ref)] at ``fractions``, or a reason string."""
    if len(fractions) < 2:
        return "one fraction: no curve, no AUC" if fractions else "no fraction in common"
    sides = [own] if ref is None else [own, ref]
    seeds = sorted(set.intersection(*(_seed_pairs(r[r["fraction"] == f]) for r in sides for f in fractions)))
    if not seeds:
        return "no seed pair at every fraction"
    curves = [_curve_of(r, fractions, seeds) for r in sides]
    point = log_fraction_auc(fractions, curves[0][0]) - (log_fraction_auc(fractions, curves[1][0]) if ref is not None
                                                         else 0.0)  # fmt: skip
    observed = float(np.mean(point))
    tiles = [_curve_stats(h, stats_of) for _, h in curves] if resample is not None else [None]
    if any(t is None for t in tiles):
        return PairedDifference(observed, math.nan, math.nan, len(seeds), 0), len(seeds)
    try:
        diff = paired_auc(resample, fractions, tiles[0], tiles[1] if ref is not None else None, confidence,
                          n_resamples, seed)  # fmt: skip
    except ValueError as exc:  # cells on different test tiles: no joint resample exists, and the table says why
        return str(exc)
    return diff, len(seeds)
