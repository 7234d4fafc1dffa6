"""Label-fraction sweeps: backbones x tasks x datasets x fractions x seeds, one result row per cell and metric.

This module says *what* a sweep runs (spec, cells, the config hash of each cell) and how one
cell runs (:class:`SweepRunner`); :mod:`benchmark.launch` says *where* cells run (inline, N
local worker processes, Slurm jobs through submitit) and shows the progress.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from functools import lru_cache
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
from mmengine.config import Config
from torch.utils.data import Subset

import backbones
from rsdatasets import build_dataset, dataset_class, list_datasets
from tasks import PROTOCOLS, TrainBudget, finetune, get_task
from tasks.features import FeatureCache
from tasks.tracking import Tracking, parse_tracking

from .preemption import stop_requested
from .pretrain_stage import check_entries, encoder_path, pretrain_reference
from .provenance import code_fingerprint, code_version, config_hash, hardware, write_provenance
from .results import ResultStore
from .splits import LabelSubset, carve_validation, nested_label_subsets
from .stats import tile_ci
from .tilestats import save_tile_stats

#: Keys of a dataset entry that tune the cells of that (task, dataset) instead of going to the dataset.
CELL_OVERRIDES = ("fractions", "modalities", "budget", "task_kwargs", "protocols")
#: Slurm settings a spec or ``--slurm`` may give (docs/sweeps.md); ``cluster`` picks submitit's executor.
SLURM_KEYS = ("partition", "time_min", "gpus", "cpus", "mem_gb", "account", "qos", "constraint", "array_parallelism",
              "setup", "cluster")  # fmt: skip


@dataclass
class SweepSpec:
    """What a sweep runs; loaded from an mmengine config such as ``configs/sweeps/demo.py``.

    ``dataset`` serves every task; ``datasets`` maps a task to its own dataset entry or list of
    entries (``{"name": ..., **dataset kwargs}``, optionally with the ``CELL_OVERRIDES`` keys) and
    wins over ``dataset`` for that task.
    """

    name: str
    backbones: list[dict]  # each {"name": ..., "checkpoint": path or None, "kwargs": {...}, "hint": how to get it}
    tasks: list[str]
    dataset: dict | None = None  # {"name": "synthetic", **dataset kwargs}: the dataset of every task
    fractions: list[float] = field(default_factory=lambda: [1.0])
    # "frozen" (encoder features cached, task side trained) and/or "finetune" (everything trains)
    protocols: list[str] = field(default_factory=lambda: ["finetune"])
    split_seeds: list[int] = field(default_factory=lambda: [0])
    train_seeds: list[int] = field(default_factory=lambda: [0])
    modalities: list[str] = field(default_factory=lambda: ["rgb", "dsm"])
    budgets: dict = field(default_factory=dict)  # task -> TrainBudget kwargs
    task_kwargs: dict = field(default_factory=dict)  # task -> Task kwargs
    datasets: dict = field(default_factory=dict)  # task -> dataset entry or list of entries
    slurm: dict = field(default_factory=dict)  # defaults for --executor slurm (SLURM_KEYS)
    # Pretraining runs done first, into RUN_DIR/pretrain/NAME; a backbone uses one as checkpoint="pretrain:NAME".
    pretrain: list[dict] = field(default_factory=list)
    # A cell with no progress (no iteration, no feature batch) for max(this, 20 x its longest gap so far) seconds
    # becomes a failed row with every thread's stack in its log (rsbench.watchdog); numbers never depend on it.
    stall_timeout_s: float = 600.0
    # Experiment tracking of every cell's curves (tasks/tracking.py): "tensorboard", "wandb", "mlflow", a list or a
    # dict. Not in any cell's hash: it changes no number, so turning it on or off never makes a row stale.
    tracking: Any = None

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict | None = None) -> SweepSpec:
        """Read a sweep config (``overrides``: mmengine ``--cfg-options`` keys); unknown or missing fields get one
        clear error."""
        # Names starting with "_" are the spec file's own helper variables.
        try:
            loaded = Config.fromfile(str(path))
        except SyntaxError as exc:  # one line naming the file and line, not a traceback
            raise ValueError(f"{path}:{exc.lineno}: syntax error in the sweep spec: {exc.msg}") from exc
        loaded.merge_from_dict(overrides or {})
        cfg = {k: v for k, v in loaded.to_dict().items() if not k.startswith("_")}
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(cfg) - known)
        if extra:
            raise ValueError(f"{path}: unknown sweep fields {extra}; known: {sorted(known)}")
        try:
            spec = cls(**cfg)
        except TypeError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        try:
            spec.validate()
        except (ValueError, KeyError, FileNotFoundError) as exc:
            raise type(exc)(f"{path}: {exc.args[0]}") from exc
        return spec

    def entries(self, task: str) -> list[dict]:
        """The dataset entries of ``task`` (its own ``datasets`` entry, else the shared ``dataset``)."""
        entry = self.datasets.get(task, self.dataset)
        entries = (entry if isinstance(entry, list | tuple) else [entry]) if entry else []
        for e in entries:
            if not isinstance(e, dict):
                raise ValueError(f"the dataset of task {task} must be dict(name=..., ...) or a list of them, got {e!r}")
        return [dict(e) for e in entries]

    def entry(self, task: str, dataset: str) -> dict:
        return next(e for e in self.entries(task) if e["name"] == dataset)

    def validate(self) -> None:
        """Fail before any training on a typo: fractions, backbone, task and dataset names, budget keys."""
        self._check_fractions(self.fractions)
        for b in self.backbones:
            backbones.get_spec(b["name"])
            if b.get("checkpoint") and not pretrain_reference(b["checkpoint"]) and not Path(b["checkpoint"]).is_file():
                how = b.get("hint") or "pretrain or convert it first"
                raise FileNotFoundError(
                    f"checkpoint {b['checkpoint']} of backbone {b['name']} does not exist "
                    f"(relative paths are taken from the current directory); {how}"
                )
        check_entries(self.pretrain, [b.get("checkpoint") for b in self.backbones])
        parse_tracking(self.tracking)
        unknown_tasks = sorted(set(self.datasets) - set(self.tasks))
        if unknown_tasks:
            raise ValueError(f"datasets are given for {unknown_tasks}, which are not in tasks {self.tasks}")
        unknown_slurm = sorted(set(self.slurm) - set(SLURM_KEYS))
        if unknown_slurm:
            raise ValueError(f"unknown slurm keys {unknown_slurm}; known: {list(SLURM_KEYS)}")
        for t in self.tasks:
            entries = self.entries(t)
            if not entries:
                raise ValueError(f"task {t} has no dataset: set `dataset` or `datasets['{t}']`")
            names = [e.get("name") for e in entries]
            if None in names:
                raise ValueError(f"a dataset entry of task {t} has no 'name': {entries[names.index(None)]}")
            if len(set(names)) < len(names):
                raise ValueError(f"task {t} lists a dataset twice in {names}; give each dataset one entry")
            for e in entries:
                if e["name"] not in list_datasets():
                    try:
                        dataset_class(e["name"])
                    except KeyError as exc:  # the registry's message, with close matches
                        raise KeyError(f"task {t}: {exc.args[0]}") from None
                self._check_fractions(e.get("fractions", self.fractions))
                bad = sorted(set(e.get("protocols", self.protocols)) - set(PROTOCOLS))
                if bad or not e.get("protocols", self.protocols):
                    raise ValueError(f"unknown protocols {bad} for task {t}; choose from {list(PROTOCOLS)}")
                budget = self.budget(t, e["name"])
                unknown = sorted(set(budget) - set(TrainBudget.__dataclass_fields__))
                if unknown:
                    known = sorted(TrainBudget.__dataclass_fields__)
                    raise ValueError(f"unknown budget keys {unknown} for task {t}; known: {known}")
                get_task(t, **self.task_options(t, e["name"]))

    def with_pretrained(self, run_dir: str | Path) -> SweepSpec:
        """This spec with each ``pretrain:NAME`` checkpoint replaced by the encoder that stage writes in ``run_dir``."""
        resolved = []
        for b in self.backbones:
            ref = pretrain_reference(b.get("checkpoint"))
            resolved.append(dict(b, checkpoint=str(encoder_path(run_dir, ref))) if ref else b)
        return replace(self, backbones=resolved)

    @staticmethod
    def _check_fractions(fractions) -> None:
        for f in fractions:
            if not 0 < f <= 1:
                raise ValueError(f"label fraction {f} is outside (0, 1]")

    def budget(self, task: str, dataset: str) -> dict:
        return {**self.budgets.get(task, {}), **self.entry(task, dataset).get("budget", {})}

    def protocols_of(self, task: str, dataset: str) -> list[str]:
        return list(self.entry(task, dataset).get("protocols", self.protocols))

    def task_options(self, task: str, dataset: str) -> dict:
        return {**self.task_kwargs.get(task, {}), **self.entry(task, dataset).get("task_kwargs", {})}


@dataclass(frozen=True)
class Cell:
    """One training run: a backbone on a task and dataset at one label fraction with one split and training seed."""

    backbone: str
    checkpoint: str | None
    task: str
    fraction: float
    split_seed: int
    train_seed: int
    dataset: str = ""
    protocol: str = "finetune"

    def label(self) -> str:
        return (f"{self.backbone} {self.task}/{self.dataset} {self.protocol} {self.fraction:g} "
                f"s{self.split_seed}/{self.train_seed}")  # fmt: skip


def expand_cells(spec: SweepSpec) -> list[Cell]:
    """All cells of the sweep, in a stable order (backbone, task, dataset, protocol, fraction, split seed, train seed).

    Backbone-major, so that cells sharing an encoder's cached features run one after another.
    """
    cells = []
    for b, t in product(spec.backbones, spec.tasks):
        for e in spec.entries(t):
            for p, f, s, r in product(spec.protocols_of(t, e["name"]), e.get("fractions", spec.fractions),
                                      spec.split_seeds, spec.train_seeds):  # fmt: skip
                cells.append(Cell(b["name"], b.get("checkpoint"), t, float(f), s, r, e["name"], p))
    return cells


@lru_cache(maxsize=64)
def _file_hash(path: str, mtime_ns: int, size: int) -> str:
    return backbones.file_hash(path)


def checkpoint_hash(path: str | None) -> str:
    """``backbones.file_hash`` of a checkpoint, hashed once per file version (a ViT-B file is 350 MB)."""
    if path is None:
        return backbones.file_hash(None)
    if pretrain_reference(path) or not os.path.exists(path):
        return "not-yet-pretrained"  # a --dry-run before the sweep's pretraining stage wrote the encoder
    st = os.stat(path)
    return _file_hash(str(path), st.st_mtime_ns, st.st_size)


def cell_config(spec: SweepSpec, cell: Cell) -> dict:
    """Everything that determines a cell's numbers; its hash identifies the cell in the store."""
    bkw = next(b.get("kwargs", {}) for b in spec.backbones
               if b["name"] == cell.backbone and b.get("checkpoint") == cell.checkpoint)  # fmt: skip
    entry = spec.entry(cell.task, cell.dataset)
    return {
        **{k: v for k, v in asdict(cell).items() if k != "dataset"},
        "code": code_fingerprint(),
        "checkpoint": checkpoint_hash(cell.checkpoint),
        "backbone_kwargs": bkw,
        "dataset": {k: v for k, v in entry.items() if k not in CELL_OVERRIDES},
        "modalities": list(entry.get("modalities", spec.modalities)),
        "budget": asdict(TrainBudget(**spec.budget(cell.task, cell.dataset))),
        "task_kwargs": spec.task_options(cell.task, cell.dataset),
        **({"world_size": world} if (world := _world_size()) > 1 else {}),  # DDP changes the numbers
    }


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def cell_hash(spec: SweepSpec, cell: Cell) -> str:
    return config_hash(cell_config(spec, cell))


