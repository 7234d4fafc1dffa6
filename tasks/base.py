"""What a downstream task is: a model builder, a batch adapter and a metric, plus the task registry."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from torch import nn

from rsbench.registry import TASKS, lookup, registered


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: register a Task under ``name`` (``rsbench finetune --task NAME``); a second class
    under the same name is refused. A new task is its module plus, if it lives outside ``tasks/``, its
    name in ``$RSBENCH_PLUGINS``."""

    def decorator(cls: type[Task]) -> type[Task]:
        cls.name = name
        TASKS.register_module(name=name, module=cls)
        return cls

    return decorator


def list_tasks() -> list[str]:
    """Registered task names (built-in and plugins)."""
    return sorted(registered(TASKS))


def task_class(name: str) -> type[Task]:
    """The registered Task class of ``name``; unknown names get one clear error with close matches."""
    return lookup(TASKS, name, "task", "Registered tasks: " + ", ".join(sorted(registered(TASKS))))


def get_task(name: str, **kwargs) -> Task:
    """Instantiate a registered task; unknown names and options get one clear error."""
    import inspect

    cls = task_class(name)
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for task {name!r}; it takes "
                             f"{sorted(k for k in params if k != 'self')}")  # fmt: skip
    return cls(**kwargs)


#: How a cell uses the backbone: ``frozen`` trains the task side (pyramid + head) on encoder features
#: computed once and cached; ``finetune`` trains the whole network.
PROTOCOLS = ("frozen", "finetune")


#: TrainBudget fields of the fine-tuning recipe (tasks.recipe): in the hash and the row only when not at their default.
RECIPE_FIELDS = ("optimizer", "momentum", "backbone_lr_mult", "layer_decay", "no_decay_keys", "no_decay_1d",
                 "drop_path_rate", "warmup_start", "warmup_fraction", "decay", "eta_min", "poly_power", "decay_iters",
                 "step_milestones", "step_gamma", "clip_grad")  # fmt: skip


