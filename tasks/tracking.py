"""Experiment tracking: a cell's training curves in TensorBoard, Weights & Biases or MLflow.

Tracking goes through mmengine's visualizer backends (``TensorboardVisBackend``, ``WandbVisBackend``,
``MLflowVisBackend``): the fine-tuning Runner's ``LoggerHook`` already sends every logged scalar (losses,
learning rate, validation metrics) to its visualizer, so tracking is a visualizer configuration plus
one hook that writes the cell's tags (backbone, task, dataset, protocol, fraction, seeds, cell hash).
Everything stays on disk by default: TensorBoard event files, W&B in ``offline`` mode (``wandb sync``
uploads later), MLflow in a ``file://`` store. The result files (parquet/CSV) stay the record; tracking
is a view, writes nothing that the metrics depend on, and is not part of a cell's hash.

A tracking setting (sweep spec field ``tracking`` or ``--track``) is a backend name, a comma-separated list
(``tensorboard,mlflow``) or a dict ``{"backends": [...], "project": ..., "wandb": {init kwargs},
"mlflow": {backend kwargs}}``.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmengine.config import Config
from mmengine.hooks import Hook

#: Backend name -> (mmengine visualizer backend, the package it imports).
BACKENDS = {
    "tensorboard": ("TensorboardVisBackend", "tensorboard"),
    "wandb": ("WandbVisBackend", "wandb"),
    "mlflow": ("MLflowVisBackend", "mlflow"),
}


def parse_tracking(value: Any) -> dict[str, Any] | None:
    """A tracking setting as ``{"backends": [...], "project": ..., "wandb": {...}, "mlflow": {...}}`` (or ``None``).

    Unknown backends, unknown keys and backends whose package is missing are one clear ``ValueError``,
    raised before any cell runs.
    """
    if value in (None, "", "none", [], ()):
        return None
    if isinstance(value, str):
        value = {"backends": [v.strip() for v in value.split(",") if v.strip()]}
    elif isinstance(value, list | tuple):
        value = {"backends": [str(v) for v in value]}
    if not isinstance(value, Mapping):
        raise ValueError(f"tracking must be a backend name, a list of them or a dict, got {value!r}")
    value = dict(value)
    unknown_keys = sorted(set(value) - {"backends", "project", "wandb", "mlflow"})
    if unknown_keys:
        raise ValueError(f"unknown tracking keys {unknown_keys}; known: backends, project, wandb, mlflow")
    backends = value.get("backends") or []
    backends = [backends] if isinstance(backends, str) else list(backends)
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown or not backends:
        raise ValueError(f"unknown tracking backend(s) {unknown or backends}; choose from {', '.join(BACKENDS)}")
    for name in backends:
        package = BACKENDS[name][1]
        if importlib.util.find_spec(package) is None:
            raise ValueError(f"tracking backend {name} needs the {package} package: pip install {package}")
    return {**value, "backends": backends, "project": str(value.get("project", "rsbench"))}


def run_name(tags: Mapping[str, Any]) -> str:
    """A file-system-safe name for one cell's run, e.g. ``segmentation_potsdam_mae_vit_b16_finetune_f0.1_s0-1_ab12``."""
    name = (f"{tags['task']}_{tags['dataset']}_{tags['backbone']}_{tags['protocol']}_f{float(tags['fraction']):g}_"
            f"s{tags['split_seed']}-{tags['train_seed']}_{str(tags.get('config_hash', ''))[:8]}")  # fmt: skip
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", name).strip("_")


class TrackingTagsHook(Hook):
    """Writes the cell's tags to every tracking backend once, before training (as the run's config)."""

    priority = "VERY_LOW"

    def __init__(self, tags: Mapping[str, Any]) -> None:
        self.tags = {k: v if isinstance(v, int | float | bool) else str(v) for k, v in tags.items()}
        self.written = False

    def before_run(self, runner) -> None:
        if not self.written:  # the test run after training starts a run too; the tags are written once
            runner.visualizer.add_config(Config(dict(rsbench_cell=self.tags)))
            self.written = True


@dataclass(frozen=True)
class Tracking:
    """Where and how one cell's curves are tracked: the backends, the run's folder and its tags."""

    settings: dict[str, Any]
    save_dir: Path  # e.g. RUN_DIR/tracking; each backend keeps its own sub-folder
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return run_name(self.tags)

    def visualizer(self) -> dict[str, Any]:
        """The Runner's ``visualizer`` config: mmengine's default local backend plus the chosen ones."""
        backends: list[dict[str, Any]] = [dict(type="LocalVisBackend")]  # what the Runner writes without tracking
        project, tag_list = self.settings["project"], [f"{k}:{v}" for k, v in self.tags.items()]
        for backend in self.settings["backends"]:
            kind = BACKENDS[backend][0]
            folder = self.save_dir / backend
            if backend == "tensorboard":  # a folder per cell: `tensorboard --logdir RUN_DIR/tracking/tensorboard`
                backends.append(dict(type=kind, save_dir=str(folder / self.name)))
            elif backend == "wandb":
                init = dict(project=project, name=self.name, group=f"{self.tags['task']}/{self.tags['dataset']}",
                            tags=tag_list, config=dict(self.tags), mode="offline", reinit=True)  # fmt: skip
                init.update(self.settings.get("wandb", {}))
                backends.append(dict(type=kind, save_dir=str(folder), init_kwargs=init))
            else:
                mlflow = dict(exp_name=project, run_name=self.name, tags={k: str(v) for k, v in self.tags.items()},
                              tracking_uri=f"file://{(folder / 'mlruns').resolve()}")  # fmt: skip
                mlflow.update(self.settings.get("mlflow", {}))
                backends.append(dict(type=kind, save_dir=str(folder / self.name), **mlflow))
        return dict(type="Visualizer", vis_backends=backends)

    def hooks(self) -> list[Hook]:
        return [TrackingTagsHook(self.tags)]

    @staticmethod
    def logger() -> dict[str, Any]:
        """``LoggerHook`` options: validation metrics at the iteration they were taken (the loop is iteration
        based; by epoch they would all sit at step 0), so they line up with the loss curve."""
        return dict(log_metric_by_epoch=False)