def cell_key(config: dict) -> str:
    """The cell's identity without the code version: rows of the same cell computed by other code share it."""
    return config_hash({k: v for k, v in config.items() if k != "code"})


class SweepRunner:
    """Runs the cells of a spec into ``run_dir`` (results, per-cell work dirs), skipping finished ones."""

    def __init__(self, spec: SweepSpec, run_dir: str | Path, force: bool = False, cell_launcher: str = "none") -> None:
        self.spec = spec
        self.cell_launcher = cell_launcher  # "pytorch" / "slurm": each cell trains with DDP across this job's ranks
        self.run_dir = Path(run_dir)
        self.store = ResultStore(self.run_dir)
        self.force = force
        self._datasets: dict[tuple, object] = {}
        self._strata: dict[tuple, object] = {}
        self.features = FeatureCache()  # encoder features of the frozen protocol, shared by this process's cells

    def dataset(self, split: str, entry: dict | None = None):
        """A split of a dataset entry (the spec's shared ``dataset`` by default), built once per process."""
        kwargs = {k: v for k, v in (entry or self.spec.dataset).items() if k not in CELL_OVERRIDES}
        key = (split, config_hash(kwargs))
        if key not in self._datasets:
            name = kwargs.pop("name")
            self._datasets[key] = build_dataset(name, split, **kwargs)
        return self._datasets[key]

    def prepare(self, cells: list[Cell]) -> None:
        """Build (or generate) the train and test splits the cells need; fails early on a missing dataset."""
        for task, name in dict.fromkeys((c.task, c.dataset) for c in cells):
            for split in ("train", "test"):
                self.dataset(split, self.spec.entry(task, name))

    def subset(self, task, cell: Cell) -> LabelSubset:
        """The cell's labelled subset: a prefix of one seeded, stratified order of the training split."""
        train = self.dataset("train", self.spec.entry(cell.task, cell.dataset))
        key = (cell.task, cell.dataset, cell.split_seed)
        if key not in self._strata:
            self._strata[key] = np.asarray(task.strata(train))
        indices = nested_label_subsets(self._strata[key], [cell.fraction], cell.split_seed,
                                       every_stratum=task.every_stratum)[cell.fraction]  # fmt: skip
        return LabelSubset(train, indices, cell.fraction, strata=self._strata[key][indices])

    def pending(self, accept_stale: bool = False) -> list[Cell]:
        """Cells without an ``ok`` row for their config hash (all cells with ``force``).

        A cell whose only ``ok`` row was computed by other code (same cell key, another code fingerprint)
        is stale and runs again; ``accept_stale`` keeps such rows instead.
        """
        cells = expand_cells(self.spec)
        if self.force:
            return cells
        done = self.store.done_config_hashes()
        todo = [c for c in cells if cell_hash(self.spec, c) not in done]
        if accept_stale:
            kept = self.store.done_cell_keys()
            todo = [c for c in todo if cell_key(cell_config(self.spec, c)) not in kept]
        return todo

    def stale(self) -> list[Cell]:
        """Cells of the spec whose ``ok`` row comes from other code than this checkout's."""
        done, keys = self.store.done_config_hashes(), self.store.done_cell_keys()
        out = []
        for c in expand_cells(self.spec):
            cfg = cell_config(self.spec, c)
            if config_hash(cfg) not in done and cell_key(cfg) in keys:
                out.append(c)
        return out

    def build_task(self, cell: Cell, options: dict):
        """The cell's task; ``class_names`` come from the dataset's metainfo (the key the task declares)
        unless the spec sets them."""
        task = get_task(cell.task, **options)
        if "class_names" in options or "class_names" not in inspect.signature(type(task)).parameters:
            return task
        meta = getattr(self.dataset("train", self.spec.entry(cell.task, cell.dataset)), "metainfo", {}) or {}
        names = meta.get(task.class_names_key)
        return get_task(cell.task, **options, class_names=tuple(names)) if names else task

    def feature_key(self, cell: Cell, cfg: dict, modalities) -> str:
        """What a cell's cached encoder features are of: the same key means the same features.

        A backbone without a checkpoint is initialised from the training seed, so its features are too.
        """
        key = {"backbone": cell.backbone, "checkpoint": cfg["checkpoint"], "kwargs": cfg["backbone_kwargs"],
               "dataset": cfg["dataset"], "modalities": list(modalities), "code": cfg["code"]}  # fmt: skip
        if cell.checkpoint is None:
            key["train_seed"] = cell.train_seed
        return config_hash(key)

    def split_for_selection(self, task, subset: LabelSubset, budget: TrainBudget, split_seed: int):
        """(fit part, validation part) of the labelled subset, the validation part stratified like the subset."""
        n_val = budget.validation_size(len(subset))
        if n_val == 0:
            return subset, None
        fit, val = carve_validation(subset.strata, n_val, split_seed)
        indices = np.asarray(subset.indices)
        return Subset(subset.dataset, indices[fit].tolist()), Subset(subset.dataset, indices[val].tolist())

    def base_row(self, cell: Cell, cfg: dict | None = None) -> dict:
        """The columns every row of ``cell`` has (what ran, where, with which code); the one row builder."""
        cfg = cfg or cell_config(self.spec, cell)
        task = get_task(cell.task, **cfg["task_kwargs"])
        spec = backbones.get_spec(cell.backbone)
        row = {
            "method": spec.method, "backbone": cell.backbone, "arch": spec.arch,
            "checkpoint_hash": cfg["checkpoint"], "task": cell.task, "dataset": cell.dataset,
            "modalities": "+".join(task.input_modalities(cfg["modalities"])), "protocol": cell.protocol,
            "fraction": cell.fraction, "split_seed": cell.split_seed, "train_seed": cell.train_seed,
            "config_hash": config_hash(cfg), "cell_key": cell_key(cfg), "code_version": code_version(),
            "code_fingerprint": cfg["code"],
            "device": hardware(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }  # fmt: skip
        if cell.checkpoint and os.path.exists(cell.checkpoint):
            row["pretrain"] = pretrain_summary(cell.checkpoint)
        return row

    def failed_rows(self, cell: Cell, status: str, wall_time_s: float = 0.0, n_train: int = 0) -> list[dict]:
        """The one row a failed cell leaves: its primary metric, NaN, and ``failed: reason``."""
        metric = get_task(cell.task, **self.spec.task_options(cell.task, cell.dataset)).primary_metric
        return [{**self.base_row(cell), "n_train": n_train, "metric": metric, "value": math.nan, "status": status,
                 "wall_time_s": wall_time_s}]  # fmt: skip

    def run_cell(self, cell: Cell, progress: Callable[[int, int], None] | None = None) -> list[dict]:
        """Train and evaluate one cell; a failure becomes a ``failed: reason`` row, never a silent gap."""
        cell_start = time.perf_counter()
        cfg = cell_config(self.spec, cell)
        chash = config_hash(cfg)
        task = get_task(cell.task, **cfg["task_kwargs"])
        spec = backbones.get_spec(cell.backbone)
        modalities = task.input_modalities(cfg["modalities"])
        base = self.base_row(cell, cfg)
        work_dir = self.run_dir / "cells" / chash
        write_provenance(work_dir, cfg)  # what the report's provenance tables read
        start = time.perf_counter()
        try:
            task = self.build_task(cell, cfg["task_kwargs"])
            budget = TrainBudget(**cfg["budget"])
            base["train_options"] = budget.options()
            labelled = self.subset(task, cell)
            base["n_train"] = len(labelled)
            if split := (getattr(labelled.dataset, "metainfo", None) or {}).get("split_protocol"):
                base["data_split"] = split  # how a reader without official splits drew them (rsdatasets/generic.py)
            settings = parse_tracking(self.spec.tracking)
            tracking = Tracking(settings, self.run_dir / "tracking", {**asdict(cell), "config_hash": chash}) \
                if settings else None
            fit, val = self.split_for_selection(task, labelled, budget, cell.split_seed)
            result = finetune(
                task,
                lambda: backbones.build(cell.backbone, modalities, cell.checkpoint, **cfg["backbone_kwargs"]),
                fit,
                self.dataset("test", self.spec.entry(cell.task, cell.dataset)),
                modalities,
                budget,
                cell.train_seed,
                work_dir,
                progress,
                launcher=self.cell_launcher,
                val_set=val,
                protocol=cell.protocol,
                feature_cache=self.features if cell.protocol == "frozen" else None,
                feature_key=self.feature_key(cell, cfg, modalities),
                should_stop=stop_requested,
                tracking=tracking,
            )
        except Exception as exc:  # a failed cell is a row with its reason
            work_dir.mkdir(parents=True, exist_ok=True)
            (work_dir / "error.log").write_text(traceback.format_exc())
            return self.failed_rows(cell, failure_status(exc), time.perf_counter() - start, base.get("n_train", 0))
        low, high = (math.nan, math.nan)
        if result.tile_stats:
            save_tile_stats(work_dir, result.tile_stats, task=cell.task, metric=task.primary_metric)
            low, high = tile_ci(task.resample_primary, result.tile_stats)
        base.update(
            wall_time_s=result.wall_time_s, step_time_s=result.step_time_s, feature_time_s=result.feature_time_s,
            cell_time_s=time.perf_counter() - cell_start, arch=result.arch or spec.arch,
            n_val=result.n_val,
            iterations=result.iterations, selected_iter=result.selected_iter, selection=result.selection,
        )  # fmt: skip
        rows = []
        for k, v in result.metrics.items():
            primary = k == task.primary_metric
            rows.append({**base, "metric": k, "value": v, "status": "ok", "higher_is_better": task.higher_is_better(k),
                         "ci_low": low if primary else math.nan, "ci_high": high if primary else math.nan})  # fmt: skip
        return rows


#: What a row records of the pretraining behind its checkpoint (from the encoder.pth metadata).
PRETRAIN_KEYS = ("method", "config", "epochs", "iters", "train_samples", "batch_size", "teacher_momentum", "augment",
                 "probe_knn")  # fmt: skip


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
    from tasks.engine import NonFiniteLossError

    own = isinstance(exc, NonFiniteLossError | CellStalled)
    text = str(exc) if own else f"{exc.__class__.__name__}: {exc}"
    return f"failed: {text}".splitlines()[0][:300]
