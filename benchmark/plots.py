"""Label-efficiency curves: a metric against the label fraction (log x), mean and spread over seeds."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is assumed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .tables import ok_rows  # noqa: E402


def label_efficiency_plot(frame: pd.DataFrame, task: str, metric: str, path: str | Path) -> Path:
    """Write one PNG: a line per backbone, a band of +- one std over seeds, the fractions on a log axis."""
    rows = ok_rows(frame, metric)
    rows = rows[rows["task"] == task]
    if rows.empty:
        raise ValueError(f"no finished cells for task {task!r} and metric {metric!r} to plot")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for backbone, group in rows.groupby("backbone"):
        stats = group.groupby("fraction")["value"].agg(["mean", "std"]).sort_index()
        x = stats.index.to_numpy() * 100
        line = ax.plot(x, stats["mean"], marker="o", label=backbone)[0]
        ax.fill_between(x, stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0),
                        color=line.get_color(), alpha=0.2)  # fmt: skip
    ax.set_xscale("log")
    fractions = sorted(rows["fraction"].unique() * 100)
    ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
    ax.minorticks_off()
    seeds = rows.groupby(["backbone", "fraction"]).size().max()
    dataset = ", ".join(sorted(rows["dataset"].unique())) if "dataset" in rows else ""
    ax.set_xlabel("training labels used (%)")
    ax.set_ylabel(f"{metric} (test)")
    ax.set_title(f"{task} on {dataset}: mean ± std over {seeds} seed(s)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
