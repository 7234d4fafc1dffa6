"""The cells of a sweep: each expanded from the spec once, with its config, config hash and cell key.

A :class:`Cell` is one training run (a backbone on a task and dataset at one label fraction, protocol, split seed
and training seed). :func:`expand_cells` computes everything that decides its numbers (``cell_config``) and the
two hashes that identify it in the store: ``config_hash`` (with the code fingerprint) and ``cell_key`` (without
it: the same cell computed by other code). The cell carries them, and its task and backbone registration, to
wherever it runs; nothing downstream expands or hashes it again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from itertools import product
from typing import NamedTuple

import backbones
from rsdatasets.corruptions import applicable
from tasks import Task, TrainBudget, get_task

from .pretrain_stage import pretrain_reference
from .provenance import code_fingerprint, config_hash
from .spec import CELL_OVERRIDES, SweepSpec

#: The fields that say which cell it is (``Cell`` compares and hashes by these; its config follows from them).
IDENTITY = ("backbone", "checkpoint", "task", "fraction", "split_seed", "train_seed", "dataset", "protocol")


class CorruptedPass(NamedTuple):
    """A corrupted test pass of a trained cell: its own rows, tile statistics (``cells/<hash>/``) and hash."""

    corruption: str
    severity: int
    seed: int
    config_hash: str

    @property
    def name(self) -> str:
        """What the pass is, in a feature-cache key or a log line: ``gaussian_noise/2/seed0``."""
        return f"{self.corruption}/{self.severity}/seed{self.seed}"


@dataclass(frozen=True)
class Cell:
    """One training run: a backbone on a task and dataset at one label fraction with one split and training seed.

    Built by :func:`expand_cells`, which fills ``config`` (what decides the numbers), ``config_hash`` and
    ``cell_key``. ``task_impl`` (the Task the config describes) and ``backbone_entry`` (the registration) are
    looked up once, on first use, and not pickled (a cell sent to a worker looks them up there).
    """

    backbone: str
    checkpoint: str | None
    task: str
    fraction: float
    split_seed: int
    train_seed: int
    dataset: str = ""
    protocol: str = "finetune"
    #: The name its rows use (the spec entry's ``label``); "" = the registered name ``backbone``.
    backbone_label: str = ""
    config: dict = field(default_factory=dict, compare=False, repr=False)
    config_hash: str = field(default="", compare=False, repr=False)
    cell_key: str = field(default="", compare=False, repr=False)

    @property
    def shown_backbone(self) -> str:
        """The backbone as rows, reports and logs name it: the spec's ``label``, else the registered name."""
        return self.backbone_label or self.backbone

    def label(self) -> str:
        return (f"{self.shown_backbone} {self.task}/{self.dataset} {self.protocol} {self.fraction:g} "
                f"s{self.split_seed}/{self.train_seed}")  # fmt: skip

    def log_name(self) -> str:
        """What the cell's log file is called (before its hash)."""
        return (f"{self.task}_{self.dataset}_{self.shown_backbone}_f{self.fraction:g}_s{self.split_seed}-"
                f"{self.train_seed}")  # fmt: skip

    @property
    def passes(self) -> list[CorruptedPass]:
        """The corrupted test passes the cell runs after its clean test (the applicable ones of the spec's)."""
        return [CorruptedPass(name, severity, seed, config_hash({"cell": self.config_hash, "corruption": name,
                                                            "severity": severity, "seed": seed}))
                for name, severity, seed in self.config.get("corruptions", [])]  # fmt: skip

    @cached_property
    def task_impl(self) -> Task:
        """The cell's task as its config describes it (class names may still come from the dataset)."""
        return get_task(self.task, **self.config.get("task_kwargs", {}))

    @cached_property
    def backbone_entry(self) -> backbones.BackboneEntry:
        return backbones.get_entry(self.backbone)

    @property
    def budget(self) -> TrainBudget:
        return TrainBudget(**self.config["budget"])

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the task feeds the backbone (it may narrow the spec's)."""
        return self.task_impl.input_modalities(self.config["modalities"])

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("task_impl", "backbone_entry")}


