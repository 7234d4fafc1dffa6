"""The result rows as the analysis reads them: directions, methods, primary metrics, and what each cell measured.

Everything here is plain pandas on the long-format rows (one per cell and metric, ``benchmark.running.store``)
plus the per-tile statistics each cell saved (``benchmark.running.tilestats``). ``cell_intervals`` gives each
cell's interval of its primary metric, computed here, when reading, never stored by the cell.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.running.store import CLEAN, is_corrupted  # noqa: F401  (what a clean row is: the store says)
from benchmark.running.tilestats import load_tile_stats

from .intervals import CONFIDENCE, tile_ci

#: The registry method whose backbones are the "no pretraining" baseline of comparisons and label savings.
BASELINE_METHOD = "random_init"
#: Methods that are references, not self-supervised methods: shown as such in every table.
REFERENCE_METHODS = {"supervised": "supervised on pool labels (reference)", "timm": "ImageNet supervised (reference)"}
#: The fraction at which the baseline is taken ("random init with all training labels").
BASELINE_FRACTION = 1.0
#: Columns that identify one line of statistics (one backbone on one task at one fraction, over seeds).
STAT_KEYS = ["task", "dataset", "protocol", "metric", "method", "backbone", "fraction"]
#: Columns that pair two cells: the same split and training seed (the rest of STAT_KEYS fixed per comparison).
SEED_KEYS = ["split_seed", "train_seed"]


def clean_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of clean test passes: the only rows any table other than robustness may count."""
    return frame[~is_corrupted(frame)]


def corrupted_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of corrupted test passes (``corruption`` and ``severity`` set)."""
    return frame[is_corrupted(frame)]


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    """Finished clean rows: a corrupted test pass is never a row of the clean tables (robustness reads it apart)."""
    frame = clean_rows(frame)
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


def cell_intervals(frame: pd.DataFrame, run_dir: str | Path | None, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """``frame`` with ``ci_low`` / ``ci_high`` of each cell's primary metric: a bootstrap over its test tiles
    (``intervals.tile_ci``) from the statistics the cell saved, NaN for other metrics and where none were saved.

    Stores written before intervals moved to reading time carry these columns already; they are recomputed
    where the tile statistics exist and kept where they do not.
    """
    frame = frame.copy()
    for column in ("ci_low", "ci_high"):
        if column not in frame:
            frame[column] = math.nan
    if run_dir is None or frame.empty:
        return frame
    metrics = primary_metrics(frame)
    for i, row in frame.iterrows():
        if row.get("status") != "ok" or metrics.get(row["task"]) != row["metric"]:
            continue
        resample = _resampler(row["task"])
        stats = load_tile_stats(run_dir, str(row["config_hash"])) if resample is not None else None
        if stats is not None:
            frame.loc[i, ["ci_low", "ci_high"]] = tile_ci(resample, stats, confidence)
    return frame
