"""What a downstream task is: a model builder, a batch adapter and a metric, plus the task registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from torch import nn

_TASKS: dict[str, type[Task]] = {}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: make a Task available by name (``rsbench finetune --task NAME``)."""

    def decorator(cls: type[Task]) -> type[Task]:
        cls.name = name
        _TASKS[name] = cls
        return cls

    return decorator


def list_tasks() -> list[str]:
    """Registered task names."""
    return sorted(_TASKS)


def get_task(name: str, **kwargs) -> Task:
    """Instantiate a registered task; unknown names get one clear error."""
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; registered tasks: {', '.join(list_tasks())}")
    return _TASKS[name](**kwargs)


@dataclass
class TrainBudget:
    """How much training a cell gets: a fixed iteration budget whatever the label fraction."""

    max_iters: int = 200
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_iters: int = 20
    eval_batch_size: int = 16
    log_interval: int = 10


class Task:
    """Base class of downstream tasks. Subclasses set ``name`` (via register_task) and ``primary_metric``."""

    name: str = ""
    primary_metric: str = ""
    #: Keys of a dataset sample that carry this task's targets.
    target_keys: tuple[str, ...] = ()

    def input_modalities(self, requested: Sequence[str]) -> tuple[str, ...]:
        """The modalities this task feeds the backbone, given those a run asks for.

        Most tasks take them all; a task whose inputs exist only for some modalities (e.g.
        bi-temporal change detection with RGB at both dates) narrows the set here, and the
        result row records what was actually used.
        """
        return tuple(requested)

    def for_budget(self, budget: TrainBudget) -> Task:
        """This task as it should train under ``budget`` (e.g. a norm that works at batch size 1); default self."""
        return self

    def strata(self, dataset) -> np.ndarray:
        """One stratum id per training sample, used to stratify label-fraction subsets."""
        raise NotImplementedError

    def build_model(self, backbone: nn.Module, modalities: Sequence[str]) -> BaseModel:
        """The trainable mmengine model around ``backbone``."""
        raise NotImplementedError

    def build_metric(self) -> BaseMetric:
        """An mmengine metric over the outputs of the model's ``predict`` mode."""
        raise NotImplementedError

    def stack_inputs(self, samples: Sequence[Mapping[str, torch.Tensor]], modalities: Sequence[str]) -> dict:
        """``{modality: B...}`` (plus ``<modality>_valid`` nodata masks); one clear error for missing keys."""
        missing = [k for k in (*modalities, *self.target_keys) if k not in samples[0]]
        if missing:
            raise KeyError(f"task {self.name!r} needs sample keys {missing}, the dataset provides {sorted(samples[0])}")
        # Nodata masks travel with their modality so normalisation can ignore those pixels.
        input_keys = [*modalities, *(f"{m}_valid" for m in modalities if f"{m}_valid" in samples[0])]
        return {k: torch.stack([s[k] for s in samples]) for k in input_keys}

    def collate(self, samples: Sequence[Mapping[str, torch.Tensor]], modalities: Sequence[str]) -> dict:
        """Stack dict samples into ``{"inputs": {modality: B...}, "data_samples": {target: B...}}``."""
        inputs = self.stack_inputs(samples, modalities)
        targets = {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in self.target_keys}
        return {"inputs": inputs, "data_samples": targets}