def expand_cells(spec: SweepSpec) -> list[Cell]:
    """All cells of the sweep, in a stable order (backbone, task, dataset, protocol, fraction, split seed, train seed).

    Backbone-major, so that cells sharing an encoder's cached features run one after another.
    """
    cells = []
    for b, t in product(spec.backbones, spec.tasks):
        for e in spec.entries(t):
            for p, f, s, r in product(spec.protocols_of(t, e["name"]), e.get("fractions", spec.fractions),
                                      spec.split_seeds, spec.train_seeds):  # fmt: skip
                cells.append(Cell(b["name"], b.get("checkpoint"), t, float(f), s, r, e["name"], p,
                                  b.get("label") or ""))  # fmt: skip
    return [_hashed(spec, c) for c in cells]


def _hashed(spec: SweepSpec, cell: Cell) -> Cell:
    config = cell_config(spec, cell)
    identity = {k: getattr(cell, k) for k in (*IDENTITY, "backbone_label")}
    return Cell(**identity, config=config, config_hash=config_hash(config), cell_key=cell_key(config))


def input_keys(task: Task, modalities) -> set[str]:
    """The sample keys a task's model reads as input (every date of a change pair), given the spec's modalities."""
    return {key for view in task.feature_views(task.input_modalities(modalities)).values() for key in view.values()}


def corruption_plan(spec: SweepSpec, cell: Cell) -> tuple[list[tuple[str, int, int]], list[str]]:
    """(the spec's corruption passes that apply to the cell, a note per corruption that does not, with the reason).

    A corruption applies where ``rsdatasets.corruptions.applicable`` says so for the keys the cell's model reads:
    e.g. a missing DSM only for a cell fed RGB and DSM, never for depth (whose DSM is its target).
    """
    passes = spec.corruption_passes()
    if not passes:
        return [], []
    task = get_task(cell.task, **spec.task_options(cell.task, cell.dataset))
    inputs = input_keys(task, spec.entry(cell.task, cell.dataset).get("modalities", spec.modalities))
    kept = [p for p in passes if applicable(p[0], inputs)]
    skipped = [f"{name}: not applicable to {cell.task} (its model reads {'+'.join(sorted(inputs))})"
               for name in dict.fromkeys(p[0] for p in passes if p not in kept)]  # fmt: skip
    return kept, skipped


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
    bkw = next(b.get("kwargs", {}) for b in spec.backbones if b["name"] == cell.backbone and
               b.get("checkpoint") == cell.checkpoint and (b.get("label") or "") == cell.backbone_label)  # fmt: skip
    entry = spec.entry(cell.task, cell.dataset)
    passes = corruption_plan(spec, cell)[0]
    return {
        **{k: getattr(cell, k) for k in IDENTITY if k != "dataset"},
        "code": code_fingerprint(),
        "checkpoint": checkpoint_hash(cell.checkpoint),
        "backbone_kwargs": bkw,
        "dataset": {k: v for k, v in entry.items() if k not in CELL_OVERRIDES},
        "modalities": list(entry.get("modalities", spec.modalities)),
        "budget": TrainBudget(**spec.budget(cell.task, cell.dataset)).hashed(),  # recipe defaults left out
        "task_kwargs": spec.task_options(cell.task, cell.dataset),
        **({"world_size": world} if (world := _world_size()) > 1 else {}),  # DDP changes the numbers
        # Only when set, so cells of specs without them keep their hashes: a label renames the rows, and the cell
        # must run again to test the trained model on corrupted copies (the model itself is not kept).
        **({"label": cell.backbone_label} if cell.backbone_label else {}),
        **({"corruptions": [list(p) for p in passes]} if passes else {}),
    }


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def cell_hash(spec: SweepSpec, cell: Cell) -> str:
    """The cell's config hash (as expanded, or computed for a cell built by hand)."""
    return cell.config_hash or config_hash(cell_config(spec, cell))


def cell_key(config: dict) -> str:
    """The cell's identity without the code version: rows of the same cell computed by other code share it."""
    return config_hash({k: v for k, v in config.items() if k != "code"})
