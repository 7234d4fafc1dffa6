"""How one cell runs: its data (datasets built once per process, the labelled subset, the validation carve), the
training plan handed to ``tasks.finetune``, and the rows it leaves (``rows``).

Where cells run (inline, worker processes, Slurm) is ``executors``; the sweep around them is ``sweep``.
"""

from __future__ import annotations

import inspect
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch.utils.data import Subset

import backbones
from rsdatasets import build_dataset
from rsdatasets.corruptions import CorruptedDataset
from tasks import FinetunePlan, Task, TrainBudget, finetune, get_task
from tasks.features import FeatureCache
from tasks.tracking import Tracking, parse_tracking

from .cells import IDENTITY, Cell, corruption_plan, input_keys
from .preemption import stop_requested
from .provenance import config_hash, write_provenance
from .rows import failed_rows, failure_status, result_rows
from .rundir import RunDir
from .spec import CELL_OVERRIDES, SweepSpec
from .splits import LabelSubset, carve_validation, nested_label_subsets
from .store import ResultStore
from .tilestats import save_tile_stats


class CellRunner:
    """Runs cells of a sweep into a run directory: datasets and strata are kept between the cells of a process."""

    def __init__(self, sweep: SweepSpec, run_dir: str | Path, force: bool = False, ddp: str = "none") -> None:
        self.sweep = sweep
        self.ddp = ddp  # "pytorch" / "slurm": each cell trains with DDP across this job's ranks
        self.run = RunDir(run_dir)
        self.run_dir = self.run.root
        self.store = ResultStore(self.run)
        self.force = force
        self._datasets: dict[tuple, object] = {}
        self._strata: dict[tuple, object] = {}
        self.features = FeatureCache()  # encoder features of the frozen protocol, shared by this process's cells
        self.step_flops: dict[str, float] = {}  # one training step's FLOPs per flops_key, counted once per process

    def dataset(self, split: str, entry: dict | None = None):
        """A split of a dataset entry (the spec's shared ``dataset`` by default), built once per process."""
        kwargs = {k: v for k, v in (entry or self.sweep.dataset).items() if k not in CELL_OVERRIDES}
        key = (split, config_hash(kwargs))
        if key not in self._datasets:
            name = kwargs.pop("name")
            self._datasets[key] = build_dataset(name, split, **kwargs)
        return self._datasets[key]

    def cell_dataset(self, cell: Cell, split: str):
        return self.dataset(split, self.sweep.entry(cell.task, cell.dataset))

    def prepare(self, cells: list[Cell]) -> None:
        """Build (or generate) the train and test splits the cells need; fails early on a missing dataset."""
        for task, name in dict.fromkeys((c.task, c.dataset) for c in cells):
            for split in ("train", "test"):
                self.dataset(split, self.sweep.entry(task, name))

    def subset(self, task: Task, cell: Cell) -> LabelSubset:
        """The cell's labelled subset: a prefix of one seeded, stratified order of the training split."""
        train = self.cell_dataset(cell, "train")
        key = (cell.task, cell.dataset, cell.split_seed)
        if key not in self._strata:
            self._strata[key] = np.asarray(task.strata(train))
        indices = nested_label_subsets(self._strata[key], [cell.fraction], cell.split_seed,
                                       every_stratum=task.every_stratum)[cell.fraction]  # fmt: skip
        return LabelSubset(train, indices, cell.fraction, strata=self._strata[key][indices])

    def pending(self, cells: list[Cell], accept_stale: bool = False) -> list[Cell]:
        """The ``cells`` without an ``ok`` row for their config hash (all of them with ``force``).

        A cell whose only ``ok`` row was computed by other code (same cell key, another code fingerprint)
        is stale and runs again; ``accept_stale`` keeps such rows instead.
        """
        if self.force:
            return list(cells)
        done = self.store.done_config_hashes()
        todo = [c for c in cells if c.config_hash not in done]
        if accept_stale:
            kept = self.store.done_cell_keys()
            todo = [c for c in todo if c.cell_key not in kept]
        return todo

    def stale(self, cells: list[Cell]) -> list[Cell]:
        """The ``cells`` whose ``ok`` row comes from other code than this checkout's."""
        done, keys = self.store.done_config_hashes(), self.store.done_cell_keys()
        return [c for c in cells if c.config_hash not in done and c.cell_key in keys]

    def build_task(self, cell: Cell) -> Task:
        """The cell's task; ``class_names`` come from the dataset's metainfo (the key the task declares)
        unless the spec sets them."""
        task, options = cell.task_impl, cell.config["task_kwargs"]
        if "class_names" in options or "class_names" not in inspect.signature(type(task)).parameters:
            return task
        meta = getattr(self.cell_dataset(cell, "train"), "metainfo", {}) or {}
        names = meta.get(task.class_names_key)
        return get_task(cell.task, **options, class_names=tuple(names)) if names else task

    @staticmethod
    def feature_key(cell: Cell) -> str:
        """What a cell's cached encoder features are of: the same key means the same features.

        A backbone without a checkpoint is initialised from the training seed, so its features are too.
        """
        cfg = cell.config
        key = {"backbone": cell.backbone, "checkpoint": cfg["checkpoint"], "kwargs": cfg["backbone_kwargs"],
               "dataset": cfg["dataset"], "modalities": list(cell.modalities), "code": cfg["code"]}  # fmt: skip
        if cell.checkpoint is None:
            key["train_seed"] = cell.train_seed
        return config_hash(key)

    @staticmethod
    def flops_key(cell: Cell) -> str:
        """What one training step's FLOPs depend on: the model (task and backbone as configured), its inputs and
        the batch, not the weights; cells sharing it share one count."""
        cfg = cell.config
        key = {"task": cell.task, "task_kwargs": cfg["task_kwargs"], "backbone": cell.backbone,
               "kwargs": cfg["backbone_kwargs"], "modalities": list(cell.modalities), "protocol": cell.protocol,
               "batch_size": cfg["budget"]["batch_size"], "dataset": cfg["dataset"]}  # fmt: skip
        return config_hash(key)

    def corrupted_tests(self, cell: Cell) -> dict[str, CorruptedDataset]:
        """The cell's corrupted test passes: name -> the test split under that corruption (seeded, never cached)."""
        if not cell.passes:
            return {}
        test = self.cell_dataset(cell, "test")
        inputs = input_keys(cell.task_impl, cell.config["modalities"])
        return {p.name: CorruptedDataset(test, p.corruption, p.severity, p.seed, inputs) for p in cell.passes}

    @staticmethod
    def split_for_selection(subset: LabelSubset, budget: TrainBudget, split_seed: int):
        """(fit part, validation part) of the labelled subset, the validation part stratified like the subset."""
        n_val = budget.validation_size(len(subset))
        if n_val == 0:
            return subset, None
        fit, val = carve_validation(subset.strata, n_val, split_seed)
        indices = np.asarray(subset.indices)
        return Subset(subset.dataset, indices[fit].tolist()), Subset(subset.dataset, indices[val].tolist())

    def plan(self, cell: Cell, task: Task, fit, val) -> FinetunePlan:
        """What ``tasks.finetune`` trains for ``cell``: its data, budget, seed, protocol and work dir."""
        kwargs = cell.config["backbone_kwargs"]
        return FinetunePlan(
            task=task,
            build_backbone=lambda: backbones.build(cell.backbone, cell.modalities, cell.checkpoint, **kwargs),
            train_set=fit,
            test_set=self.cell_dataset(cell, "test"),
            modalities=cell.modalities,
            budget=cell.budget,
            seed=cell.train_seed,
            work_dir=self.run.cell(cell.config_hash),
            val_set=val,
            protocol=cell.protocol,
            feature_cache=self.features if cell.protocol == "frozen" else None,
            feature_key=self.feature_key(cell),
            ddp=self.ddp,
            extra_tests=self.corrupted_tests(cell),
            flops_cache=self.step_flops,
            flops_key=self.flops_key(cell),
        )

    def tracking(self, cell: Cell) -> Tracking | None:
        """Where the cell's training curves also go (the spec's ``tracking``), tagged with what the cell is."""
        settings = parse_tracking(self.sweep.tracking)
        tags = {**{k: getattr(cell, k) for k in IDENTITY}, "config_hash": cell.config_hash}
        return Tracking(settings, self.run.tracking, tags) if settings else None

    def failed_rows(self, cell: Cell, status: str, wall_time_s: float = 0.0, n_train: int = 0) -> list[dict]:
        return failed_rows(cell, status, wall_time_s, n_train)

    def run_cell(self, cell: Cell, progress: Callable[[int, int], None] | None = None) -> list[dict]:
        """Train and evaluate one cell; a failure becomes a ``failed: reason`` row, never a silent gap.

        The rows hold what was measured (metrics); the per-tile statistics go next to the cell's work files,
        and every interval is computed from them when the run is read (``benchmark.analysis``).
        """
        cell_start = time.perf_counter()
        passes, skipped = corruption_plan(self.sweep, cell)
        robustness = {"corruptions": {"passes": {p.name: p.config_hash for p in cell.passes}, "skipped": skipped}}
        # What the report's provenance reads; inapplicable corruptions are said there, never dropped silently.
        write_provenance(self.run.provenance(cell.config_hash), cell.config, **(robustness if passes or skipped
                                                                                 else {}))  # fmt: skip
        start, n_train, options, extra = time.perf_counter(), 0, "", {}
        try:
            task = self.build_task(cell)
            options = cell.budget.options()
            labelled = self.subset(task, cell)
            n_train = len(labelled)
            if split := (getattr(labelled.dataset, "metainfo", None) or {}).get("split_protocol"):
                extra["data_split"] = split  # how a reader without official splits drew them (rsdatasets/generic.py)
            fit, val = self.split_for_selection(labelled, cell.budget, cell.split_seed)
            result = finetune(self.plan(cell, task, fit, val), progress, should_stop=stop_requested,
                              tracking=self.tracking(cell))  # fmt: skip
        except Exception as exc:  # a failed cell is a row with its reason
            error = self.run.error_log(cell.config_hash)
            error.parent.mkdir(parents=True, exist_ok=True)
            error.write_text(traceback.format_exc())
            return failed_rows(cell, failure_status(exc), time.perf_counter() - start, n_train)
        if result.tile_stats:
            save_tile_stats(self.run.tile_stats(cell.config_hash), result.tile_stats, task=cell.task,
                            metric=task.primary_metric)  # fmt: skip
        for test in cell.passes:  # under the pass's own hash, so paired clean-vs-corrupted intervals find them
            measured = result.extra_tests.get(test.name)
            if measured is not None and measured.tile_stats:
                save_tile_stats(self.run.tile_stats(test.config_hash), measured.tile_stats, task=cell.task,
                                metric=task.primary_metric, corruption=test.corruption, severity=test.severity,
                                trained_config_hash=cell.config_hash)  # fmt: skip
        return result_rows(cell, task, result, n_train=n_train, train_options=options,
                           cell_time_s=time.perf_counter() - cell_start, **extra)  # fmt: skip
