"""pandas views of the long-format result rows."""

from __future__ import annotations

import pandas as pd


def ok_rows(frame: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Rows whose cell finished, optionally of one metric."""
    rows = frame[frame["status"] == "ok"]
    return rows if metric is None else rows[rows["metric"] == metric]


def seed_table(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (backbone, fraction, n_train), one column per seed, plus mean and std over seeds.

    Columns are named by training seed; the split seed is added when a sweep uses several.
    """
    rows = ok_rows(frame, metric).copy()
    if rows.empty:
        return pd.DataFrame()
    several_splits = rows["split_seed"].nunique() > 1
    rows["seed"] = [
        f"seed {t}" + (f" split {s}" if several_splits else "") for t, s in zip(rows["train_seed"], rows["split_seed"])
    ]
    table = rows.pivot_table(index=["backbone", "fraction", "n_train"], columns="seed", values="value", aggfunc="first")
    seeds = table.columns.tolist()
    table["mean"] = table[seeds].mean(axis=1)
    table["std"] = table[seeds].std(axis=1, ddof=1)
    table.columns.name = None
    return table.round(2)


def summary_table(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean +- std over seeds: backbones as rows, fractions as columns."""
    rows = ok_rows(frame, metric)
    if rows.empty:
        return pd.DataFrame()
    stats = rows.groupby(["task", "backbone", "fraction"])["value"].agg(["mean", "std", "count"])
    text = stats.apply(lambda r: f"{r['mean']:.2f} ± {r['std']:.2f}" if r["count"] > 1 else f"{r['mean']:.2f}", axis=1)
    return text.unstack("fraction")


def failed_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells that failed, with their reason."""
    cols = ["backbone", "task", "fraction", "split_seed", "train_seed", "status"]
    return frame.loc[frame["status"] != "ok", cols].drop_duplicates()
