"""Label-fraction sweeps: backbones x tasks x fractions x seeds, one result row per cell and metric."""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from itertools import product
from pathlib import Path

from mmengine.config import Config

import backbones
from tasks import TrainBudget, finetune, get_task

from .data import build_dataset
from .provenance import code_version, config_hash, hardware
from .results import ResultStore
from .splits import LabelSubset, nested_label_subsets


@dataclass
class SweepSpec:
    """What a sweep runs; loaded from an mmengine config such as ``configs/sweeps/demo.py``."""

    name: str
    backbones: list[dict]  # each {"name": ..., "checkpoint": path or None, "kwargs": {...}}
    tasks: list[str]
    dataset: dict  # {"name": "synthetic", **dataset kwargs}
    fractions: list[float]
    split_seeds: list[int] = field(default_factory=lambda: [0])
    train_seeds: list[int] = field(default_factory=lambda: [0])
    modalities: list[str] = field(default_factory=lambda: ["rgb", "dsm"])
    budgets: dict = field(default_factory=dict)  # task -> TrainBudget kwargs
    task_kwargs: dict = field(default_factory=dict)  # task -> Task kwargs

    @classmethod
    def from_file(cls, path: str | Path) -> SweepSpec:
        """Read a sweep config; unknown or missing fields get one clear error."""
        # Names starting with "_" are the spec file's own helper variables.
        cfg = {k: v for k, v in Config.fromfile(str(path)).to_dict().items() if not k.startswith("_")}
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

    def validate(self) -> None:
        """Fail before any training on a typo: fractions, backbone and task names, budget keys."""
        for f in self.fractions:
            if not 0 < f <= 1:
                raise ValueError(f"label fraction {f} is outside (0, 1]")
        for b in self.backbones:
            backbones.get_spec(b["name"])
            if b.get("checkpoint") and not Path(b["checkpoint"]).is_file():
                raise FileNotFoundError(
                    f"checkpoint {b['checkpoint']} of backbone {b['name']} does not exist "
                    "(relative paths are taken from the current directory; pretrain or convert it first)"
                )
        for t in self.tasks:
            get_task(t, **self.task_kwargs.get(t, {}))
        for t, budget in self.budgets.items():
            unknown = sorted(set(budget) - set(TrainBudget.__dataclass_fields__))
            if unknown:
                raise ValueError(
                    f"unknown budget keys {unknown} for task {t}; known: {sorted(TrainBudget.__dataclass_fields__)}"
                )


@dataclass(frozen=True)
class Cell:
    """One training run: a backbone on a task at one label fraction with one split and training seed."""

    backbone: str
    checkpoint: str | None
    task: str
    fraction: float
    split_seed: int
    train_seed: int

    def label(self) -> str:
        return f"{self.backbone} {self.task} {self.fraction:g} s{self.split_seed}/{self.train_seed}"


def expand_cells(spec: SweepSpec) -> list[Cell]:
    """All cells of the sweep, in a stable order (backbone, task, fraction, split seed, train seed)."""
    return [
        Cell(b["name"], b.get("checkpoint"), t, float(f), s, r)
        for b, t, f, s, r in product(spec.backbones, spec.tasks, spec.fractions, spec.split_seeds, spec.train_seeds)
    ]


def cell_config(spec: SweepSpec, cell: Cell) -> dict:
    """Everything that determines a cell's numbers; its hash identifies the cell in the store."""
    bkw = next(b.get("kwargs", {}) for b in spec.backbones if b["name"] == cell.backbone)
    return {
        **asdict(cell),
        "checkpoint": backbones.file_hash(cell.checkpoint),
        "backbone_kwargs": bkw,
        "dataset": spec.dataset,
        "modalities": list(spec.modalities),
        "budget": asdict(TrainBudget(**spec.budgets.get(cell.task, {}))),
        "task_kwargs": spec.task_kwargs.get(cell.task, {}),
    }