@dataclass
class TrainBudget:
    """How much training a cell gets, and how its checkpoint is selected.

    Iterations: with ``epochs`` set, ``ceil(epochs * n_fit / batch_size)`` clipped to
    ``[min_iters, max_iters]``, where ``n_fit`` is the labelled subset minus its validation part.
    Epochs, because a fixed iteration count trains a 1 % subset hundreds of epochs and the full
    split only a few (scores then fall with more labels); the floor keeps tiny subsets from getting
    a handful of steps, the cap bounds the cost of the full split. ``epochs=None`` keeps a fixed
    ``max_iters`` whatever the fraction.

    Selection: ``val_fraction`` of the labelled subset (stratified, at least one sample) is held out
    and the model is evaluated on it ``val_checks`` times, evenly spaced (the last at the end); the
    best check by the task's primary metric is the model that meets the test split, once. Subsets
    smaller than ``min_labelled_for_val`` are too small to spare a validation sample: they train on
    every sample and keep the last iterate. The rule and the chosen iteration go into the row.
    """

    max_iters: int = 200
    epochs: float | None = None
    min_iters: int = 0
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_iters: int = 20
    eval_batch_size: int = 16
    log_interval: int = 10
    val_fraction: float = 0.2
    val_checks: int = 5
    min_labelled_for_val: int = 5
    # Speed options (each changes numbers a little, so each is in the cell hash and the row):
    amp: str = "none"  # "bf16": autocast the training step to bfloat16 (CPU and GPU; no loss scaling needed)
    grad_checkpointing: bool = False  # recompute ViT blocks in the backward pass (ViT-B/L memory)
    channels_last: bool = False  # NHWC memory format for the model and inputs (CNN backbones)
    compile: bool = False  # torch.compile the backbone
    fused_attn: bool = True  # scaled_dot_product_attention in every ViT block (False: timm's explicit path)
    # The fine-tuning recipe (docs/finetune.md; built by tasks.recipe through mmengine / mmpretrain). The defaults are
    # the harness's first recipe: one AdamW lr for every parameter, decay on all of them, no drop path, linear
    # warm-up from 1e-3 x lr, cosine to 0, gradients clipped at norm 1. Fields at their defaults stay out of the
    # cell hash (``hashed``), so cells stored before these fields existed keep their identity.
    optimizer: str = "AdamW"  # "AdamW", "SGD" (with ``momentum``) or "Adan" (mmpretrain's)
    momentum: float = 0.9  # SGD only
    backbone_lr_mult: float = 1.0  # lr multiplier of the encoder (the modules the frozen protocol freezes)
    layer_decay: float = 1.0  # layer-wise lr decay: a block k below the top gets lr x layer_decay**k (1: off)
    no_decay_keys: tuple[str, ...] = ()  # parameter-name substrings whose weight decay is 0 (e.g. "norm", "bias")
    no_decay_1d: bool = False  # weight decay 0 on every 1-D parameter (biases, norm weights), timm's rule
    drop_path_rate: float = 0.0  # stochastic depth of the encoder's last block (linear in depth, as timm)
    warmup_start: float = 1e-3  # LinearLR start factor of the warm-up
    warmup_fraction: float = 0.0  # warm-up as a fraction of the cell's iterations (> 0: replaces warmup_iters)
    decay: str = "cosine"  # after the warm-up: "cosine", "poly" (PolyLR, ``poly_power``) or "step" (MultiStepLR)
    eta_min: float = 0.0  # the lr the cosine / poly decay ends at
    poly_power: float = 1.0
    decay_iters: int | None = None  # the decay planned over this many iterations (None: the cell's own)
    step_milestones: tuple[float, ...] = ()  # "step": fractions of the iterations where lr is multiplied by step_gamma
    step_gamma: float = 0.1
    clip_grad: float = 1.0  # max gradient norm (0: no clipping)

    def __post_init__(self) -> None:
        # Configs and JSON give lists, the CLI a bare value for one item (``--budget no_decay_keys=norm``); tuples
        # keep the budget hashable and its defaults comparable.
        keys, milestones = self.no_decay_keys, self.step_milestones
        self.no_decay_keys = (keys,) if isinstance(keys, str) else tuple(keys)
        self.step_milestones = tuple(float(m) for m in (milestones if isinstance(milestones, list | tuple) else
                                                        (milestones,)))  # fmt: skip

    def recipe_changes(self) -> dict:
        """The recipe fields that differ from their defaults (what the row's ``train_options`` and the hash add)."""
        defaults = TrainBudget.__dataclass_fields__
        return {name: getattr(self, name) for name in RECIPE_FIELDS if getattr(self, name) != defaults[name].default}

    def hashed(self) -> dict:
        """What enters the cell hash: every field, except recipe fields left at their defaults.

        A budget that changes nothing of the recipe hashes exactly as before the recipe fields existed.
        """
        out = asdict(self)
        for name in RECIPE_FIELDS:
            out.pop(name)
        return {**out, **{k: list(v) if isinstance(v, tuple) else v for k, v in self.recipe_changes().items()}}

    def options(self) -> str:
        """The speed and recipe options that differ from their defaults, e.g. ``amp=bf16,grad_checkpointing``;
        "" if none."""
        out = []
        if self.amp != "none":
            out.append(f"amp={self.amp}")
        out += [name for name in ("grad_checkpointing", "channels_last", "compile") if getattr(self, name)]
        if not self.fused_attn:
            out.append("fused_attn=False")
        for name, value in self.recipe_changes().items():
            shown = "/".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) if isinstance(
                value, tuple) else (f"{value:g}" if isinstance(value, float) else value)  # fmt: skip
            out.append(f"{name}={shown}")
        return ",".join(out)

    def iterations(self, n_fit: int) -> int:
        """Training iterations for ``n_fit`` training samples (see the class docstring)."""
        if self.epochs is None:
            return int(self.max_iters)
        iters = math.ceil(self.epochs * max(n_fit, 1) / self.batch_size)
        return int(min(max(iters, self.min_iters, 1), self.max_iters))

    def validation_size(self, n_labelled: int) -> int:
        """How many of ``n_labelled`` samples are held out for model selection (0: keep the last iterate)."""
        if self.val_checks <= 0 or self.val_fraction <= 0 or n_labelled < self.min_labelled_for_val:
            return 0
        return int(min(max(1, round(self.val_fraction * n_labelled)), n_labelled - 1))


@dataclass(frozen=True)
class MetricInfo:
    """A metric a task reports. ``name`` ending in "." or "_" is a family: ``IoU.`` covers ``IoU.building``."""

    name: str
    higher_is_better: bool = True

    def matches(self, metric: str) -> bool:
        return metric == self.name or (self.name[-1] in "._" and metric.startswith(self.name))


