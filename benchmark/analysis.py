"""The numbers behind a report: seed statistics with bootstrap CIs, ranks, label savings, published vs ours.

Everything here is plain pandas on the long-format result rows (one row per cell and metric,
``benchmark.results.COLUMNS``); rendering lives in ``tables``, ``plots`` and ``report``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from .provenance import REPO_ROOT

#: Metric families where lower is better; every other metric (mIoU, OA, F1, mAP, delta<1.25, ...) is
#: higher-is-better. A family is the metric name up to its first "_" or ".", so ``AbsRel_ge1m`` is AbsRel.
LOWER_IS_BETTER = frozenset({"RMSE", "MAE", "AbsRel"})
#: The registry method whose backbones are the "no pretraining" baseline of label savings.
BASELINE_METHOD = "random_init"
#: The fraction at which the baseline is taken ("random init with all training labels").
BASELINE_FRACTION = 1.0
#: Reference metric names that mean one of ours under a different name, per task. From
#: shared/docs/paper-numbers.md: detection papers report VOC-style mAP at IoU 0.5 as "mAP"; our "mAP" is COCO's.
REFERENCE_METRIC_ALIASES = {("detection", "mAP"): "mAP50"}
REFERENCE_DIR = REPO_ROOT / "results" / "reference"

#: Columns that identify one line of statistics (one backbone on one task at one fraction, over seeds).
STAT_KEYS = ["task", "dataset", "metric", "method", "backbone", "fraction"]


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "ok"]


def percent(fraction: float) -> str:
    """0.05 -> "5 %", 0.025 -> "2.5 %"."""
    return f"{fraction * 100:.4g} %"


def lower_is_better(metric: str) -> bool:
    """True for error metrics (RMSE, MAE, AbsRel and their variants), False for scores."""
    return re.split(r"[_.]", metric, maxsplit=1)[0] in LOWER_IS_BETTER


def method_of(backbone: str) -> str:
    """The registry method of a backbone name; unregistered names fall back to the prefix before _vit/_resnet."""
    import backbones

    try:
        return backbones.get_spec(backbone).method
    except KeyError:  # a plugin backbone that is not importable here, or a renamed one
        return re.split(r"_(?:vit|resnet)", backbone, maxsplit=1)[0]


def arch_of(backbone: str) -> str:
    """The registry architecture of a backbone name, or "" when it is not registered here."""
    import backbones

    try:
        return backbones.get_spec(backbone).arch
    except KeyError:
        return ""


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows ready for analysis: ``method`` and ``arch`` filled in, one backbone label per checkpoint.

    A store written before the method column existed gets it from the backbone registry. When one
    backbone name carries several checkpoints, each becomes its own line (``name@hash``) instead of
    mixing their seeds.
    """
    frame = frame.copy()
    for column, lookup in (("method", method_of), ("arch", arch_of)):
        if column not in frame:
            frame[column] = None
        missing = frame[column].isna() | (frame[column].astype(str) == "")
        if missing.any():
            frame.loc[missing, column] = frame.loc[missing, "backbone"].map(lookup)
    if "checkpoint_hash" in frame:
        hashes = frame.groupby("backbone")["checkpoint_hash"].transform("nunique")
        several = hashes > 1
        frame.loc[several, "backbone"] = (
            frame.loc[several, "backbone"] + "@" + frame.loc[several, "checkpoint_hash"].astype(str).str[:8]
        )
    return frame


def primary_metrics(frame: pd.DataFrame, task_kwargs: dict | None = None) -> dict[str, str]:
    """task -> the metric its tables rank by: the task's ``primary_metric`` if stored, else the task's first metric."""
    from tasks import get_task

    chosen = {}
    for task, rows in _ok(frame).groupby("task", sort=False):
        try:
            metric = get_task(task, **(task_kwargs or {}).get(task, {})).primary_metric
        except Exception:  # a task registered by a plugin that is not importable here
            metric = None
        chosen[task] = metric if metric in set(rows["metric"]) else rows["metric"].iloc[0]
    return chosen