class SweepRunner:
    """Runs the cells of a spec into ``run_dir`` (results, per-cell logs), skipping finished ones."""

    def __init__(self, spec: SweepSpec, run_dir: str | Path, force: bool = False) -> None:
        self.spec = spec
        self.run_dir = Path(run_dir)
        self.store = ResultStore(self.run_dir)
        self.force = force
        self._datasets: dict[str, object] = {}
        self._subsets: dict[tuple, dict] = {}

    def dataset(self, split: str):
        if split not in self._datasets:
            kwargs = {k: v for k, v in self.spec.dataset.items() if k != "name"}
            self._datasets[split] = build_dataset(self.spec.dataset["name"], split, **kwargs)
        return self._datasets[split]

    def subset(self, task, fraction: float, split_seed: int):
        key = (task.name, split_seed)
        if key not in self._subsets:
            strata = task.strata(self.dataset("train"))
            self._subsets[key] = nested_label_subsets(strata, self.spec.fractions, split_seed)
        return LabelSubset(self.dataset("train"), self._subsets[key][fraction], fraction)

    def pending(self) -> list[Cell]:
        """Cells without an ``ok`` row for their config hash (all cells with ``force``)."""
        cells = expand_cells(self.spec)
        if self.force:
            return cells
        done = self.store.done_config_hashes()
        return [c for c in cells if config_hash(cell_config(self.spec, c)) not in done]

    def run_cell(self, cell: Cell, progress: Callable[[int, int], None] | None = None) -> list[dict]:
        """Train and evaluate one cell; a failure becomes a ``failed: reason`` row, never a silent gap."""
        cfg = cell_config(self.spec, cell)
        chash = config_hash(cfg)
        task = get_task(cell.task, **cfg["task_kwargs"])
        spec = backbones.get_spec(cell.backbone)
        modalities = task.input_modalities(self.spec.modalities)
        base = {
            "method": spec.method, "backbone": cell.backbone, "arch": spec.arch,
            "checkpoint_hash": cfg["checkpoint"], "task": cell.task, "dataset": self.spec.dataset["name"],
            "modalities": "+".join(modalities), "fraction": cell.fraction, "split_seed": cell.split_seed,
            "train_seed": cell.train_seed, "config_hash": chash, "code_version": code_version(),
            "device": hardware(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }  # fmt: skip
        work_dir = self.run_dir / "cells" / chash
        start = time.perf_counter()
        try:
            train = self.subset(task, cell.fraction, cell.split_seed)
            base["n_train"] = len(train)
            result = finetune(
                task,
                lambda: backbones.build(cell.backbone, modalities, cell.checkpoint, **cfg["backbone_kwargs"]),
                train,
                self.dataset("test"),
                modalities,
                TrainBudget(**cfg["budget"]),
                cell.train_seed,
                work_dir,
                progress,
            )
        except Exception as exc:  # a failed cell is a row with its reason
            work_dir.mkdir(parents=True, exist_ok=True)
            (work_dir / "error.log").write_text(traceback.format_exc())
            reason = f"failed: {exc.__class__.__name__}: {exc}".splitlines()[0][:300]
            return [{**base, "n_train": base.get("n_train", 0), "metric": task.primary_metric, "value": math.nan,
                     "status": reason, "wall_time_s": time.perf_counter() - start}]  # fmt: skip
        base["wall_time_s"] = result.wall_time_s
        return [{**base, "metric": k, "value": v, "status": "ok"} for k, v in result.metrics.items()]


def run_sweep(spec: SweepSpec, run_dir: str | Path, force: bool = False, console=None) -> Path:
    """Run every pending cell with a rich progress display, then write tables and plots into ``run_dir``."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .report import write_summary

    console = console or Console()
    runner = SweepRunner(spec, run_dir, force=force)
    runner.run_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        runner.dataset(split)  # generate data before the clock of the first cell starts
    cells = runner.pending()
    total = len(expand_cells(spec))
    console.print(
        f"sweep [bold]{spec.name}[/bold]: {total} cells, {total - len(cells)} already done -> {runner.run_dir}"
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())  # fmt: skip
    failed = 0
    with Progress(*columns, console=console) as progress:
        overall = progress.add_task("cells", total=len(cells))
        for cell in cells:
            budget = TrainBudget(**spec.budgets.get(cell.task, {}))
            current = progress.add_task(f"  {cell.label()}", total=budget.max_iters)
            rows = runner.run_cell(cell, progress=lambda i, n, t=current: progress.update(t, completed=i))
            runner.store.append(rows)
            progress.remove_task(current)
            progress.advance(overall)
            if rows[0]["status"] != "ok":
                failed += 1
                progress.console.print(f"[red]{cell.label()}: {rows[0]['status']}[/red]", highlight=False)
    write_summary(runner.store.load(), spec, runner.run_dir, console)
    if failed:
        console.print(f"[red]{failed} cell(s) failed; see {runner.run_dir}/cells/<hash>/error.log[/red]")
    return runner.run_dir
