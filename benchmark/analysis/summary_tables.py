"""Display tables of the summaries (``verdict``): the aggregate, label-efficiency AUC, one narrow table per task,
robustness and compute. Each is a ``tables.DisplayTable`` (Markdown, LaTeX, HTML and the terminal render it), and
each is narrow: a reader's first screen never scrolls sideways."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .aggregates import format_flops
from .intervals import CONFIDENCE_TEXT
from .rows import method_label, percent
from .tables import DisplayTable, decimals_for

MARKS = {"better": " ✓", "worse": " ✗"}


def _shown(method: str, backbone: str) -> str:
    """A backbone as a row label: ``supervised_vit_t16 (reference)`` for a reference method."""
    return backbone + (" (reference)" if method_label(method) != method else "")


def _interval(mean, low, high, decimals: int, sign: bool = False) -> str:
    if not _finite(mean):
        return "–"
    text = f"{mean:+.{decimals}f}" if sign else f"{mean:.{decimals}f}"
    return text + (f" [{low:.{decimals}f}, {high:.{decimals}f}]" if _finite(low) and _finite(high) else "")


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _task_title(task, dataset, protocol, metric, lower, several: bool) -> str:
    where = f" on {dataset} ({protocol})" if several else ""
    return f"{task}{where}: {metric} {'↓' if lower else '↑'}"


def aggregate_table(aggregate: pd.DataFrame, anchors: pd.DataFrame) -> DisplayTable:
    """Per backbone: IQM of its normalised scores [CI] and P(improvement over random init) [CI], best IQM bold."""
    title = "The aggregate across tasks (0 = random init, 1 = the reference)"
    if aggregate.empty or aggregate["iqm"].isna().all():
        reasons = sorted(set(anchors.loc[~anchors["usable"].astype(bool), "note"])) if not anchors.empty else []
        note = "no (task, fraction) column can be scaled" + (f": {'; '.join(reasons[:3])}" if reasons else "")
        return DisplayTable(title, pd.DataFrame(), None, note)
    rows = aggregate.sort_values("iqm", ascending=False).reset_index(drop=True)
    text = pd.DataFrame({
        "backbone": [_shown(m, b) for m, b in zip(rows["method"], rows["backbone"])],
        "IQM [95 % CI]": [_interval(v, lo, hi, 2) for v, lo, hi in zip(rows["iqm"], rows["iqm_low"], rows["iqm_high"])],
        "P(better than random init)": [_interval(v, lo, hi, 2) for v, lo, hi in
                                       zip(rows["p_improvement"], rows["p_low"], rows["p_high"])],
        "columns": rows["n_columns"].astype(int).astype(str),
    })  # fmt: skip
    bold = text.map(lambda _: False)
    bold.iloc[0, 1] = len(text) > 1
    reference = anchors.loc[anchors["usable"].astype(bool), "reference_backbone"] if not anchors.empty else []
    refs = ", ".join(sorted(set(map(str, reference)))) or "the best backbone"
    dropped = int((~anchors["usable"].astype(bool)).sum()) if not anchors.empty else 0
    note = (f"score per (task, fraction): 0 = random init, 1 = {refs} (the reference), direction-aware; IQM over "
            f"tasks x fractions x seeds [{CONFIDENCE_TEXT} stratified bootstrap CI]; P(better than random init): that "
            "a run beats a run of random init (Mann-Whitney), averaged over columns; columns every backbone ran"
            + (f"; {dropped} left out (their reference does not beat random init)" if dropped else "")
            + ("; no interval where every column has one run (nothing to resample)"
               if rows["iqm_low"].isna().any() else "")
            + "; definitions: docs/reports.md")  # fmt: skip
    return DisplayTable(title, text, bold, note)


def auc_tables(auc: pd.DataFrame) -> list[tuple[str, DisplayTable]]:
    """Backbone x task: the label-efficiency AUC [CI], and its paired difference to random init [CI] ✓/✗."""
    auc = auc[auc["auc"].notna() | auc["diff"].notna()] if not auc.empty else auc
    if auc.empty:
        return []
    several = auc["dataset"].nunique() > 1 or auc["protocol"].nunique() > 1
    auc = auc.assign(column=[_task_title(t, d, p, m, lo, several) for t, d, p, m, lo in
                             zip(auc["task"], auc["dataset"], auc["protocol"], auc["metric"], auc["lower"])],
                     row=[_shown(m, b) for m, b in zip(auc["method"], auc["backbone"])])  # fmt: skip
    decimals = {c: decimals_for(g["auc"].dropna()) for c, g in auc.groupby("column")}
    auc["level"] = [_interval(v, lo, hi, decimals[c]) for v, lo, hi, c in
                    zip(auc["auc"], auc["auc_low"], auc["auc_high"], auc["column"])]  # fmt: skip
    auc["versus"] = [_interval(v, lo, hi, decimals[c], sign=True) + MARKS.get(str(verdict), "")
                     if _finite(v) else "–" for v, lo, hi, c, verdict in
                     zip(auc["diff"], auc["diff_low"], auc["diff_high"], auc["column"], auc["verdict"])]  # fmt: skip
    fractions = "; ".join(sorted({f"{c.split(':')[0]}: {f}" for c, f in zip(auc["column"], auc["fractions"])}))
    note = ("area under the metric against log(label fraction), trapezoids, divided by the log range: the curve's "
            f"mean level in the metric's units; over the fractions every backbone ran ({fractions}); "
            f"[{CONFIDENCE_TEXT} CI, seeds x test tiles, one tile multiset shared by the whole curve]")
    level = auc.pivot_table(index="row", columns="column", values="level", aggfunc="first").fillna("–")
    versus = auc.pivot_table(index="row", columns="column", values="versus", aggfunc="first").fillna("–")
    verdicts = auc.pivot_table(index="row", columns="column", values="verdict", aggfunc="first")
    bold = (verdicts == "better").reindex_like(versus).fillna(False).astype(bool)
    for t in (level, versus, bold):
        t.index.name, t.columns.name = "backbone", None
    return [
        ("auc", DisplayTable("Label efficiency: AUC of each backbone", level, None, note)),
        ("auc-vs-random", DisplayTable(
            "Label efficiency: AUC minus random init's (the verdict's heatmap)", versus, bold,
            "same seeds and test tiles, fractions both ran; ✓ better and ✗ worse only where the CI excludes 0")),
    ]  # fmt: skip


def task_tables(stats: pd.DataFrame, paired: pd.DataFrame, auc: pd.DataFrame) -> list[tuple[str, DisplayTable]]:
    """One narrow table per (task, dataset, protocol): backbones x label fractions, ``mean [CI]`` with ✓ / ✗
    where the paired difference to random init is resolved at that fraction, and the AUC."""
    out = []
    keys = ["task", "dataset", "protocol", "metric"]
    several = stats["dataset"].nunique() > 1 or stats["protocol"].nunique() > 1 if not stats.empty else False
    for key, lines in stats.groupby(keys, sort=True):
        lower = bool(lines["lower"].iloc[0])
        d = decimals_for(lines["mean"])
        verdicts = {}
        if not paired.empty:
            mine = paired[(paired[keys] == pd.Series(key, index=keys)).all(axis=1)]
            verdicts = {(b, f): v for b, f, v in zip(mine["backbone"], mine["fraction"], mine["verdict"])}
        lines = lines.assign(row=[_shown(m, b) for m, b in zip(lines["method"], lines["backbone"])],
                             column=[percent(f) for f in lines["fraction"]])  # fmt: skip
        marks = [MARKS.get(verdicts.get((b, f)), "") for b, f in zip(lines["backbone"], lines["fraction"])]
        lines["text"] = [_interval(r.mean, r.ci_low, r.ci_high, d) + m for r, m in zip(lines.itertuples(), marks)]
        order = [percent(f) for f in sorted(lines["fraction"].unique())]
        text = lines.pivot_table(index="row", columns="column", values="text", aggfunc="first")[order].fillna("–")
        means = lines.pivot_table(index="row", columns="column", values="mean", aggfunc="first")[order]
        best = means.min() if lower else means.max()
        bold = means.eq(best) & means.notna() & (means.notna().sum() > 1)
        if not auc.empty:
            own = auc[(auc[keys] == pd.Series(key, index=keys)).all(axis=1)].assign(
                row=lambda a: [_shown(m, b) for m, b in zip(a["method"], a["backbone"])]).set_index("row")
            if own["auc"].notna().any():
                text["AUC"] = [_interval(*own.loc[r, ["auc", "auc_low", "auc_high"]], d) if r in own.index else "–"
                               for r in text.index]  # fmt: skip
                bold["AUC"] = False
        text.index.name, text.columns.name, bold.index.name, bold.columns.name = "backbone", None, "backbone", None
        seeds = "/".join(str(int(n)) for n in sorted(lines["n_seeds"].unique()))
        note = (f"mean over {seeds} seed(s) [{CONFIDENCE_TEXT} CI, seeds x test tiles]; ✓ / ✗ better / worse than "
                "random init at that fraction where the paired CI excludes 0; best mean per column in bold")
        out.append((f"task-{'-'.join(map(str, key[:3]))}",
                    DisplayTable(_task_title(*key, lower, several), text, bold.astype(bool), note)))  # fmt: skip
    return out


def robustness_tables(drops: pd.DataFrame, least: pd.DataFrame, skipped: list[str]) -> list[tuple[str, DisplayTable]]:
    """Per (task, dataset, protocol): backbones x (corruption, severity) at the task's largest label fraction,
    ``drop [CI]`` from clean (positive = worse), the least-degraded backbone of each column in bold; then which
    backbone degrades least, with its margin over the runner-up."""
    if drops.empty:
        return []
    out = []
    keys = ["task", "dataset", "protocol", "metric"]
    several = drops["dataset"].nunique() > 1 or drops["protocol"].nunique() > 1
    largest = drops.groupby(keys)["fraction"].transform("max")
    drops = drops[np.isclose(drops["fraction"], largest)]
    for key, group in drops.groupby(keys, sort=True):
        d = decimals_for(group["clean"].dropna())
        group = group.assign(row=[_shown(m, b) for m, b in zip(group["method"], group["backbone"])],
                             column=[f"{c} {int(s)}" for c, s in zip(group["corruption"], group["severity"])])
        star = {"degrades": " *", "improves": " *"}
        group["text"] = [_interval(r.drop, r.ci_low, r.ci_high, d, sign=True) + star.get(r.verdict, "")
                         if _finite(r.drop) else str(r.verdict) for r in group.itertuples()]  # fmt: skip
        text = group.pivot_table(index="row", columns="column", values="text", aggfunc="first").fillna("–")
        drop = group.pivot_table(index="row", columns="column", values="drop", aggfunc="first")
        clean = group.groupby("row")["clean"].first()
        bold = drop.eq(drop.min()) & drop.notna() & (drop.notna().sum() > 1)
        text.insert(0, "clean", [f"{clean[r]:.{d}f}" if _finite(clean.get(r)) else "–" for r in text.index])
        bold.insert(0, "clean", False)
        for t in (text, bold):
            t.index.name, t.columns.name = "backbone", None
        note = (f"at {percent(group['fraction'].iloc[0])} labels: drop of {key[3]} from the clean test of the same "
                f"trained cells (positive = worse), [{CONFIDENCE_TEXT} CI, seeds x test tiles, paired]; * the CI "
                "excludes 0; bold: degrades least")  # fmt: skip
        title = f"Robustness, {_task_title(*key, bool(group['lower'].iloc[0]), several)}"
        out.append((f"robustness-{'-'.join(map(str, key[:3]))}", DisplayTable(title, text, bold.astype(bool), note)))
    if len(least):
        least = least[np.isclose(least["fraction"], least.groupby(keys)["fraction"].transform("max"))]
    if not least.empty:
        margin = [_interval(m, lo, hi, decimals_for([abs(m)]), sign=True) for m, lo, hi in
                  zip(least["margin"], least["ci_low"], least["ci_high"])]  # fmt: skip
        table = pd.DataFrame({"task": least["task"], "corruption": [f"{c} {int(s)}" for c, s in
                                                                    zip(least["corruption"], least["severity"])],
                              "degrades least": least["best"], "runner-up": least["runner_up"].fillna("–"),
                              "margin [95 % CI]": margin,
                              "resolved": least["resolved"].map({True: "yes", False: "no"})})  # fmt: skip
        note = ("margin = the runner-up's drop minus the least-degraded backbone's, over the seeds both share, one "
                "tile multiset for the four passes; resolved = its CI excludes 0")  # fmt: skip
        if skipped:
            note += "; not applied: " + "; ".join(skipped)
        out.append(("robustness-least", DisplayTable("Which backbone degrades least", table.reset_index(drop=True),
                                                     None, note)))  # fmt: skip
    return out


def compute_table(compute: pd.DataFrame) -> DisplayTable:
    """Per backbone: pretraining FLOPs and time, encoder parameters (per modality), adaptation cost, the IQM."""
    title = "Compute behind every row"
    if compute.empty:
        return DisplayTable(title, pd.DataFrame())
    modalities = sorted(c[len("encoder_params_"):] for c in compute if c.startswith("encoder_params_")
                        and c != "encoder_params_shared")  # fmt: skip

    def params(r) -> str:
        if not _finite(r.get("encoder_params")):
            return "–"
        own = ", ".join(f"{m} {r[f'encoder_params_{m}'] / 1e6:.3g}" for m in modalities
                        if _finite(r.get(f"encoder_params_{m}")))  # fmt: skip
        return f"{r['encoder_params'] / 1e6:.3g} M" + (f" (own input layers: {own} M)" if own else "")

    text = pd.DataFrame({
        "backbone": compute["backbone"],
        "pretraining FLOPs": [format_flops(v) for v in compute["pretrain_flops"]],
        "pretraining time": [f"{v / 60:.1f} min" if _finite(v) else "–" for v in compute["pretrain_wall_s"]],
        "encoder parameters": [params(r) for _, r in compute.iterrows()],
        "adaptation cells": [str(int(v)) if _finite(v) else "–" for v in compute.get("adapt_cells", [])],
        "adaptation time": [f"{v / 60:.1f} min" if _finite(v) else "–" for v in compute.get("adapt_s", [])],
        "adaptation FLOPs": [format_flops(v) for v in compute.get("adapt_flops", [])],
        "IQM": [_interval(v, lo, hi, 2) for v, lo, hi in zip(*(compute.get(c, [math.nan] * len(compute))
                                                               for c in ("iqm", "iqm_low", "iqm_high")))],
    })  # fmt: skip
    note = ("pretraining: matmul/conv FLOPs of one step (torch's FlopCounterMode) x iterations x processes, from "
            "each encoder's metadata ('unknown' where it was not counted, never free; random init costs 0); time = "
            "wall time of its last training segment; adaptation: every clean cell of the backbone, its training "
            "seconds (wall_time_s) and step FLOPs x iterations (under the frozen protocol the probe's; the shared "
            "feature pass is not counted)")  # fmt: skip
    return DisplayTable(title, text, None, note)


def fold_savings(savings: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """(the savings a CI resolves, either way; one line naming the rest): unresolved savings fold into a line."""
    unresolved = savings["result"].astype(str).str.startswith(("not resolved", "no paired", "no tile"))
    rest = savings[unresolved]
    if rest.empty:
        return savings, ""
    by_task = rest.groupby("task", sort=True)["backbone"].apply(lambda b: ", ".join(sorted(b)))
    line = "not resolved at this budget: " + "; ".join(f"{t}: {b}" for t, b in by_task.items())
    return savings[~unresolved], line