class TiledMetric(BaseMetric):
    """An mmengine metric that also keeps the per-tile sufficient statistics of its primary value.

    ``compute_metrics`` stores ``tile_stats(results)`` in ``last_tile_stats`` before computing the
    metrics, so the caller can bootstrap over test tiles afterwards: ``resample(stats, weights)``
    recomputes the primary metric for every row of a (R, n_tiles) matrix of tile multiplicities
    (a row of ones gives the reported value). Subclasses implement ``metrics_from``, ``tile_stats``
    and ``resample``; ``primary`` names the metric ``resample`` computes.
    """

    default_prefix = ""
    primary: str = ""
    #: Model selection needs only the primary metric: computed from the tile statistics, skipping the rest
    #: (e.g. detection's COCO mAP) at every validation check.
    primary_only: bool = False

    def compute_metrics(self, results: list) -> dict[str, float]:
        self.last_tile_stats = self.tile_stats(results)
        if self.primary_only:
            n = len(next(iter(self.last_tile_stats.values()))) if "gt_count" not in self.last_tile_stats else len(
                self.last_tile_stats["gt_count"])  # fmt: skip
            return {self.primary: float(self.resample(self.last_tile_stats, np.ones((1, n)))[0])}
        return self.metrics_from(results)

    def metrics_from(self, results: list) -> dict[str, float]:
        raise NotImplementedError

    def tile_stats(self, results: list) -> dict[str, np.ndarray]:
        """Per-tile arrays (first axis: tile, in test-set order) from which ``resample`` recomputes ``primary``."""
        raise NotImplementedError

    @staticmethod
    def resample(stats: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        """The primary metric for each row of ``weights`` (R, n_tiles): tile multiplicities of a resample."""
        raise NotImplementedError


def spatial_size(inputs: Mapping) -> tuple[int, int]:
    """Height and width of a batch's input images (also when only cached features and ``image_hw`` remain)."""
    if "image_hw" in inputs:
        return tuple(int(v) for v in inputs["image_hw"][0])
    first = next(v for k, v in inputs.items() if torch.is_tensor(v) and not k.endswith("_valid"))
    return tuple(first.shape[-2:])


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0 (an undefined score, as mmseg's 0/0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


class Task:
    """Base class of downstream tasks.

    A task declares its own facts, so the harness never keeps tables about tasks: ``metrics`` (names
    or families and their direction), ``primary_metric`` (what tables rank by and model selection
    uses), ``class_names_key`` (where a dataset's ``metainfo`` holds this task's class names) and
    ``target_keys`` (sample keys of its targets). ``name`` is set by ``register_task``.
    """

    name: str = ""
    primary_metric: str = ""
    metrics: tuple[MetricInfo, ...] = ()
    class_names_key: str = "classes"
    #: Keys of a dataset sample that carry this task's targets.
    target_keys: tuple[str, ...] = ()
    #: Whether a labelled subset must hold every stratum (a classifier needs every class at least once).
    every_stratum: bool = False
    #: Seconds per training iteration a ``--dry-run`` assumes until the store has a finished cell of the task:
    #: a rough figure for a ViT-B at the presets' crop sizes on one recent GPU (marked "guess" in the plan).
    seconds_per_iter_guess: float = 0.5

    @classmethod
    def metric_info(cls, metric: str) -> MetricInfo:
        """The declaration of ``metric``; an undeclared metric is an error, never a guessed direction."""
        for info in cls.metrics:
            if info.matches(metric):
                return info
        declared = ", ".join(m.name for m in cls.metrics) or "none"
        raise KeyError(f"task {cls.name!r} does not declare metric {metric!r} (declared: {declared})")

    @classmethod
    def higher_is_better(cls, metric: str) -> bool:
        """Direction of ``metric`` as this task declares it."""
        return cls.metric_info(metric).higher_is_better

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

    def build_metric(self) -> TiledMetric:
        """An mmengine metric over the outputs of the model's ``predict`` mode."""
        raise NotImplementedError

    def resample_primary(self, stats: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        """The primary metric recomputed from per-tile statistics for each row of tile multiplicities."""
        return type(self.build_metric()).resample(stats, weights)

    def feature_views(self, modalities: Sequence[str]) -> dict[str, dict[str, str]]:
        """What the frozen protocol caches per sample: feature key -> {modality: sample key} it is computed from."""
        return {"features": {m: m for m in modalities}}

    def stack_inputs(self, samples: Sequence[Mapping[str, torch.Tensor]], modalities: Sequence[str]) -> dict:
        """``{modality: B...}`` (plus ``<modality>_valid`` nodata masks); one clear error for missing keys.

        Samples that carry cached encoder features (the frozen protocol, ``tasks.features``) stack
        those instead: ``{"features": [B x C x h x w per level], ..., "image_hw": B x 2}``.
        """
        if "image_hw" in samples[0]:
            keys = [k for k in samples[0] if k.startswith("features")]
            batch = {k: [torch.stack(level) for level in zip(*(s[k] for s in samples))] for k in keys}
            batch["image_hw"] = torch.stack([s["image_hw"] for s in samples])
            return batch
        missing = [k for k in (*modalities, *self.target_keys) if k not in samples[0]]
        if missing:
            raise KeyError(f"task {self.name!r} needs sample keys {missing}, the dataset provides {sorted(samples[0])}")
        # Nodata masks travel with their modality so normalisation can ignore those pixels.
        input_keys = [*modalities, *(f"{m}_valid" for m in modalities if f"{m}_valid" in samples[0])]
        return {k: torch.stack([s[k] for s in samples]) for k in input_keys}

    def collate(self, samples: Sequence[Mapping[str, torch.Tensor]], modalities: Sequence[str]) -> dict:
        """Stack dict samples into ``{"inputs": {modality: B...}, "data_samples": {target: B...}}``."""
        missing = [k for k in self.target_keys if k not in samples[0]]
        if missing:
            raise KeyError(f"task {self.name!r} needs sample keys {missing}, the dataset provides {sorted(samples[0])}")
        inputs = self.stack_inputs(samples, modalities)
        targets = {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in self.target_keys}
        return {"inputs": inputs, "data_samples": targets}
