"""What a sweep runs: the spec (an mmengine config such as ``configs/sweeps/demo.py``), parsed and checked.

A spec file may inherit another with ``_base_ = ["./_base_/....py"]`` (mmengine merges dicts key by key and
replaces lists), so presets share their backbones, tasks and budgets. Names starting with ``_`` are the file's
own helper variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mmengine.config import Config

import backbones
from rsdatasets import dataset_class, list_datasets
from rsdatasets.corruptions import SEVERITIES
from tasks import PROTOCOLS, TrainBudget, get_task
from tasks.tracking import parse_tracking

from .pretrain_stage import check_entries, pretrain_reference
from .rundir import RunDir

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
    # Test-time corruptions (rsdatasets/corruptions.py): [dict(name="gaussian_noise", severities=[1, 3], seed=0), ...].
    # Each trained cell is tested again on corrupted copies of its test split (no retraining), rows of their own.
    corruptions: list[dict] = field(default_factory=list)

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict | None = None) -> SweepSpec:
        """Read a sweep config (mmengine: ``_base_`` files are merged in; ``overrides``: ``--cfg-options`` keys);
        unknown or missing fields get one clear error."""
        # Names starting with "_" are the spec file's own helper variables (and ``_base_``).
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
        self.corruption_passes()
        for b in self.backbones:
            backbones.get_entry(b["name"])
            if b.get("checkpoint") and not pretrain_reference(b["checkpoint"]) and not Path(b["checkpoint"]).is_file():
                how = b.get("hint") or "pretrain or convert it first"
                raise FileNotFoundError(
                    f"checkpoint {b['checkpoint']} of backbone {b['name']} does not exist "
                    f"(relative paths are taken from the current directory); {how}"
                )
        self._check_labels()
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
        run = RunDir(run_dir)
        for b in self.backbones:
            ref = pretrain_reference(b.get("checkpoint"))
            resolved.append(dict(b, checkpoint=str(run.encoder(ref))) if ref else b)
        return replace(self, backbones=resolved)

    def corruption_passes(self) -> list[tuple[str, int, int]]:
        """``corruptions`` as (name, severity, seed) test passes, in spec order; one clear error for a bad entry."""
        passes = []
        for entry in self.corruptions:
            if not isinstance(entry, dict) or "name" not in entry or not entry.get("severities"):
                raise ValueError(f"a corruption is dict(name=..., severities=[...], seed=0), got {entry!r}")
            unknown = sorted(set(entry) - {"name", "severities", "seed"})
            if unknown:
                raise ValueError(f"corruption {entry['name']!r}: unknown keys {unknown}; known: name, severities, seed")
            name = entry["name"]
            if name not in SEVERITIES:
                raise ValueError(f"unknown corruption {name!r}; known: {', '.join(SEVERITIES)}")
            levels = len(SEVERITIES[name])
            for severity in entry["severities"]:
                if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= levels:
                    raise ValueError(f"corruption {name!r} has severities 1..{levels}, got {severity!r}")
                passes.append((name, severity, int(entry.get("seed", 0))))
        if len(set(passes)) < len(passes):
            raise ValueError(f"a corruption pass is listed twice in {self.corruptions}")
        return passes

    def _check_labels(self) -> None:
        """A backbone's ``label`` is the name its rows use: a non-empty string that no other entry shows."""
        shown = [b.get("label") or b["name"] for b in self.backbones]
        for i, b in enumerate(self.backbones):
            if "label" not in b:
                continue
            if not isinstance(b["label"], str) or not b["label"].strip():
                raise ValueError(f"backbone {b['name']}: label must be a non-empty string, got {b['label']!r}")
            if b["label"] in shown[:i] + shown[i + 1 :]:
                raise ValueError(f"backbone label {b['label']!r} is already the name of another backbone entry; "
                                 "give each entry its own label")  # fmt: skip

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
