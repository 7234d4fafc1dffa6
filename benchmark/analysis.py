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
from .stats import PairedDifference, paired_difference

#: The registry method whose backbones are the "no pretraining" baseline of comparisons and label savings.
BASELINE_METHOD = "random_init"
#: Methods that are references, not self-supervised methods: shown as such in every table.
REFERENCE_METHODS = {"supervised": "supervised on pool labels (reference)", "timm": "ImageNet supervised (reference)"}
#: The fraction at which the baseline is taken ("random init with all training labels").
BASELINE_FRACTION = 1.0
#: Reference metric names that mean one of ours under a different name, per task. From
#: shared/docs/paper-numbers.md: detection papers report VOC-style mAP at IoU 0.5 as "mAP"; our "mAP" is COCO's.
REFERENCE_METRIC_ALIASES = {("detection", "mAP"): "mAP50"}
REFERENCE_DIR = REPO_ROOT / "results" / "reference"

#: Columns that identify one line of statistics (one backbone on one task at one fraction, over seeds).
STAT_KEYS = ["task", "dataset", "protocol", "metric", "method", "backbone", "fraction"]
#: Columns that pair two cells: the same split and training seed (the rest of STAT_KEYS fixed per comparison).
SEED_KEYS = ["split_seed", "train_seed"]


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "ok"]


def percent(fraction: float) -> str:
    """0.05 -> "5 %", 0.025 -> "2.5 %"."""
    return f"{fraction * 100:.4g} %"


def lower_is_better(metric: str, task: str) -> bool:
    """Direction of ``metric`` as ``task`` declares it (``Task.metrics``); an undeclared metric is an error."""
    from tasks import list_tasks, task_class

    if task not in list_tasks():
        raise KeyError(f"task {task!r} is not registered here, so the direction of {metric!r} is unknown; "
                       "name the plugin that registers it in $RSBENCH_PLUGINS")  # fmt: skip
    return not task_class(task).higher_is_better(metric)


def method_label(method: str) -> str:
    """``supervised`` -> ``supervised on pool labels (reference)``; self-supervised methods unchanged."""
    return REFERENCE_METHODS.get(method, method)


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
    frame["lower"] = _directions(frame)
    if "protocol" not in frame:
        frame["protocol"] = "finetune"
    frame["protocol"] = frame["protocol"].fillna("finetune")
    if "checkpoint_hash" in frame:
        hashes = frame.groupby("backbone")["checkpoint_hash"].transform("nunique")
        several = hashes > 1
        frame.loc[several, "backbone"] = (
            frame.loc[several, "backbone"] + "@" + frame.loc[several, "checkpoint_hash"].astype(str).str[:8]
        )
    return frame


def _directions(frame: pd.DataFrame) -> list[bool]:
    """Per row: lower is better? From the row's own ``higher_is_better`` (written when the cell ran), else
    from the task's declaration (older stores)."""
    n = len(frame)
    stored = frame["higher_is_better"].tolist() if "higher_is_better" in frame else [None] * n
    status = frame["status"].tolist() if "status" in frame else ["ok"] * n
    cache: dict[tuple[str, str], bool] = {}
    out = []
    for task, metric, hib, st in zip(frame["task"], frame["metric"], stored, status):
        if hib is not None and hib == hib:
            out.append(not bool(hib))
        elif st != "ok":
            out.append(False)  # a failed cell's placeholder row: no value, never ranked
        else:
            if (task, metric) not in cache:
                cache[task, metric] = lower_is_better(metric, task)
            out.append(cache[task, metric])
    return out


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


def seed_stats(frame: pd.DataFrame, metrics: dict[str, str] | None = None, confidence: float = 0.95,
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


def _primary_rows(rows: pd.DataFrame, metrics: dict[str, str]) -> pd.DataFrame:
    """The rows of each task's chosen metric (a boolean mask: an empty list would select columns)."""
    keep = np.array([metrics.get(t) == m for t, m in zip(rows["task"], rows["metric"])], dtype=bool)
    return rows[keep]


def _resampler(task: str):
    """The task's resampled primary metric (``Task.resample_primary``), or None for a task not registered here."""
    from tasks import get_task

    try:
        return get_task(task).resample_primary
    except Exception:
        return None


def _tile_stats_of(run_dir, rows: pd.DataFrame, order: list[tuple] | None = None) -> list[dict] | None:
    """Tile statistics of the cells behind ``rows`` (one per config hash, in ``order`` of seed pairs).

    None if any cell lacks them."""
    from .tilestats import load_tile_stats

    cells = rows.drop_duplicates("config_hash").set_index(SEED_KEYS)
    keys = order if order is not None else list(cells.index)
    out = []
    for k in keys:
        if k not in cells.index:
            return None
        stats = load_tile_stats(run_dir, str(cells.loc[k, "config_hash"]))
        if stats is None:
            return None
        out.append(stats)
    return out or None


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
                       confidence: float = 0.95) -> pd.DataFrame:  # fmt: skip
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
                  confidence: float = 0.95) -> pd.DataFrame:  # fmt: skip
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
                          confidence: float = 0.95) -> pd.DataFrame:  # fmt: skip
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
