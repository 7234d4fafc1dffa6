"""Report figures: label-efficiency curves (metric vs label fraction, log x, +- std bands) and label savings."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is assumed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmark.running.rundir import atomic_write  # noqa: E402

from .intervals import CONFIDENCE_TEXT  # noqa: E402
from .rows import lower_is_better, method_label  # noqa: E402


def label_efficiency_plot(stats: pd.DataFrame, task: str, metric: str, path: str | Path) -> Path:
    """Write one PNG from ``analysis.seed_stats`` lines of one task and protocol: a line per backbone, its
    95 % CI as a band (seeds and test tiles resampled together), the fractions on a log axis."""
    rows = stats[(stats["task"] == task) & (stats["metric"] == metric)]
    if rows.empty:
        raise ValueError(f"no finished cells for task {task!r} and metric {metric!r} to plot")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for (method, backbone), group in rows.groupby(["method", "backbone"]):
        group = group.sort_values("fraction")
        x = group["fraction"].to_numpy() * 100
        label = backbone + (" (reference)" if method_label(method) != method else "")
        line = ax.plot(x, group["mean"], marker="o", label=label, linestyle="--" if "reference" in label else "-")[0]
        low, high = group["ci_low"].to_numpy(dtype=float), group["ci_high"].to_numpy(dtype=float)
        ok = np.isfinite(low) & np.isfinite(high)
        if ok.any():
            ax.fill_between(x[ok], low[ok], high[ok], color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    fractions = sorted(rows["fraction"].unique() * 100)
    ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
    ax.minorticks_off()
    seeds = int(rows["n_seeds"].max())
    dataset = ", ".join(sorted(rows["dataset"].unique()))
    protocol = ", ".join(sorted(rows["protocol"].unique())) if "protocol" in rows else ""
    ax.set_xlabel("training labels used (%)")
    ax.set_ylabel(f"{metric} (test, {'lower' if lower_is_better(metric, task) else 'higher'} is better)")
    ax.set_title(f"{task} on {dataset} ({protocol}): mean, {CONFIDENCE_TEXT} CI band, {seeds} seed(s)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def label_savings_plot(savings: pd.DataFrame, path: str | Path) -> Path:
    """Write one PNG: per task and pretrained backbone, the label fraction that matches random init at 100 %.

    A bar ends at the fraction needed (log axis, shorter is better); "not reached" rows get an empty
    bar across the whole axis, hatched, so a missing match is never mistaken for a small one.
    """
    rows = savings[savings["baseline"].notna()] if "baseline" in savings else savings.iloc[0:0]
    if rows.empty:
        raise ValueError("no pretrained backbone with a random-init baseline at 100 % labels to plot")
    rows = rows.sort_values(["task", "dataset", "backbone"]).reset_index(drop=True)
    several = rows["dataset"].nunique() > 1
    labels = [
        f"{t}{f' ({d})' if several else ''}: {b}" for t, d, b in zip(rows["task"], rows["dataset"], rows["backbone"])
    ]
    smallest = min(0.01, rows["fraction_needed"].min(skipna=True) if rows["fraction_needed"].notna().any() else 1.0)
    left = smallest * 100 / 2
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.6), dpi=120)
    for i, row in rows.iterrows():
        if row["fraction_needed"] == row["fraction_needed"]:
            ax.barh(i, row["fraction_needed"] * 100 - left, left=left, color="tab:blue")
            ax.text(row["fraction_needed"] * 100 * 1.08, i, f"{row['fraction_needed'] * 100:.4g} %", va="center",
                    fontsize=8)  # fmt: skip
        else:
            ax.barh(i, 100 - left, left=left, fill=False, hatch="//", edgecolor="tab:gray")
            ax.text(left * 1.1, i, "not reached", va="center", fontsize=8, color="tab:red",
                    bbox=dict(facecolor="white", edgecolor="none", pad=1))  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlim(left, 200)
    ticks = [t for t in (0.1, 0.5, 1, 2, 5, 10, 25, 50, 100) if t >= left]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(100, color="black", lw=0.8)
    ax.set_xlabel("labels (%) needed to match random init at 100 % (log; shorter is better)", fontsize=9)
    ax.set_title("Label savings of pretraining (mean over seeds)", fontsize=10)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Write atomically: a reader (or a report embedding the PNG) never sees half a file."""
    path = Path(path)
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)
    return path
