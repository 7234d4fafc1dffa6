"""Figures of the summaries (``benchmark.summary``): the aggregate, a performance profile, the backbone x task
heatmap of paired differences to random init, and score against pretraining compute (Pareto)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is assumed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from scipy import stats as scipy_stats  # noqa: E402

from .aggregates import pareto_front  # noqa: E402


def aggregate_plot(summary: pd.DataFrame, path: str | Path) -> Path:
    """Write one PNG from ``summary.aggregate_scores``: per backbone the IQM of normalised scores with its 95 % CI
    (0 = random init, 1 = the reference), and beside it the probability of improvement over random init."""
    rows = summary[summary["iqm"].notna()].sort_values("iqm").reset_index(drop=True)
    if rows.empty:
        raise ValueError("no backbone has normalised scores to plot")
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 0.45 * len(rows) + 1.8), dpi=120, sharey=True)
    y = np.arange(len(rows))
    _interval(left, y, rows["iqm"], rows["iqm_low"], rows["iqm_high"])
    for x, text in ((0, "random init"), (1, "reference")):
        left.axvline(x, color="gray", lw=0.8, ls="--")
        left.text(x, len(rows) - 0.4, text, ha="center", fontsize=7, color="gray")
    left.set_yticks(y, rows["backbone"], fontsize=8)
    left.set_xlabel("IQM of normalised score (tasks x fractions x seeds)", fontsize=9)
    p = rows["p_improvement"].astype(float)
    have = p.notna().to_numpy()
    _interval(right, y[have], p[have], rows["p_low"][have], rows["p_high"][have])
    right.axvline(0.5, color="gray", lw=0.8, ls="--")
    right.set_xlim(-0.03, 1.03)
    right.set_xlabel("P(improvement over random init)", fontsize=9)
    for ax in (left, right):
        ax.grid(True, axis="x", alpha=0.3)
    n = int(rows["n_columns"].max())
    fig.suptitle(f"Aggregate over {n} (task, fraction) columns: point and 95 % stratified bootstrap CI", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _interval(ax, y, mid, low, high) -> None:
    mid, low, high = (np.asarray(v, dtype=float) for v in (mid, low, high))
    err = np.vstack([mid - np.where(np.isfinite(low), low, mid), np.where(np.isfinite(high), high, mid) - mid])
    ax.errorbar(mid, y, xerr=np.clip(err, 0, None), fmt="o", color="tab:blue", capsize=3, ms=5)


def performance_profile_plot(scores: pd.DataFrame, path: str | Path) -> Path:
    """Write one PNG from ``summary.normalized_scores``: per backbone, the share of its runs (tasks x fractions x
    seeds) whose normalised score exceeds tau, against tau (rliable's performance profile, without bands)."""
    scores = scores[scores["score"].notna()]
    if scores.empty:
        raise ValueError("no normalised scores to plot")
    low, high = float(scores["score"].min()), float(scores["score"].max())
    pad = 0.05 * max(high - low, 1e-9)
    taus = np.linspace(low - pad, high + pad, 300)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for backbone, own in scores.groupby("backbone", sort=True):
        survival = scipy_stats.ecdf(own["score"].to_numpy(float)).sf.evaluate(taus)
        ax.plot(taus, survival, label=backbone, drawstyle="steps-post")
    for x in (0, 1):
        ax.axvline(x, color="gray", lw=0.8, ls="--")
    ax.set_xlabel("normalised score tau (0 = random init, 1 = reference)")
    ax.set_ylabel("share of runs with score > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Performance profile over tasks x fractions x seeds", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def difference_heatmap(comparisons: pd.DataFrame, path: str | Path, value: str = "diff", low: str = "diff_low",
                       high: str = "diff_high") -> Path:  # fmt: skip
    """Write one PNG: backbones x tasks, each cell the paired difference to random init (e.g. of the
    label-efficiency AUC) and its 95 % CI, coloured only where the CI excludes 0.

    Blue = better than random init, red = worse, direction-aware (``lower``); the shade is the
    difference relative to the largest resolved one of its task, since tasks have different units.
    Grey: not resolved, or no difference (random init itself, a missing cell).
    """
    rows = comparisons[comparisons[value].notna()].copy()
    if rows.empty:
        raise ValueError("no paired differences to plot")
    several = rows["dataset"].nunique() > 1 or rows["protocol"].nunique() > 1
    rows["column"] = [f"{t}{f' {d} ({p})' if several else ''}\n{m} {'↓' if lo else '↑'}"
                      for t, d, p, m, lo in zip(rows["task"], rows["dataset"], rows["protocol"], rows["metric"],
                                                rows["lower"])]  # fmt: skip
    rows["gain"] = rows[value] * np.where(rows["lower"].astype(bool), -1.0, 1.0)
    rows["resolved"] = (rows[low] > 0) | (rows[high] < 0)
    scale = rows[rows["resolved"]].groupby("column")["gain"].apply(lambda g: g.abs().max())
    rows["shade"] = [g / scale[c] if r and scale.get(c, 0) > 0 else np.nan
                     for g, c, r in zip(rows["gain"], rows["column"], rows["resolved"])]  # fmt: skip
    backbones, columns = sorted(rows["backbone"].unique()), sorted(rows["column"].unique())
    shade = rows.pivot_table(index="backbone", columns="column", values="shade", aggfunc="first", dropna=False)
    shade = shade.reindex(index=backbones, columns=columns)
    fig, ax = plt.subplots(figsize=(1.9 * len(columns) + 2.5, 0.6 * len(backbones) + 1.6), dpi=120)
    cmap = colormaps["RdBu"].with_extremes(bad="#e6e6e6")
    ax.imshow(np.ma.masked_invalid(shade.to_numpy(float)), cmap=cmap, vmin=-1, vmax=1, aspect="auto")
    decimals = {c: 2 if g[value].abs().max() >= 10 else 3 for c, g in rows.groupby("column")}
    for r in rows.itertuples():
        i, j = backbones.index(r.backbone), columns.index(r.column)
        d = decimals[r.column]
        lo, hi = getattr(r, low), getattr(r, high)
        text = f"{getattr(r, value):+.{d}f}\n" + (f"[{lo:.{d}f}, {hi:.{d}f}]" if lo == lo and hi == hi else "(no CI)")
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if abs(r.shade) > 0.6 else "black")
    ax.set_xticks(range(len(columns)), columns, fontsize=8)
    ax.set_yticks(range(len(backbones)), backbones, fontsize=8)
    ax.set_title("Paired difference to random init [95 % CI]\ncoloured where the CI excludes 0 (blue = better)",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    return _save(fig, path)


def pareto_plot(points: pd.DataFrame, path: str | Path, x: str = "pretrain_flops", y: str = "auc",
                label: str = "backbone", lower_y: bool | None = None) -> Path:  # fmt: skip
    """Write one PNG: score (or AUC) against pretraining compute, one point per row, the Pareto front joined.

    ``lower_y`` defaults to the rows' ``lower``. Compute 0 (random init) stays on the axis (symlog);
    rows of unknown compute cannot be placed and are named under the plot instead.
    """
    if lower_y is None:
        lower_y = bool(points["lower"].iloc[0]) if "lower" in points and len(points) else False
    placed = np.isfinite(points[x].to_numpy(float)) & np.isfinite(points[y].to_numpy(float))
    known = points[placed]
    if known.empty:
        raise ValueError(f"no row with both {x!r} and {y!r} known to plot")
    front = pareto_front(known, x, y, lower_y)
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    ax.scatter(known[x], known[y], c=np.where(front, "tab:blue", "tab:gray"), zorder=3)
    for r in known.itertuples():
        ax.annotate(str(getattr(r, label)), (getattr(r, x), getattr(r, y)), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")  # fmt: skip
    line = known[front].sort_values(x)
    ax.plot(line[x], line[y], color="tab:blue", lw=1, drawstyle="steps-post", label="Pareto front")
    positive = known[x][known[x] > 0]
    if (known[x] == 0).any() and not positive.empty:
        ax.set_xscale("symlog", linthresh=float(positive.min()) / 2)
    elif not positive.empty and positive.max() / positive.min() > 100:
        ax.set_xscale("log")
    unknown = points[~placed]
    names = ", ".join(str(v) for v in unknown[label])
    ax.set_xlabel(f"{x} (pretraining compute)" + (f"\nnot placed (unknown): {names}" if names else ""), fontsize=9)
    ax.set_ylabel(f"{y} ({'lower' if lower_y else 'higher'} is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Score against pretraining compute (blue: not beaten by a cheaper encoder)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Write atomically (as ``plots._save``): a report embedding the PNG never reads half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
