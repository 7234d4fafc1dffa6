"""The rows a cell leaves in the store: one per metric when it finished, one ``failed: reason`` row when not.

Rows hold what ran (backbone, task, dataset, protocol, fraction, seeds, hashes, code, device) and what was
measured (the metrics, ``n_train``, the selected iteration, wall times, the compute behind it). Intervals are not
stored: the analysis computes them when it reads the run, from the per-tile statistics each cell saved.

A cell whose spec has ``corruptions`` also leaves, per corrupted test pass, one row per metric with
``corruption`` and ``severity`` set and the pass's own ``config_hash`` (``Cell.passes``; its tile statistics are
under that hash); ``trained_config_hash`` names the cell whose model it tested. Clean rows say
``corruption="none"``, ``severity=0``.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

from tasks import FinetuneResult, Task

from .cells import Cell
from .provenance import code_version, hardware

#: What a row records of the pretraining behind its checkpoint (from the encoder.pth metadata), its compute too.
PRETRAIN_KEYS = ("method", "config", "epochs", "iters", "train_samples", "batch_size", "teacher_momentum", "augment",
                 "probe_knn", "flops", "step_flops", "world_size", "wall_time_s")  # fmt: skip


def base_row(cell: Cell) -> dict:
    """The columns every row of ``cell`` has (what ran, where, with which code); the one row builder."""
    cfg, entry = cell.config, cell.backbone_entry
    row = {
        "method": entry.method, "backbone": cell.shown_backbone, "arch": entry.arch,
        "checkpoint_hash": cfg["checkpoint"], "task": cell.task, "dataset": cell.dataset,
        "modalities": "+".join(cell.modalities), "protocol": cell.protocol,
        "fraction": cell.fraction, "split_seed": cell.split_seed, "train_seed": cell.train_seed,
        "config_hash": cell.config_hash, "cell_key": cell.cell_key, "code_version": code_version(),
        "code_fingerprint": cfg["code"],
        "device": hardware(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    if cell.backbone_label:
        row["registered_backbone"] = cell.backbone  # what was built; "backbone" is the spec's label for it
    if cell.checkpoint and os.path.exists(cell.checkpoint):
        row["pretrain"] = pretrain_summary(cell.checkpoint)
    return row


def failed_rows(cell: Cell, status: str, wall_time_s: float = 0.0, n_train: int = 0) -> list[dict]:
    """The one row a failed cell leaves: its primary metric, NaN, and ``failed: reason``."""
    return [{**base_row(cell), "n_train": n_train, "metric": cell.task_impl.primary_metric, "value": math.nan,
             "status": status, "wall_time_s": wall_time_s, "corruption": "none", "severity": 0}]  # fmt: skip


def result_rows(cell: Cell, task: Task, result: FinetuneResult, n_train: int, train_options: str,
                cell_time_s: float, **extra) -> list[dict]:  # fmt: skip
    """One ``ok`` row per metric of a finished cell (``extra``: columns of what the cell ran on, e.g. data_split),
    then the rows of its corrupted test passes (``cell.passes``), clean rows first."""
    base = {
        **base_row(cell), "train_options": train_options, "n_train": n_train, **extra,
        "wall_time_s": result.wall_time_s, "step_time_s": result.step_time_s, "feature_time_s": result.feature_time_s,
        "cell_time_s": cell_time_s, "arch": result.arch or cell.backbone_entry.arch, "n_val": result.n_val,
        "iterations": result.iterations, "selected_iter": result.selected_iter, "selection": result.selection,
    }  # fmt: skip
    compute = {"step_flops": result.step_flops, "train_flops": result.train_flops, "flop_count_s": result.flop_count_s,
               **{f"encoder_params{'' if k == 'total' else '_' + k}": v for k, v in result.encoder_params.items()}}
    rows = [{**base, **compute, "corruption": "none", "severity": 0, "metric": k, "value": v, "status": "ok",
             "higher_is_better": task.higher_is_better(k)} for k, v in result.metrics.items()]  # fmt: skip
    for test in cell.passes:  # the trained model tested again: what it ran is the cell's, what it measured its own
        measured = result.extra_tests.get(test.name)
        own = {**base, "config_hash": test.config_hash, "trained_config_hash": cell.config_hash,
               "corruption": test.corruption, "severity": test.severity, "corruption_seed": test.seed,
               "wall_time_s": measured.wall_time_s if measured else 0.0}  # fmt: skip
        if measured is None or measured.error:
            reason = measured.error if measured else "the pass did not run"
            rows.append({**own, "metric": task.primary_metric, "value": math.nan, "status": f"failed: {reason}"[:300]})
            continue
        rows += [{**own, "metric": k, "value": v, "status": "ok", "higher_is_better": task.higher_is_better(k)}
                 for k, v in measured.metrics.items()]  # fmt: skip
    return rows


def pretrain_summary(checkpoint: str) -> str:
    """JSON of the checkpoint's pretraining metadata (method, budget, teacher schedule, probes); "" if none."""
    from backbones.checkpoint import read_meta

    try:
        meta = read_meta(checkpoint)
    except Exception:  # a converted official file may carry no metadata; the load itself reports real problems
        return ""
    summary = {k: meta[k] for k in PRETRAIN_KEYS if k in meta}
    if "config" in summary:
        summary["config"] = Path(str(summary["config"])).name
    return json.dumps(summary, sort_keys=True, default=str)


def failure_status(exc: BaseException) -> str:
    """``failed: <reason>`` for a row: our own errors speak for themselves, others keep their type."""
    from rsbench.watchdog import CellStalled
    from tasks.runtime import NonFiniteLossError

    own = isinstance(exc, NonFiniteLossError | CellStalled)
    text = str(exc) if own else f"{exc.__class__.__name__}: {exc}"
    return f"failed: {text}".splitlines()[0][:300]
