"""The numbers behind a report: seed statistics with their intervals, ranks, paired differences against random
init, label savings and the random-init check, all computed when a run is read.

Intervals come from ``intervals`` (bootstrap over seeds and test tiles, constants in one place); the rows and
the cells' tile statistics from ``rows``. Rendering lives in ``tables``, ``plots`` and ``report``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .intervals import CONFIDENCE, PairedDifference, bootstrap_ci, paired_difference
from .rows import (
    BASELINE_FRACTION,
    BASELINE_METHOD,
    SEED_KEYS,
    STAT_KEYS,
    _ok,
    _primary_rows,
    _resampler,
    _tile_stats_of,
    percent,
    prepare,
    primary_metrics,
)


def seed_stats(frame: pd.DataFrame, metrics: dict[str, str] | None = None, confidence: float = CONFIDENCE,
               run_dir: str | Path | None = None) -> pd.DataFrame:  # fmt: skip
    """One row per (task, dataset, protocol, metric, method, backbone, fraction): mean, std and a 95 % CI.

    ``metrics`` maps task -> metric to keep (e.g. ``primary_metrics``); None keeps every metric.
    A "seed" is one (split seed, training seed) pair; failed cells and NaN values are left out.
    The CI resamples seeds and test tiles together (``stats.paired_difference`` with no second
    backbone) when ``run_dir`` holds the cells' tile statistics, so a single seed has an interval
    over its test tiles; otherwise it falls back to a bootstrap over seeds (``bootstrap_ci``).
    """
    rows = _ok(prepare(frame))
    rows = rows[rows["value"].notna()]
    if metrics is not None:
        rows = _primary_rows(rows, metrics)
    columns = [*STAT_KEYS, "arch", "lower", "n_seeds", "n_train", "mean", "std", "ci_low", "ci_high", "ci_kind",
               "wall_time_s"]  # fmt: skip
    if rows.empty:
        return pd.DataFrame(columns=columns)
    records = []
    for key, group in rows.groupby(STAT_KEYS, sort=True):
        values = group["value"].to_numpy(dtype=float)
        low, high, kind = math.nan, math.nan, ""
        tiles = _tile_stats_of(run_dir, group) if run_dir is not None else None
        resample = _resampler(key[0]) if tiles is not None else None
        if resample is not None:
            ci = paired_difference(resample, tiles, None, confidence)
            low, high, kind = ci.low, ci.high, "seeds x tiles"
        if kind == "":
            low, high = bootstrap_ci(values, confidence)
            kind = "seeds" if low == low else ""
        records.append({
            **dict(zip(STAT_KEYS, key)), "arch": group["arch"].iloc[0], "lower": bool(group["lower"].iloc[0]),
            "n_seeds": len(values), "n_train": int(group["n_train"].median()) if "n_train" in group else None,
            "mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            "ci_low": low, "ci_high": high, "ci_kind": kind,
            "wall_time_s": float(group["wall_time_s"].sum()) if "wall_time_s" in group else math.nan,
        })  # fmt: skip
    return pd.DataFrame.from_records(records, columns=columns)


def with_ranks(stats: pd.DataFrame) -> pd.DataFrame:
    """``stats`` plus ``rank``: 1 = best mean among backbones on the same task, dataset, protocol, metric, fraction.

    Direction-aware (the task's declaration, ``stats["lower"]``); ties share the better rank ("min").
    A rank orders means; whether a difference is real is what ``paired_comparisons`` says.
    """
    stats = stats.copy()
    if stats.empty:
        stats["rank"] = pd.Series(dtype=float)
        return stats
    groups = stats.groupby(["task", "dataset", "protocol", "metric", "fraction"], sort=False)["mean"]
    stats["rank"] = groups.transform(lambda s: s.rank(ascending=bool(stats.loc[s.index[0], "lower"]), method="min"))
    return stats


def baseline_for(group: pd.DataFrame, arch: str) -> str | None:
    """The random-init backbone to compare against: the one of the same arch, else the only one; None if unclear."""
    base = group[group["method"] == BASELINE_METHOD]
    names = sorted(base["backbone"].unique())
    same = sorted(base.loc[base["arch"] == arch, "backbone"].unique()) if arch else []
    if len(same) == 1:
        return same[0]
    return names[0] if len(names) == 1 else None


def _verdict(diff: PairedDifference, lower: bool) -> str:
    """``better`` / ``worse`` when the CI of the difference excludes 0, else ``not resolved``."""
    if not diff.resolved:
        return "not resolved"
    better = diff.high < 0 if lower else diff.low > 0
    return "better" if better else "worse"


def paired_comparisons(frame: pd.DataFrame, run_dir: str | Path, metrics: dict[str, str] | None = None,
                       confidence: float = CONFIDENCE) -> pd.DataFrame:  # fmt: skip
    """Every backbone against random init of its arch, at every fraction: paired difference and its CI.

    Pairs are cells with the same task, dataset, protocol, fraction, split seed and training seed
    (so the same labelled subset and test tiles); the CI resamples the paired seeds and the test
    tiles together (``stats.paired_difference``). ``verdict`` is ``better`` / ``worse`` only when the
    CI excludes 0, direction-aware, and ``not resolved`` otherwise. Rows whose cells lack tile
    statistics (older runs) or a paired baseline cell say so in ``verdict``.
    """
    rows = _ok(prepare(frame))
    metrics = metrics or primary_metrics(rows)
    rows = _primary_rows(rows, metrics)
    columns = ["task", "dataset", "protocol", "metric", "fraction", "method", "backbone", "baseline", "n_seeds",
               "diff", "ci_low", "ci_high", "verdict", "lower"]  # fmt: skip
    records = []
    for (task, dataset, protocol, metric), group in rows.groupby(["task", "dataset", "protocol", "metric"], sort=True):
        resample = _resampler(task)
        lower = bool(group["lower"].iloc[0])
        for backbone, own in group[group["method"] != BASELINE_METHOD].groupby("backbone", sort=True):
            baseline = baseline_for(group, own["arch"].iloc[0])
            for fraction, cells in own.groupby("fraction", sort=True):
                base = {"task": task, "dataset": dataset, "protocol": protocol, "metric": metric,
                        "fraction": fraction, "method": cells["method"].iloc[0], "backbone": backbone,
                        "baseline": baseline, "lower": lower}  # fmt: skip
                if baseline is None or resample is None:
                    records.append({**base, "verdict": "no random-init baseline" if baseline is None else
                                    "task not registered here"})  # fmt: skip
                    continue
                ref = group[(group["backbone"] == baseline) & np.isclose(group["fraction"], fraction)]
                diff = _paired(resample, run_dir, cells, ref, confidence)
                if isinstance(diff, str):
                    records.append({**base, "verdict": diff})
                    continue
                records.append({**base, "n_seeds": diff.n_seeds, "diff": diff.mean, "ci_low": diff.low,
                                "ci_high": diff.high, "verdict": _verdict(diff, lower)})  # fmt: skip
    return pd.DataFrame.from_records(records, columns=columns)


def _paired(resample, run_dir, cells_a: pd.DataFrame, cells_b: pd.DataFrame, confidence: float):
    """PairedDifference of two sets of cells over their common seed pairs, or a reason string."""
    seeds_a = set(map(tuple, cells_a[SEED_KEYS].drop_duplicates().to_numpy().tolist()))
    seeds_b = set(map(tuple, cells_b[SEED_KEYS].drop_duplicates().to_numpy().tolist()))
    common = sorted(seeds_a & seeds_b)
    if not common:
        return "no paired cells (same split and training seeds)"
    stats_a = _tile_stats_of(run_dir, cells_a, common)
    stats_b = _tile_stats_of(run_dir, cells_b, common)
    if stats_a is None or stats_b is None:
        return "no tile statistics (run made before they were saved)"
    return paired_difference(resample, stats_a, stats_b, confidence)


def label_savings(frame: pd.DataFrame, run_dir: str | Path | None, metrics: dict[str, str] | None = None,
                  confidence: float = CONFIDENCE) -> pd.DataFrame:  # fmt: skip
    """For each backbone: the smallest label fraction at which it beats random init with 100 % of the labels.

    A saving is claimed only where the interval supports it: at fraction f the paired difference
    (backbone at f) - (random init at 100 %), same seeds and test tiles, must have its whole CI on
    the better side of 0. ``result`` is then "f of labels (saves 1 - f)"; "not reached" when the CI
    is on the worse side at every fraction; otherwise "not resolved at this budget". A random init
    that is *better* at a smaller fraction than at 100 % (resolved) is a broken baseline, in ``caveat``.
    """
    rows = _ok(prepare(frame))
    metrics = metrics or primary_metrics(rows)
    rows = _primary_rows(rows, metrics)
    columns = ["task", "dataset", "protocol", "metric", "method", "backbone", "baseline", "fraction_needed",
               "diff", "ci_low", "ci_high", "labels_saved", "result", "caveat"]  # fmt: skip
    records = []
    for (task, dataset, protocol, metric), group in rows.groupby(["task", "dataset", "protocol", "metric"], sort=True):
        resample = _resampler(task) if run_dir is not None else None
        lower = bool(group["lower"].iloc[0])
        for backbone, own in group[group["method"] != BASELINE_METHOD].groupby("backbone", sort=True):
            baseline = baseline_for(group, own["arch"].iloc[0])
            base = {"task": task, "dataset": dataset, "protocol": protocol, "metric": metric,
                    "method": own["method"].iloc[0], "backbone": backbone, "baseline": baseline}  # fmt: skip
            full = group[(group["backbone"] == baseline) & np.isclose(group["fraction"], BASELINE_FRACTION)]
            if baseline is None or full.empty:
                records.append({**base, "result": "no random-init baseline at 100 % labels"})
                continue
            if resample is None:
                records.append({**base, "result": "no tile statistics: savings need paired intervals"})
                continue
            caveat = _baseline_caveat(resample, run_dir, group, baseline, full, lower, confidence)
            result, sides = None, []
            for fraction, cells in own.sort_values("fraction").groupby("fraction", sort=True):
                diff = _paired(resample, run_dir, cells, full, confidence)
                if isinstance(diff, str):
                    continue
                verdict = _verdict(diff, lower)
                sides.append(verdict)
                if verdict == "better":
                    result = {**base, "fraction_needed": fraction, "diff": diff.mean, "ci_low": diff.low,
                              "ci_high": diff.high, "labels_saved": 1 - fraction,
                              "result": f"{percent(fraction)} of labels (saves {percent(1 - fraction)})"}  # fmt: skip
                    break
            if result is None:
                text = "not reached (worse at every fraction)" if sides and set(sides) == {"worse"} else (
                    "not resolved at this budget" if sides else "no paired cells")  # fmt: skip
                result = {**base, "result": text}
            records.append({**result, "caveat": caveat})
    return pd.DataFrame.from_records(records, columns=columns)


def _baseline_caveat(resample, run_dir, group, baseline, full, lower, confidence) -> str:
    own = group[(group["backbone"] == baseline) & (group["fraction"] < BASELINE_FRACTION)]
    worse_at_full = []
    for fraction, cells in own.groupby("fraction"):
        diff = _paired(resample, run_dir, cells, full, confidence)
        if not isinstance(diff, str) and _verdict(diff, lower) == "better":
            worse_at_full.append(percent(fraction))
    if not worse_at_full:
        return ""
    return f"random init is better at {', '.join(worse_at_full)} than at 100 % (budget-limited)"


def baseline_monotonicity(frame: pd.DataFrame, run_dir: str | Path | None, metrics: dict[str, str] | None = None,
                          confidence: float = CONFIDENCE) -> pd.DataFrame:  # fmt: skip
    """Does random init improve with labels? Per task: means by fraction, and the rise from the smallest to the
    largest fraction (paired by seed, same test tiles) with its CI.

    ``monotone`` is True when every step's mean improves (direction-aware) and the CI of the overall
    rise lies on the better side of 0; a benchmark whose baseline gets worse with more labels is
    measuring its budget, not label efficiency.
    """
    rows = _ok(prepare(frame))
    metrics = metrics or primary_metrics(rows)
    rows = _primary_rows(rows, metrics)
    rows = rows[rows["method"] == BASELINE_METHOD]
    columns = ["task", "dataset", "protocol", "metric", "backbone", "means", "rise", "ci_low", "ci_high", "monotone"]
    records = []
    for (task, dataset, protocol, metric, backbone), group in rows.groupby(
        ["task", "dataset", "protocol", "metric", "backbone"], sort=True
    ):
        lower = bool(group["lower"].iloc[0])
        means = group.groupby("fraction")["value"].mean().sort_index()
        if len(means) < 2:
            continue
        steps = np.diff(means.to_numpy()) * (-1 if lower else 1)
        record = {"task": task, "dataset": dataset, "protocol": protocol, "metric": metric, "backbone": backbone,
                  "means": " → ".join(f"{v:.2f}" for v in means)}  # fmt: skip
        resample = _resampler(task) if run_dir is not None else None
        diff = "no tile statistics"
        if resample is not None:
            lo, hi = means.index[0], means.index[-1]
            diff = _paired(resample, run_dir, group[np.isclose(group["fraction"], hi)],
                           group[np.isclose(group["fraction"], lo)], confidence)  # fmt: skip
        if isinstance(diff, str):
            record.update(monotone=bool((steps > 0).all()), rise=float(steps.sum()))
        else:
            record.update(rise=diff.mean, ci_low=diff.low, ci_high=diff.high,
                          monotone=bool((steps > 0).all()) and _verdict(diff, lower) == "better")  # fmt: skip
        records.append(record)
    return pd.DataFrame.from_records(records, columns=columns)