def bootstrap_ci(values, confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> tuple[float, float]:
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


def seed_stats(frame: pd.DataFrame, metrics: dict[str, str] | None = None, confidence: float = 0.95) -> pd.DataFrame:
    """One row per (task, dataset, metric, method, backbone, fraction): mean, std, bootstrap CI over seeds.

    ``metrics`` maps task -> metric to keep (e.g. ``primary_metrics``); None keeps every metric.
    A "seed" is one (split seed, training seed) pair; failed cells and NaN values are left out.
    """
    rows = _ok(prepare(frame))
    rows = rows[rows["value"].notna()]
    if metrics is not None:
        rows = rows[[metrics.get(t) == m for t, m in zip(rows["task"], rows["metric"])]]
    columns = [*STAT_KEYS, "arch", "n_seeds", "n_train", "mean", "std", "ci_low", "ci_high", "wall_time_s"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    records = []
    for key, group in rows.groupby(STAT_KEYS, sort=True):
        values = group["value"].to_numpy(dtype=float)
        low, high = bootstrap_ci(values, confidence)
        records.append({
            **dict(zip(STAT_KEYS, key)), "arch": group["arch"].iloc[0], "n_seeds": len(values),
            "n_train": int(group["n_train"].median()) if "n_train" in group else None,
            "mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            "ci_low": low, "ci_high": high,
            "wall_time_s": float(group["wall_time_s"].sum()) if "wall_time_s" in group else math.nan,
        })  # fmt: skip
    return pd.DataFrame.from_records(records, columns=columns)


def with_ranks(stats: pd.DataFrame) -> pd.DataFrame:
    """``stats`` plus ``rank``: 1 = best mean among backbones on the same task, dataset, metric and fraction.

    Direction-aware (``lower_is_better``); ties share the better rank ("min"), as in competition ranking.
    """
    stats = stats.copy()
    if stats.empty:
        stats["rank"] = pd.Series(dtype=float)
        return stats
    groups = stats.groupby(["task", "dataset", "metric", "fraction"], sort=False)["mean"]
    stats["rank"] = groups.transform(
        lambda s: s.rank(ascending=lower_is_better(stats.loc[s.index[0], "metric"]), method="min")
    )
    return stats


def label_savings(stats: pd.DataFrame) -> pd.DataFrame:
    """For each pretrained backbone and task: the smallest label fraction whose mean matches random init at 100 %.

    "Matches" is mean >= the baseline mean (<= for lower-is-better metrics). The baseline is the
    ``random_init`` backbone of the same architecture, else the only random_init backbone of the task.
    ``fraction_needed`` is NaN and ``result`` says "not reached" when no fraction matches.
    """
    columns = ["task", "dataset", "metric", "method", "backbone", "baseline", "baseline_mean", "fraction_needed",
               "mean_at_fraction", "labels_saved", "result", "caveat"]  # fmt: skip
    records = []
    for (task, dataset, metric), group in stats.groupby(["task", "dataset", "metric"], sort=True):
        full = group[(group["method"] == BASELINE_METHOD) & np.isclose(group["fraction"], BASELINE_FRACTION)]
        lower = lower_is_better(metric)
        for backbone, rows in group[group["method"] != BASELINE_METHOD].groupby("backbone", sort=True):
            base = {"task": task, "dataset": dataset, "metric": metric, "method": rows["method"].iloc[0],
                    "backbone": backbone}  # fmt: skip
            same_arch = full[full["arch"] == rows["arch"].iloc[0]] if rows["arch"].iloc[0] else full.iloc[0:0]
            baseline = same_arch if len(same_arch) == 1 else full if len(full) == 1 else None
            if baseline is None:
                reason = "no random-init baseline at 100 % labels" if full.empty else "several random-init baselines"
                records.append({**base, "result": reason})
                continue
            target = float(baseline["mean"].iloc[0])
            # A baseline that does better with fewer labels means the budget or seed noise, not labels, limits
            # it at 100 %; savings measured against it would be flattering, so the row says so.
            own = group[(group["backbone"] == baseline["backbone"].iloc[0]) & (group["fraction"] < BASELINE_FRACTION)]
            better = own[own["mean"] < target] if lower else own[own["mean"] > target]
            caveat = (f"random init scores better at {', '.join(percent(f) for f in better['fraction'])} than at 100 %"
                      if not better.empty else "")  # fmt: skip
            rows = rows.sort_values("fraction")
            matched = rows[rows["mean"] <= target] if lower else rows[rows["mean"] >= target]
            record = {**base, "baseline": baseline["backbone"].iloc[0], "baseline_mean": target, "caveat": caveat}
            if matched.empty:
                best = rows["mean"].min() if lower else rows["mean"].max()
                record["result"] = f"not reached (best {best:.2f} vs {target:.2f})"
            else:
                fraction = float(matched["fraction"].iloc[0])
                record.update(
                    fraction_needed=fraction,
                    mean_at_fraction=float(matched["mean"].iloc[0]),
                    labels_saved=1 - fraction,
                    result=f"{percent(fraction)} of labels (saves {percent(1 - fraction)})",
                )
            records.append(record)
    return pd.DataFrame.from_records(records, columns=columns)


def load_reference(directory: str | Path = REFERENCE_DIR) -> pd.DataFrame:
    """All published numbers under ``results/reference/*.csv`` (an empty frame when there are none)."""
    files = sorted(Path(directory).glob("*.csv"))
    if not files:
        return pd.DataFrame(columns=["source", "method", "backbone", "task", "dataset", "label_fraction", "metric",
                                     "value"])  # fmt: skip
    return pd.concat([pd.read_csv(f).assign(reference_file=f.name) for f in files], ignore_index=True)


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def published_vs_ours(stats: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Published rows next to our mean over seeds, matched by method, task, dataset, label fraction and metric.

    Datasets match when our registry name (e.g. ``potsdam``) is part of the published one (``ISPRS Potsdam``),
    ignoring case and punctuation; metrics match by name or through ``REFERENCE_METRIC_ALIASES``. The
    published backbone is shown, not matched: our runs use small ViTs where papers use ViT-B/ResNet-50.
    """
    columns = ["method", "task", "dataset", "fraction", "metric", "published", "published_backbone", "source",
               "ours", "ours_std", "n_seeds", "backbone", "delta"]  # fmt: skip
    records = []
    datasets = stats["dataset"].astype(str).map(_squash)
    for ref in reference.itertuples(index=False):
        same_dataset = np.array([d != "" and d in _squash(ref.dataset) for d in datasets], dtype=bool)
        metric = REFERENCE_METRIC_ALIASES.get((ref.task, ref.metric), ref.metric)
        ours = stats[
            (stats["method"] == ref.method) & (stats["task"] == ref.task) & (stats["metric"] == metric)
            & np.isclose(stats["fraction"].astype(float), float(ref.label_fraction))
            & same_dataset
        ]  # fmt: skip
        for row in ours.itertuples(index=False):
            records.append({
                "method": ref.method, "task": ref.task, "dataset": ref.dataset, "fraction": float(ref.label_fraction),
                "metric": ref.metric if metric == ref.metric else f"{ref.metric} (ours: {metric})",
                "published": float(ref.value), "published_backbone": ref.backbone, "source": ref.source,
                "ours": row.mean, "ours_std": row.std, "n_seeds": row.n_seeds, "backbone": row.backbone,
                "delta": row.mean - float(ref.value),
            })  # fmt: skip
    return pd.DataFrame.from_records(records, columns=columns)


def wall_times(frame: pd.DataFrame) -> pd.DataFrame:
    """Wall time per (task, backbone): cells, total and median seconds per cell (each cell counted once)."""
    cells = frame.drop_duplicates("config_hash") if "config_hash" in frame else frame
    if "wall_time_s" not in cells or cells.empty:
        return pd.DataFrame(columns=["task", "backbone", "cells", "total_s", "median_s"])
    grouped = cells.groupby(["task", "backbone"])["wall_time_s"]
    return grouped.agg(cells="size", total_s="sum", median_s="median").reset_index()
