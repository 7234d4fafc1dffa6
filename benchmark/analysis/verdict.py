"""The summaries a reader looks for first, computed from a run directory when its report is made: label-efficiency
AUC, the normalised aggregate across tasks, robustness to corruptions and the compute behind every backbone.

``summarise`` applies the pure functions of ``auc`` and ``aggregates`` to a run's rows (each task's primary
metric) and the tile statistics its cells saved; nothing here is stored by a cell, so a new definition changes a
report, never a cell (``rsbench report RUN_DIR`` on an existing run gives it all, with no retraining).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pandas as pd

from benchmark.running.rundir import RunDir
from benchmark.running.tilestats import load_tile_stats

from .aggregates import (
    adaptation_compute,
    aggregate_scores,
    least_degraded,
    normalization_anchors,
    normalized_scores,
    pretraining_compute,
    robustness_drops,
)
from .auc import label_efficiency_auc
from .rows import BASELINE_METHOD, _primary_rows, clean_rows, corrupted_rows


@dataclass
class Summaries:
    """The frames behind the report's verdict, label-efficiency, robustness and compute sections."""

    auc: pd.DataFrame = field(default_factory=pd.DataFrame)
    anchors: pd.DataFrame = field(default_factory=pd.DataFrame)
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    aggregate: pd.DataFrame = field(default_factory=pd.DataFrame)
    robustness: pd.DataFrame = field(default_factory=pd.DataFrame)
    least: pd.DataFrame = field(default_factory=pd.DataFrame)
    compute: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: corruptions the sweep skipped for a task, and why (from the cells' provenance)
    skipped: list[str] = field(default_factory=list)


def tile_stats_reader(run_dir: str | Path | None):
    """``config hash -> tile statistics or None``, each file read once (the summaries read a cell many times)."""
    if run_dir is None:
        return None
    run = RunDir(run_dir)

    @cache
    def stats_of(config_hash: str):
        return load_tile_stats(run, config_hash)

    return stats_of


def summarise(frame: pd.DataFrame, metrics: dict[str, str], run_dir: str | Path | None) -> Summaries:
    """Every summary of a run from its prepared rows (``rows.prepare``: clean and corrupted) and ``run_dir``'s
    saved tile statistics; ``metrics`` maps each task to the metric its tables rank by."""
    primary = _primary_rows(frame, metrics)
    if primary.empty:
        return Summaries()
    stats_of = tile_stats_reader(run_dir)
    clean = clean_rows(primary)
    out = Summaries(auc=label_efficiency_auc(clean, stats_of), anchors=normalization_anchors(clean))
    out.scores = normalized_scores(clean, out.anchors)
    out.aggregate = aggregate_scores(out.scores)
    if not corrupted_rows(primary).empty:
        out.robustness = robustness_drops(primary, stats_of)
        out.least = least_degraded(primary, stats_of)
    out.skipped = skipped_corruptions(run_dir) if run_dir is not None else []
    out.compute = compute_by_backbone(frame, run_dir, out.aggregate)
    return out


def skipped_corruptions(run_dir: str | Path, max_cells: int = 5000) -> list[str]:
    """The notes of corruptions a sweep did not apply (e.g. a missing DSM for an RGB-only task), one each."""
    notes: dict[str, None] = {}
    for path in RunDir(run_dir).all_provenance()[:max_cells]:
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for note in (record.get("corruptions") or {}).get("skipped", []):
            notes.setdefault(str(note), None)
    return list(notes)


def encoder_metadata(frame: pd.DataFrame, run_dir: str | Path | None) -> dict[str, dict]:
    """Per backbone (as the rows name it): what is known of its pretraining. The run directory's exported
    encoders (``pretrain/*/encoder.pth``, matched by checkpoint hash) first, then what the rows carry (their
    ``pretrain`` column: also for checkpoints made elsewhere); random init has no pretraining."""
    from backbones import file_hash
    from backbones.checkpoint import read_meta

    exported = {}
    for path in RunDir(run_dir).encoders() if run_dir is not None else []:
        try:
            exported[file_hash(path)] = read_meta(path)
        except Exception:  # a foreign or truncated file: its rows' own metadata still count
            continue
    out = {}
    for backbone, own in clean_rows(frame).groupby("backbone", sort=True):
        meta = {}
        for chash in own["checkpoint_hash"].dropna().unique() if "checkpoint_hash" in own else ():
            meta.update(exported.get(str(chash), {}))
        for text in own["pretrain"].dropna() if "pretrain" in own else ():
            if text:
                meta.update(json.loads(text))
                break
        meta.update(method=str(own["method"].iloc[0]), arch=str(own["arch"].iloc[0]) if "arch" in own else "")
        out[backbone] = meta
    return out


def compute_by_backbone(frame: pd.DataFrame, run_dir: str | Path | None, aggregate: pd.DataFrame) -> pd.DataFrame:
    """One row per backbone: pretraining FLOPs and wall time, the encoder's parameters (total and per modality:
    the most any of its cells fed it), adaptation cells, seconds and training FLOPs over all its clean cells, and
    its aggregate IQM (the Pareto plot's two axes)."""
    pretraining = pretraining_compute(encoder_metadata(frame, run_dir)).rename(columns={"name": "backbone"})
    adaptation = adaptation_compute(frame)
    if pretraining.empty:
        return pd.DataFrame()
    params = [c for c in adaptation.columns if c.startswith("encoder_params")]
    records = []
    for backbone, own in adaptation.groupby("backbone", sort=True):
        records.append({
            "backbone": backbone, "adapt_cells": int(own["cells"].sum()),
            "adapt_s": own["adapt_s_total"].sum(min_count=1), "adapt_flops": own["train_flops_total"].sum(min_count=1),
            **{c: own[c].max() for c in params},
        })  # fmt: skip
    table = pretraining.merge(pd.DataFrame(records), on="backbone", how="left")
    if not aggregate.empty:
        table = table.merge(aggregate[["backbone", "iqm", "iqm_low", "iqm_high"]], on="backbone", how="left")
    return table


def equal_compute_note(compute: pd.DataFrame, tolerance: float = 0.1) -> str:
    """Which pretrained encoders got the same compute (total FLOPs within ``tolerance`` of each other)."""
    known = compute[(compute["method"] != BASELINE_METHOD) & compute["pretrain_flops"].gt(0)]
    known = known.sort_values("pretrain_flops")
    if len(known) < 2:
        return ""
    groups, current = [], [known.iloc[0]]
    for _, row in known.iloc[1:].iterrows():
        if row["pretrain_flops"] <= current[0]["pretrain_flops"] * (1 + tolerance):
            current.append(row)
        else:
            groups.append(current)
            current = [row]
    groups.append(current)
    least = float(known["pretrain_flops"].iloc[0])
    parts = [" = ".join(str(r["backbone"]) for r in g) + f" ({float(g[0]['pretrain_flops']) / least:.2g}x)"
             for g in groups]  # fmt: skip
    return ("equal compute (pretraining FLOPs within 10 %): " + " < ".join(parts) + "; a method ahead of another "
            "with fewer FLOPs is ahead at equal compute, one ahead with more is not shown to be")


def is_finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
