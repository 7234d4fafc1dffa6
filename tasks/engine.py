"""The one training + evaluation loop every task uses: an mmengine Runner built from a :class:`FinetunePlan`.

A cell trains on the fit part of its labelled subset, is checked on the validation part (carved
from the same labelled subset by the caller), keeps the best check, and only then meets the test
split, once. Under the frozen protocol the encoder's features come from a cache and only the
task side trains (``tasks.features``). What the optimiser and schedule are is ``tasks.recipe``; the
hooks, quiet runner, autocast wrapper and DDP set-up are ``tasks.runtime``.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmengine.evaluator import Evaluator
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import set_random_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset

from backbones.checkpoint import encoder_parameter_counts
from rsbench.watchdog import CellStalled, beat

from . import recipe
from .base import PROTOCOLS, Task, TrainBudget
from .compute import step_flops
from .features import FeatureCache, FrozenBackbone, WithFeatures, compute_split_features, root_and_indices
from .runtime import (  # noqa: F401  (NonFiniteLossError, Interrupted: the loop's errors, importable from here)
    FiniteLossHook,
    HeartbeatHook,
    Interrupted,
    KeepBestHook,
    NonFiniteLossError,
    ProgressHook,
    QuietConsoleRunner,
    StopHook,
    init_distributed,
    release_runner,
)
from .tracking import Tracking


@dataclass
class FinetunePlan:
    """What one fine-tuning run trains and how: the task, the backbone factory, the data splits, the budget.

    ``build_backbone`` is a factory: the backbone is built after seeding, so the same ``seed`` gives the same
    weights. ``val_set`` (carved from the labelled subset by the caller) selects the checkpoint; ``None`` or
    empty keeps the last iterate. ``protocol="frozen"`` trains the task side on cached encoder features
    (``feature_cache`` under ``feature_key``); ``ddp`` is how this job's ranks were launched (``none``,
    ``pytorch`` under torchrun, ``slurm`` under srun). ``extra_tests`` are further test sets (corrupted copies
    of the test split) the selected model meets after the clean test, once each; the name keys their cached
    features. ``flops_cache`` (None: no count) keeps one training step's FLOPs per ``flops_key``
    (``tasks.compute``).
    """

    task: Task
    build_backbone: Callable[[], nn.Module]
    train_set: Dataset
    test_set: Dataset
    modalities: Sequence[str]
    budget: TrainBudget
    seed: int
    work_dir: str | Path
    val_set: Dataset | None = None
    protocol: str = "finetune"
    feature_cache: FeatureCache | None = None
    feature_key: str = ""
    ddp: str = "none"
    extra_tests: dict[str, Dataset] = field(default_factory=dict)
    flops_cache: dict[str, float] | None = None
    flops_key: str = ""


@dataclass
class PassResult:
    """What one further test pass (``FinetunePlan.extra_tests``) measured."""

    metrics: dict[str, float]
    tile_stats: dict[str, np.ndarray] = field(default_factory=dict)
    wall_time_s: float = 0.0
    #: why the pass failed ("" when it ran): a failed pass never costs the cell its clean result
    error: str = ""


@dataclass
class FinetuneResult:
    """What one fine-tuning cell produced."""

    metrics: dict[str, float]
    loss_history: list[float] = field(default_factory=list)
    n_train: int = 0
    wall_time_s: float = 0.0
    device: str = "cpu"
    log_dir: str = ""
    protocol: str = "finetune"
    iterations: int = 0
    n_val: int = 0
    selected_iter: int = 0
    selection: str = ""
    val_history: list[tuple[int, float]] = field(default_factory=list)
    tile_stats: dict[str, np.ndarray] = field(default_factory=dict)
    arch: str = ""
    #: seconds inside training, validation and test iterations (mmengine's iteration timer); the rest of the
    #: cell's time is set-up: runner construction, model building, feature caching, metrics
    step_time_s: float = 0.0
    #: seconds this cell spent filling the feature cache (frozen protocol; 0 when the features were cached)
    feature_time_s: float = 0.0
    #: the ``extra_tests`` passes, by name
    extra_tests: dict[str, PassResult] = field(default_factory=dict)
    #: matmul/conv FLOPs of one training step of one process (NaN: not counted); ``train_flops`` = that x
    #: iterations x processes
    step_flops: float = math.nan
    world_size: int = 1
    #: seconds the count took (0 when this process had counted the same step before)
    flop_count_s: float = 0.0
    #: the encoder's parameters: total, shared and per modality (``backbones.checkpoint.encoder_parameter_counts``)
    encoder_params: dict[str, int] = field(default_factory=dict)

    @property
    def train_flops(self) -> float:
        return self.step_flops * self.iterations * self.world_size


def apply_speed_options(model: nn.Module, budget: TrainBudget) -> nn.Module:
    """Gradient checkpointing, channels-last, fused attention and torch.compile as ``budget`` asks."""
    backbone = getattr(model, "backbone", None)
    inner = getattr(backbone, "backbone", backbone)  # FrozenBackbone wraps the encoder
    if inner is not None and hasattr(inner, "set_speed_options"):
        inner.set_speed_options(grad_checkpointing=budget.grad_checkpointing, fused_attn=budget.fused_attn)
    if budget.channels_last:
        model = model.to(memory_format=torch.channels_last)
        model.data_preprocessor.channels_last = True
    if budget.compile and backbone is not None:
        model.backbone = torch.compile(backbone)
    return model


def with_cached_features(task: Task, backbone: FrozenBackbone, splits: dict[str, Dataset | None],
                         modalities: Sequence[str], cache: FeatureCache, key: str) -> dict[str, WithFeatures]:
    """The frozen protocol's splits with their encoder features from ``cache`` (computed on a miss), per view.

    Features are cached per ``key`` (what they are of: checkpoint, dataset, modalities), root split and view;
    the fit and validation parts share the train split's features.
    """
    views = task.feature_views(modalities)
    cached = {}
    for split, dataset in splits.items():
        if dataset is None:
            continue
        root_split = "test" if split == "test" else "train"  # val and fit parts share the train split
        parts = {}
        root = root_and_indices(dataset)[0]
        for name, view in views.items():
            cache_key = f"{key}|{root_split}|{sorted(view.items())}"
            parts[name] = (view, cache.get(cache_key, partial(compute_split_features, backbone, root, view)))
        cached[split] = WithFeatures(dataset, parts)
    return cached


def _loader(dataset: Dataset, batch_size: int, collate, sampler) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate, num_workers=0)


def finetune(
    plan: FinetunePlan,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    tracking: Tracking | None = None,
) -> FinetuneResult:
    """Train ``plan.task`` on ``plan.train_set``, select on ``plan.val_set``, then evaluate once on ``plan.test_set``.

    ``budget.iterations(len(train_set))`` iterations from an infinite shuffled sampler. With a
    non-empty ``val_set`` the model is checked ``budget.val_checks`` times and the best check is
    restored before the test; without one the last iterate is tested. The test split is read
    exactly once, after training.

    ``protocol="frozen"`` freezes the encoder (``tasks.features``); with ``feature_cache`` its
    features are computed once per split and view under ``feature_key`` + split + view, and reused
    by every later cell with the same key, else they are recomputed every step. The training seed
    fixes weight init, batch order and augmentation; the backbone is built after seeding (hence a
    factory) so the same seed gives the same numbers on CPU. ``ddp="pytorch"`` (under
    torchrun) or ``"slurm"`` trains one cell with DDP through mmengine: each rank draws its own
    share of batches (``batch_size`` is per process) and evaluates its share of the test set.
    ``progress(iteration, total)`` is called after each training iteration; ``should_stop()`` true
    stops the run after the current iteration (``Interrupted``); ``tracking`` sends the training curves to
    TensorBoard / W&B / MLflow as well (``tasks.tracking``). None of the three changes a number.
    """
    task, budget, modalities, seed, protocol = plan.task, plan.budget, plan.modalities, plan.seed, plan.protocol
    train_set, val_set, test_set = plan.train_set, plan.val_set, plan.test_set
    feature_cache, feature_key, ddp_mode = plan.feature_cache, plan.feature_key, plan.ddp
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    if budget.amp not in ("none", "bf16"):
        raise ValueError(f"unknown amp {budget.amp!r}; choose none or bf16")
    work_dir = Path(plan.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    task = task.for_budget(budget)
    ddp = {}
    if ddp_mode != "none":
        ddp = init_distributed(ddp_mode)  # before the samplers: they read rank and world size
    val_set = val_set if val_set is not None and len(val_set) > 0 else None
    iterations = budget.iterations(len(train_set))
    set_random_seed(seed)
    backbone = plan.build_backbone()
    arch = getattr(backbone, "arch", "")
    params = encoder_parameter_counts(backbone)
    feature_start = time.perf_counter()
    if protocol == "frozen":
        backbone = FrozenBackbone(backbone)
        if feature_cache is not None:
            splits = {"train": train_set, "val": val_set, "test": test_set}
            cached = with_cached_features(task, backbone, splits, modalities, feature_cache, feature_key)
            train_set, val_set, test_set = cached["train"], cached.get("val"), cached["test"]
    feature_time = time.perf_counter() - feature_start if feature_cache is not None else 0.0
    model = recipe.prepare_model(apply_speed_options(task.build_model(backbone, modalities), budget), budget)
    collate = partial(task.collate, modalities=tuple(modalities))
    train_loader = _loader(train_set, budget.batch_size, collate, InfiniteSampler(train_set, shuffle=True, seed=seed))
    # DefaultSampler: in order, and sharded across ranks the way mmengine's evaluator gathers results back.
    test_loader = _loader(test_set, budget.eval_batch_size, collate, DefaultSampler(test_set, shuffle=False))
    hooks: list[Hook] = [HeartbeatHook(), FiniteLossHook()] + ([StopHook(should_stop)] if should_stop else [])
    keep_best = None
    val_interval = iterations + 1  # no validation
    extra = {}
    if val_set is not None:
        keep_best = KeepBestHook(task.primary_metric, task.higher_is_better(task.primary_metric))
        hooks.append(keep_best)
        val_interval = max(1, math.ceil(iterations / max(budget.val_checks, 1)))
        val_metric = task.build_metric()
        val_metric.primary_only = True
        extra = dict(
            val_dataloader=_loader(val_set, budget.eval_batch_size, collate, DefaultSampler(val_set, shuffle=False)),
            val_cfg=dict(),
            val_evaluator=[val_metric],
        )
    if progress:
        hooks.append(ProgressHook(progress))
    hooks += tracking.hooks() if tracking is not None else []  # curves to TensorBoard / W&B / MLflow; no number changes
    test_metric = task.build_metric()  # kept: its per-tile statistics are read after the test
    runner = QuietConsoleRunner(
        model=model,
        work_dir=str(work_dir),
        experiment_name=f"rsbench-{task.name}-{uuid.uuid4().hex[:8]}",  # unique: one process runs many cells
        train_dataloader=train_loader,
        train_cfg=dict(by_epoch=False, max_iters=iterations, val_interval=val_interval),
        optim_wrapper=recipe.optim_wrapper(budget, model),
        param_scheduler=recipe.schedule(budget, iterations),
        test_dataloader=test_loader,
        test_cfg=dict(),
        test_evaluator=[test_metric],
        default_hooks=dict(
            logger=dict(type="LoggerHook", interval=budget.log_interval, **(tracking.logger() if tracking else {})),
            checkpoint=None,  # cells report metrics; a checkpoint per cell would only fill the disk
        ),
        custom_hooks=hooks,
        visualizer=tracking.visualizer() if tracking is not None else None,
        randomness=dict(seed=seed),
        launcher=ddp_mode,
        env_cfg=ddp.get("env_cfg", dict(dist_cfg=dict(backend="nccl"))),
        cfg=dict(model_wrapper_cfg=ddp["model_wrapper_cfg"]) if "model_wrapper_cfg" in ddp else None,
        default_scope="mmengine",
        log_level="INFO",
        **extra,
    )
    flops, flop_count_s = _count_step_flops(plan, runner, train_set, collate)
    start = time.perf_counter()
    try:
        runner.train()
        metrics = runner.test()  # the one and only read of the test split
        wall = time.perf_counter() - start
        losses = runner.message_hub.get_scalar("train/loss").data[0].tolist()
        step_time = 0.0
        for mode in ("train", "val", "test"):  # IterTimerHook's per-iteration wall time of each loop
            if f"{mode}/time" in runner.message_hub.log_scalars:
                step_time += float(np.sum(runner.message_hub.get_scalar(f"{mode}/time").data[0]))
        extra_tests = {}
        for name, dataset in plan.extra_tests.items():  # after the clean test, which they cannot change
            pass_start = time.perf_counter()
            try:
                if protocol == "frozen" and feature_cache is not None:  # features of the corrupted inputs, own key
                    dataset = with_cached_features(task, backbone, {"test": dataset}, modalities, feature_cache,
                                                   f"{feature_key}|pass:{name}")["test"]  # fmt: skip
                extra_tests[name] = _test_pass(runner, task, dataset, collate, budget.eval_batch_size, name)
                extra_tests[name].wall_time_s = time.perf_counter() - pass_start  # with its feature pass, if any
            except CellStalled:
                raise
            except Exception as exc:  # a failed pass is a row of its own, not a failed cell (Interrupted still stops)
                runner.logger.error(f"test pass {name} failed: {exc.__class__.__name__}: {exc}")
                extra_tests[name] = PassResult({}, error=f"{exc.__class__.__name__}: {exc}".splitlines()[0])
    finally:
        release_runner(runner)
    device = str(next(model.parameters()).device)
    if device.startswith("cuda"):
        device = torch.cuda.get_device_name()
    if keep_best is not None and keep_best.best_state is not None:
        selection = f"best val {task.primary_metric} of {len(keep_best.history)} checks (every {val_interval} iters)"
        selected = keep_best.best_iter
    else:
        selection = "last iterate (labelled subset too small for a validation split)"
        selected = iterations
    return FinetuneResult(
        metrics={k: float(v) for k, v in metrics.items()},
        loss_history=losses,
        n_train=len(train_set),
        wall_time_s=wall,
        device=device,
        log_dir=runner.log_dir,
        protocol=protocol,
        iterations=iterations,
        n_val=len(val_set) if val_set is not None else 0,
        selected_iter=selected,
        selection=selection,
        val_history=keep_best.history if keep_best else [],
        tile_stats=getattr(test_metric, "last_tile_stats", {}),
        arch=arch,
        step_time_s=step_time,
        feature_time_s=feature_time,
        extra_tests=extra_tests,
        step_flops=flops,
        world_size=runner.world_size,
        flop_count_s=flop_count_s,
        encoder_params=params,
    )


def _test_pass(runner, task: Task, dataset: Dataset, collate, batch_size: int, name: str) -> PassResult:
    """The selected model on one more test set: the test loop's steps (``test_step``, the task's metric, results
    gathered across DDP ranks) without its hooks, which closed their loggers and trackers with the clean test."""
    metric = task.build_metric()
    evaluator = Evaluator([metric])
    evaluator.dataset_meta = getattr(dataset, "metainfo", None)
    loader = _loader(dataset, batch_size, collate, DefaultSampler(dataset, shuffle=False))
    start = time.perf_counter()
    runner.model.eval()
    with torch.no_grad():
        for i, batch in enumerate(loader):
            beat(f"test pass {name}, batch {i}")
            evaluator.process(data_samples=runner.model.test_step(batch), data_batch=batch)
    metrics = evaluator.evaluate(len(dataset))
    return PassResult({k: float(v) for k, v in metrics.items()}, getattr(metric, "last_tile_stats", {}),
                          time.perf_counter() - start)  # fmt: skip


def _count_step_flops(plan: FinetunePlan, runner, train_set: Dataset, collate) -> tuple[float, float]:
    """(FLOPs of one training step, seconds the count took), once per ``plan.flops_key`` in ``plan.flops_cache``.

    On the runner's model (on its device) and a batch of the first training samples; NaN where a step cannot
    be counted (a compiled backbone, an op the counter cannot trace), which the row then shows as unknown.
    """
    if plan.flops_cache is None or plan.budget.compile:
        return math.nan, 0.0
    if plan.flops_key and plan.flops_key in plan.flops_cache:
        return plan.flops_cache[plan.flops_key], 0.0
    start = time.perf_counter()
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    try:
        batch = collate([train_set[i] for i in range(min(plan.budget.batch_size, len(train_set)))])
        flops = step_flops(model, batch)
    except Exception as exc:  # compute is reported where countable; a failed count must never fail the cell
        runner.logger.warning(f"training-step FLOPs not counted: {exc.__class__.__name__}: {exc}")
        flops = math.nan
    if plan.flops_key:
        plan.flops_cache[plan.flops_key] = flops
    return flops, time.perf_counter() - start
