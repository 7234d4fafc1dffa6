"""Report-time summaries across tasks: the normalised aggregate (IQM, stratified bootstrap, probability of
improvement, as rliable defines them), robustness under test-time corruptions, and compute (adaptation,
pretraining, the Pareto front). Pure functions on the result rows; see ``auc`` for the conventions and why
rliable's definitions are reproduced with scipy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from .auc import (
    COLUMN_KEYS,
    GROUP_KEYS,
    StatsOf,
    _joint_stats,
    _linear_resample,
    _ok,
    _seed_pairs,
    _select,
    clean_rows,
    corrupted_rows,
    task_resampler,
)
from .comparisons import baseline_for
from .intervals import CONFIDENCE, N_RESAMPLES, SEED, Resample, paired_difference
from .rows import BASELINE_METHOD, REFERENCE_METHODS, SEED_KEYS

# ---- 2. an aggregate across tasks ----


def normalization_anchors(rows: pd.DataFrame, reference_methods: Sequence[str] = tuple(REFERENCE_METHODS)
                          ) -> pd.DataFrame:  # fmt: skip
    """Per (task, dataset, protocol, metric, fraction) and random-init backbone: the two anchors of the scale.

    0 is random init (mean over seeds, same fraction); 1 is the reference: the best (direction-aware)
    backbone whose method is a reference (``reference_methods``: the supervised control on synthetic
    data, an ImageNet-supervised checkpoint on real data), else the best backbone of the column.

    Why the control is 1 rather than the best method: the question is how much of what labels can
    teach an encoder a self-supervised method recovers, and the control is the protocol's own yardstick
    of that (the positive control of docs/reports.md). It does not move when a method is added or
    dropped, so a score is comparable across reports, whereas "the best backbone" is always 1 and can
    only rank. A column where the reference does not beat random init cannot be scaled (the protocol
    is broken there): ``usable`` is False and ``note`` says why.
    """
    rows = _ok(clean_rows(rows))
    columns = [*COLUMN_KEYS, "lower", "random_backbone", "random_mean", "reference_backbone", "reference_mean",
               "reference_kind", "usable", "note"]  # fmt: skip
    records = []
    for key, column in rows.groupby(COLUMN_KEYS, sort=True):
        lower = bool(column["lower"].iloc[0])
        means = column.groupby("backbone")["value"].mean()
        methods = column.groupby("backbone")["method"].first()
        randoms = sorted(methods.index[methods == BASELINE_METHOD])
        refs = methods.index[methods.isin(list(reference_methods))]
        kind = "reference method"
        if not len(refs):
            refs, kind = methods.index[methods != BASELINE_METHOD], "best backbone"
        best = (means[refs].idxmin() if lower else means[refs].idxmax()) if len(refs) else None
        for random in randoms or [None]:
            record = {**dict(zip(COLUMN_KEYS, key)), "lower": lower, "random_backbone": random,
                      "random_mean": means.get(random, math.nan), "reference_backbone": best,
                      "reference_mean": means.get(best, math.nan), "reference_kind": kind, "usable": False}  # fmt: skip
            gain = (record["reference_mean"] - record["random_mean"]) * (-1 if lower else 1)  # > 0: reference better
            if random is None:
                record["note"] = "no random-init backbone"
            elif best is None:
                record["note"] = "no reference and no other backbone"
            elif not gain > 0:
                record["note"] = f"{best} does not beat {random}: the scale is undefined"
            else:
                record.update(usable=True, note="")
            records.append(record)
    return pd.DataFrame.from_records(records, columns=columns)


def normalized_scores(rows: pd.DataFrame, anchors: pd.DataFrame | None = None,
                      reference_methods: Sequence[str] = tuple(REFERENCE_METHODS)) -> pd.DataFrame:  # fmt: skip
    """``rows`` (per-cell, one metric per task) plus ``score`` = (value - random) / (reference - random).

    Direction-aware by construction: for an error metric both differences are negative where a
    backbone beats random init, so the score is positive. Each backbone is scaled by the random init of
    its arch (``analysis.baseline_for``); columns whose anchors are not ``usable`` are left out. Mean
    score over seeds: 0 for random init, 1 for the reference.
    """
    rows = _ok(clean_rows(rows))
    anchors = normalization_anchors(rows, reference_methods) if anchors is None else anchors
    anchors = anchors[anchors["usable"].astype(bool)]
    out = []
    for key, column in rows.groupby(COLUMN_KEYS, sort=True):
        mine = _select(anchors, COLUMN_KEYS, key)
        if mine.empty:
            continue
        by_random = mine.set_index("random_backbone")
        for _, own in column.groupby("backbone"):
            random = baseline_for(column, own["arch"].iloc[0] if "arch" in own else "")
            if random not in by_random.index:
                continue
            a = by_random.loc[random]
            own = own.assign(random_backbone=random, random_mean=a["random_mean"], reference_mean=a["reference_mean"],
                             reference_backbone=a["reference_backbone"])  # fmt: skip
            own["score"] = (own["value"] - a["random_mean"]) / (a["reference_mean"] - a["random_mean"])
            out.append(own)
    if not out:
        return rows.iloc[0:0].assign(score=pd.Series(dtype=float))
    return pd.concat(out, ignore_index=True)


def _iqm(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    return scipy_stats.trim_mean(np.concatenate(samples, axis=axis), 0.25, axis=axis)


def _probability_of_improvement(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    half = len(samples) // 2
    per_task = []
    for x, y in zip(samples[:half], samples[half:]):
        u = scipy_stats.mannwhitneyu(x, y, axis=axis, method="asymptotic").statistic
        per_task.append(u / (x.shape[axis] * y.shape[axis]))
    return np.mean(per_task, axis=0)


def aggregate_scores(scores: pd.DataFrame, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                     seed: int = SEED) -> pd.DataFrame:  # fmt: skip
    """Per backbone: IQM of its normalised scores over tasks x fractions x seeds with a stratified bootstrap CI,
    and the probability of improvement over its random init with its CI (rliable's definitions, via scipy).

    Only the (task, fraction) columns every backbone of ``scores`` has are used, so no backbone is
    scored on an easier set of columns. The bootstrap resamples seeds within each column (stratified,
    percentile, seeded). The probability that a random run of the backbone beats a random run of random
    init is the Mann-Whitney U / (n m) per column, averaged over columns; it ignores the pairing of
    seeds, as rliable's does, and its CI resamples both backbones' seeds within each column.
    """
    columns = ["method", "backbone", "iqm", "iqm_low", "iqm_high", "mean", "n_columns", "n_scores", "random_backbone",
               "p_improvement", "p_low", "p_high"]  # fmt: skip
    if scores.empty:
        return pd.DataFrame(columns=columns)
    keys = scores[COLUMN_KEYS].astype(str).agg("|".join, axis=1)
    scores = scores.assign(_column=keys.to_numpy())
    shared = set.intersection(*(set(own["_column"]) for _, own in scores.groupby("backbone")))
    scores = scores[scores["_column"].isin(shared)]
    order = sorted(shared)

    def samples_of(own: pd.DataFrame) -> list[np.ndarray]:
        return [own.loc[own["_column"] == c, "score"].to_numpy(float) for c in order]

    records = []
    for backbone, own in scores.groupby("backbone", sort=True):
        record = {"method": own["method"].iloc[0], "backbone": backbone, "n_columns": len(order),
                  "n_scores": len(own), "mean": float(own["score"].mean()),
                  "random_backbone": own["random_backbone"].iloc[0]}  # fmt: skip
        if order:
            mine = samples_of(own)
            record["iqm"] = float(_iqm(*mine))
            ci = _bootstrap(mine, _iqm, confidence, n_resamples, seed)
            record.update(iqm_low=ci[0], iqm_high=ci[1])
            random = record["random_backbone"]
            if backbone != random and random in set(scores["backbone"]):
                theirs = samples_of(scores[scores["backbone"] == random])
                record["p_improvement"] = float(_probability_of_improvement(*mine, *theirs))
                ci = _bootstrap(mine + theirs, _probability_of_improvement, confidence, n_resamples, seed)
                record.update(p_low=ci[0], p_high=ci[1])
        records.append(record)
    return pd.DataFrame.from_records(records, columns=columns)


def _bootstrap(values: Sequence[np.ndarray], statistic, confidence, n_resamples, seed) -> tuple[float, float]:
    """Stratified percentile CI of ``statistic`` over the runs of each column (``values``: one array per column)."""
    if all(len(v) == 1 for v in values):
        return math.nan, math.nan  # one run in every column leaves nothing to resample: no zero-width interval
    # scipy.stats.bootstrap needs two observations per sample; one run resampled is itself, and so is [v, v].
    samples = [np.repeat(v, 2) if len(v) == 1 else v for v in values]
    result = scipy_stats.bootstrap(
        samples, statistic, vectorized=True, paired=False, n_resamples=n_resamples, confidence_level=confidence,
        method="percentile", rng=np.random.default_rng(seed),
    )  # fmt: skip
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


# ---- 3. robustness ----


def robustness_drops(
    rows: pd.DataFrame,
    stats_of: StatsOf | None = None,
    resample_for: Callable[[str], Resample | None] = task_resampler,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> pd.DataFrame:
    """Each backbone's drop from clean under each corruption and severity, with a paired two-way CI.

    A corrupted pass is paired with the clean pass of the same trained cell (``CELL_KEYS``: same
    backbone, fraction, split and training seed), so both saw the same test tiles; the CI resamples
    the seeds and one tile multiset shared by the clean and the corrupted pass. ``drop`` is
    direction-aware: positive = worse under the corruption (clean - corrupted for a higher-is-better
    metric, corrupted - clean for an error), in the metric's units; ``relative_drop`` = drop / clean.
    ``verdict``: "degrades" / "improves" when the CI excludes 0, else "not resolved".
    """
    rows = _ok(rows)
    clean, corrupted = clean_rows(rows), corrupted_rows(rows)
    columns = [*GROUP_KEYS, "lower", "fraction", "method", "backbone", "corruption", "severity", "n_seeds", "clean",
               "corrupted", "drop", "ci_low", "ci_high", "relative_drop", "verdict"]  # fmt: skip
    records = []
    keys = [*GROUP_KEYS, "backbone", "fraction", "corruption", "severity"]
    for key, bad in corrupted.groupby(keys, sort=True):
        task, lower = key[0], bool(bad["lower"].iloc[0])
        good = _select(clean, keys[:6], key[:6])
        seeds = sorted(_seed_pairs(bad) & _seed_pairs(good))
        record = {**dict(zip(keys, key)), "lower": lower, "method": bad["method"].iloc[0], "n_seeds": len(seeds)}
        if not seeds:
            records.append({**record, "verdict": "no clean pass of the same cells"})
            continue
        first, second = (bad, good) if lower else (good, bad)  # first - second = the drop
        pair = [_by_seed(r, seeds) for r in (first, second)]
        record.update(clean=float(np.mean(_by_seed(good, seeds)[0])), corrupted=float(np.mean(_by_seed(bad, seeds)[0])))
        record["drop"] = float(np.mean(pair[0][0] - pair[1][0]))
        record["relative_drop"] = record["drop"] / abs(record["clean"]) if record["clean"] else math.nan
        resample = resample_for(task) if stats_of is not None else None
        tiles = [[stats_of(h) for h in hashes] for _, hashes in pair] if resample is not None else None
        if tiles is None or any(s is None for t in tiles for s in t):
            records.append({**record, "verdict": "no interval (no tile statistics)"})
            continue
        diff = paired_difference(resample, tiles[0], tiles[1], confidence, n_resamples, seed)
        verdict = "not resolved" if not diff.resolved else ("degrades" if diff.low > 0 else "improves")
        records.append({**record, "drop": diff.mean, "ci_low": diff.low, "ci_high": diff.high, "verdict": verdict})
    return pd.DataFrame.from_records(records, columns=columns)


def _by_seed(rows: pd.DataFrame, seeds) -> tuple[np.ndarray, list[str]]:
    cells = rows.drop_duplicates(SEED_KEYS).set_index(SEED_KEYS)
    return (np.array([float(cells.loc[s, "value"]) for s in seeds]),
            [str(cells.loc[s, "config_hash"]) for s in seeds])  # fmt: skip


def least_degraded(
    rows: pd.DataFrame,
    stats_of: StatsOf | None = None,
    resample_for: Callable[[str], Resample | None] = task_resampler,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> pd.DataFrame:
    """Per (task, fraction, corruption, severity): the backbone with the smallest mean drop, the runner-up,
    and whether the margin is resolved.

    ``margin`` = drop(runner-up) - drop(best), over the seed pairs all four passes (two backbones, clean
    and corrupted) share; its CI resamples seeds and one tile multiset shared by the four, so
    ``resolved`` (CI above 0) means the best one really degrades less at this budget.
    """
    rows = _ok(rows)
    drops = robustness_drops(rows, None, resample_for)
    columns = [*GROUP_KEYS, "fraction", "corruption", "severity", "best", "best_drop", "runner_up", "runner_up_drop",
               "margin", "ci_low", "ci_high", "n_seeds", "resolved"]  # fmt: skip
    clean, corrupted = clean_rows(rows), corrupted_rows(rows)
    records = []
    keys = [*GROUP_KEYS, "fraction", "corruption", "severity"]
    for key, group in drops[drops["drop"].notna()].groupby(keys, sort=True):
        ranked = group.sort_values(["drop", "backbone"])
        record = {**dict(zip(keys, key)), "best": ranked["backbone"].iloc[0], "best_drop": ranked["drop"].iloc[0]}
        if len(ranked) < 2:
            records.append({**record, "resolved": False})
            continue
        record.update(runner_up=ranked["backbone"].iloc[1], runner_up_drop=ranked["drop"].iloc[1])
        lower = bool(ranked["lower"].iloc[0])
        passes = []
        for backbone in (record["best"], record["runner_up"]):
            cell = [*key[:5], backbone]
            passes += [_select(clean, [*keys[:5], "backbone"], cell),
                       _select(corrupted, [*keys, "backbone"], [*key, backbone])]  # fmt: skip
        seeds = sorted(set.intersection(*(_seed_pairs(p) for p in passes)))
        cells = [_by_seed(p, seeds) for p in passes] if seeds else []
        # margin = s (rc - rx) - s (bc - bx), with s = +1 for a higher-is-better metric: a drop is clean - corrupted.
        s = -1.0 if lower else 1.0
        coefficients = [-s, s, s, -s]
        record["n_seeds"] = len(seeds)
        if seeds:
            record["margin"] = float(np.mean(sum(c * v for c, (v, _) in zip(coefficients, cells))))
        resample = resample_for(key[0]) if stats_of is not None and seeds else None
        tiles = [[stats_of(h) for h in hashes] for _, hashes in cells] if resample is not None else None
        if tiles is not None and not any(t is None for seq in tiles for t in seq):
            joint = [_joint_stats([t[i] for t in tiles]) for i in range(len(seeds))]
            diff = paired_difference(_linear_resample(resample, coefficients), joint, None, confidence, n_resamples,
                                     seed)  # fmt: skip
            record.update(margin=diff.mean, ci_low=diff.low, ci_high=diff.high)
        record["resolved"] = bool(record.get("ci_low", math.nan) > 0)
        records.append(record)
    return pd.DataFrame.from_records(records, columns=columns)


# ---- 4. compute ----

#: Encoder metadata keys (``backbones.checkpoint.read_meta``) this module reads, where the exporter wrote them.
PRETRAIN_META = {"wall_time_s": "pretraining wall time (s)", "flops": "counted pretraining FLOPs, total",
                 "step_flops": "FLOPs of one training step (perf/pretrain_step.py's FlopCounterMode count)",
                 "iters": "training iterations", "batch_size": "samples per step"}  # fmt: skip


def adaptation_compute(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (task, dataset, protocol, backbone): the adaptation (fine-tuning or probe) cost over its cells.

    Reads, per cell (each config hash once, clean passes only: a robustness pass trains nothing),
    ``adapt_s`` if stored, else ``wall_time_s``; ``train_flops`` where counted; and any
    ``encoder_params*`` columns (the parameter count, per modality where stored), whose first value is
    carried. Missing columns give NaN, never 0.
    """
    rows = clean_rows(rows)
    rows = rows[rows["status"] == "ok"] if "status" in rows else rows
    cells = rows.drop_duplicates("config_hash") if "config_hash" in rows else rows
    seconds = "adapt_s" if "adapt_s" in cells else "wall_time_s"
    params = [c for c in cells.columns if c.startswith("encoder_params")]
    keys = ["task", "dataset", "protocol", "backbone"]
    records = []
    for key, own in cells.groupby(keys, sort=True):
        secs = own[seconds].astype(float) if seconds in own else pd.Series([math.nan] * len(own))
        flops = own["train_flops"].astype(float) if "train_flops" in own else pd.Series([math.nan] * len(own))
        records.append({
            **dict(zip(keys, key)), "cells": len(own), "adapt_s_total": secs.sum(min_count=1),
            "adapt_s_median": secs.median(), "train_flops_total": flops.sum(min_count=1),
            **{c: own[c].dropna().iloc[0] if own[c].notna().any() else math.nan for c in params},
        })  # fmt: skip
    return pd.DataFrame.from_records(records, columns=[*keys, "cells", "adapt_s_total", "adapt_s_median",
                                                       "train_flops_total", *params])  # fmt: skip


def pretraining_compute(encoders: Mapping[str, Mapping] | pd.DataFrame,
                        zero_cost_methods: Sequence[str] = (BASELINE_METHOD,)) -> pd.DataFrame:  # fmt: skip
    """One row per encoder: pretraining FLOPs and wall time from its metadata (``PRETRAIN_META`` keys).

    ``encoders`` maps a name (the sweep's pretraining entry, or a backbone) to its metadata dict. FLOPs:
    ``flops`` when the exporter counted the total, else ``step_flops x iters`` (``flops_source`` says
    which), else NaN: unknown is never shown as free. Methods in ``zero_cost_methods`` (random init) cost 0.
    """
    if isinstance(encoders, pd.DataFrame):
        encoders = {str(r.get("name", i)): r for i, r in encoders.to_dict("index").items()}
    records = []
    for name, meta in encoders.items():
        meta = dict(meta)
        method = meta.get("method", "")
        flops, source = math.nan, "unknown"
        if method in zero_cost_methods:
            flops, source = 0.0, "no pretraining"
        elif _number(meta.get("flops")):
            flops, source = float(meta["flops"]), "counted"
        elif _number(meta.get("step_flops")) and _number(meta.get("iters")):
            flops, source = float(meta["step_flops"]) * float(meta["iters"]), "step FLOPs x iterations"
        wall = 0.0 if method in zero_cost_methods else (float(meta["wall_time_s"]) if _number(meta.get("wall_time_s"))
                                                         else math.nan)  # fmt: skip
        seen = float(meta["iters"]) * float(meta["batch_size"]) if all(
            _number(meta.get(k)) for k in ("iters", "batch_size")) else math.nan  # fmt: skip
        records.append({"name": name, "method": method, "arch": meta.get("arch", ""), "pretrain_flops": flops,
                        "flops_source": source, "pretrain_wall_s": wall, "samples_seen": seen})  # fmt: skip
    return pd.DataFrame.from_records(records, columns=["name", "method", "arch", "pretrain_flops", "flops_source",
                                                      "pretrain_wall_s", "samples_seen"])  # fmt: skip


def _number(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def pareto_front(frame: pd.DataFrame, x: str = "pretrain_flops", y: str = "auc", lower_y: bool = False) -> pd.Series:
    """Per row: is it on the Pareto front of less ``x`` (compute) and better ``y`` (score, direction-aware)?

    A point is on the front when no other point has at most its compute and a better-or-equal score,
    with one of the two strictly. Rows with an unknown (NaN) x or y are never on it. Written here: it is
    a sort and a running best, and no library of the stack has it.
    """
    xs = frame[x].to_numpy(dtype=float)
    ys = frame[y].to_numpy(dtype=float) * (-1.0 if lower_y else 1.0)  # larger is better from here on
    known = np.isfinite(xs) & np.isfinite(ys)
    on_front = np.zeros(len(frame), dtype=bool)
    best = -np.inf
    # Cheapest first, and at equal cost the best first, so a tie in cost keeps only the better point.
    for i in sorted(np.flatnonzero(known), key=lambda i: (xs[i], -ys[i])):
        if ys[i] > best:
            on_front[i] = True
            best = ys[i]
    return pd.Series(on_front, index=frame.index, name="pareto")


def format_flops(value: float) -> str:
    """1.23e15 -> "1.23 PFLOP"; NaN -> "unknown"; 0 -> "0"."""
    if not _number(value):
        return "unknown"
    if value == 0:
        return "0"
    for scale, unit in ((1e18, "EFLOP"), (1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} FLOP"
