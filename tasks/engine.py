"""The one training + evaluation loop every task uses: an mmengine Runner built from a Task.

A cell trains on the fit part of its labelled subset, is checked on the validation part (carved
from the same labelled subset by the caller), keeps the best check, and only then meets the test
split, once. Under the frozen protocol the encoder's features come from a cache and only the
task side trains (``tasks.features``).
"""

from __future__ import annotations

import copy
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner, set_random_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rsbench.watchdog import beat

from .base import PROTOCOLS, Task, TrainBudget
from .features import FeatureCache, FrozenBackbone, WithFeatures, compute_split_features, root_and_indices
from .tracking import Tracking


class NonFiniteLossError(RuntimeError):
    """Training diverged: a NaN or infinite loss. The cell fails; no metric is written for it."""


class Interrupted(BaseException):
    """The run was asked to stop (SIGTERM, see ``benchmark.preemption``); a BaseException so that no
    ``except Exception`` turns it into a failed cell: an interrupted cell writes nothing and runs again."""


class StopHook(Hook):
    """Raises ``Interrupted`` after the iteration during which ``should_stop()`` became true."""

    priority = "LOWEST"

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        self.should_stop = should_stop

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.should_stop():
            raise Interrupted(f"stopped after iteration {runner.iter + 1}")


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


class ProgressHook(Hook):
    """Reports each finished training iteration to a callback (drives rich progress bars)."""

    priority = "VERY_LOW"

    def __init__(self, callback: Callable[[int, int], None]) -> None:
        self.callback = callback

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.callback(runner.iter + 1, runner.max_iters)


class HeartbeatHook(Hook):
    """Tells the cell's watchdog (``rsbench.watchdog``) which loop is making progress: a stall becomes a failed
    row naming the loop, not a frozen sweep."""

    priority = "VERY_HIGH"

    def _beat(self, mode: str, batch_idx: int) -> None:
        beat(f"{mode} loop, iteration {batch_idx + 1}")

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._beat("train", runner.iter)

    def before_val_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._beat("val", batch_idx)

    def before_test_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._beat("test", batch_idx)

    def after_val_epoch(self, runner, metrics=None) -> None:
        beat("val loop, after its metric")

    def after_test_epoch(self, runner, metrics=None) -> None:
        beat("test loop, after its metric")


def release_runner(runner: Runner) -> None:
    """Close what an mmengine Runner leaves behind in a long-lived process.

    mmengine keeps every runner's logger (with its open log file), message hub (every logged scalar) and
    visualizer in class-level registries for the life of the process: a sweep of a thousand cells in one
    process held a thousand open log files (EMFILE at the common ``ulimit -n`` of 1024) and their histories.
    """
    from mmengine.logging import MessageHub
    from mmengine.visualization import Visualizer

    name = runner.experiment_name
    logger = runner.logger
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler):
            handler.close()
            logger.removeHandler(handler)
    try:
        runner.visualizer.close()
    except Exception:  # a backend that was never opened has nothing to close
        pass
    for registry in (MMLogger, MessageHub, Visualizer):
        registry._instance_dict.pop(name, None)


class FiniteLossHook(Hook):
    """Stops a cell at the first NaN / infinite loss instead of letting it write a meaningless metric."""

    priority = "HIGHEST"

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        losses = outputs or {}
        loss = losses.get("loss")
        values = [loss] if loss is not None else list(losses.values())
        for value in values:
            if torch.is_tensor(value) and not torch.isfinite(value).all():
                raise NonFiniteLossError(f"non-finite loss at iter {runner.iter + 1}")


class KeepBestHook(Hook):
    """Model selection on the validation part: keeps the weights of the best check, restores them at the end.

    Direction comes from the task's declaration of its primary metric; on ties the later check
    wins (it trained longer on the same evidence). Weights are kept in memory, not written to disk.
    """

    priority = "LOW"

    def __init__(self, metric: str, higher_is_better: bool) -> None:
        self.metric, self.higher = metric, higher_is_better
        self.best: float | None = None
        self.best_iter = 0
        self.best_state: dict | None = None
        self.history: list[tuple[int, float]] = []

    def after_val_epoch(self, runner, metrics=None) -> None:
        value = float((metrics or {}).get(self.metric, math.nan))
        self.history.append((runner.iter, value))
        if math.isnan(value):
            return
        better = self.best is None or (value >= self.best if self.higher else value <= self.best)
        if better:
            self.best, self.best_iter = value, runner.iter
            self.best_state = copy.deepcopy(_unwrap(runner.model).state_dict())

    def after_train(self, runner) -> None:
        if self.best_state is not None:
            _unwrap(runner.model).load_state_dict(self.best_state)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


class AutocastOptimWrapper(OptimWrapper):
    """An OptimWrapper whose training step runs under ``torch.autocast`` (bfloat16) on the model's device.

    mmengine's ``AmpOptimWrapper`` refuses CPUs; bfloat16 needs no loss scaling, so autocast is all it takes,
    on CPU and GPU alike. Parameters, optimiser state and the evaluation stay in float32.
    """

    def __init__(self, *args, dtype: torch.dtype = torch.bfloat16, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dtype = dtype

    @contextmanager
    def optim_context(self, model: nn.Module):
        device = next(model.parameters()).device.type
        with super().optim_context(model), torch.autocast(device_type=device, dtype=self.dtype):
            yield


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


class QuietConsoleMixin:
    """For mmengine Runners: the console shows errors only; the full log (warnings too) goes to the work dir.

    mmengine and mmseg warn about their own internals on every cell (deprecated FileClient,
    ``avg_non_ignore``, frozen parameters); a sweep's console is for progress bars and tables.
    """

    console_level = logging.ERROR

    def build_logger(self, log_level="INFO", log_file=None, **kwargs) -> MMLogger:
        logger = super().build_logger(log_level=log_level, log_file=log_file, **kwargs)
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.setLevel(self.console_level)
        return logger


class QuietConsoleRunner(QuietConsoleMixin, Runner):
    """The fine-tuning runner: a cell's progress is a progress bar, not mmengine's console log."""


def _loader(dataset: Dataset, batch_size: int, collate, sampler) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate, num_workers=0)


def finetune(
    task: Task,
    build_backbone: Callable[[], nn.Module],
    train_set: Dataset,
    test_set: Dataset,
    modalities: Sequence[str],
    budget: TrainBudget,
    seed: int,
    work_dir: str | Path,
    progress: Callable[[int, int], None] | None = None,
    launcher: str = "none",
    val_set: Dataset | None = None,
    protocol: str = "finetune",
    feature_cache: FeatureCache | None = None,
    feature_key: str = "",
    should_stop: Callable[[], bool] | None = None,
    tracking: Tracking | None = None,
) -> FinetuneResult:
    """Train ``task`` on ``train_set``, select on ``val_set``, then evaluate once on ``test_set``.

    ``budget.iterations(len(train_set))`` iterations from an infinite shuffled sampler. With a
    non-empty ``val_set`` the model is checked ``budget.val_checks`` times and the best check is
    restored before the test; without one the last iterate is tested. The test split is read
    exactly once, after training.

    ``protocol="frozen"`` freezes the encoder (``tasks.features``); with ``feature_cache`` its
    features are computed once per split and view under ``feature_key`` + split + view, and reused
    by every later cell with the same key, else they are recomputed every step. ``tracking`` sends the training
    curves to TensorBoard / W&B / MLflow as well (``tasks.tracking``). The training seed
    fixes weight init, batch order and augmentation; the backbone is built after seeding (hence a
    factory) so the same seed gives the same numbers on CPU. ``launcher="pytorch"`` (under
    torchrun) or ``"slurm"`` trains one cell with DDP through mmengine: each rank draws its own
    share of batches (``batch_size`` is per process) and evaluates its share of the test set.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    if budget.amp not in ("none", "bf16"):
        raise ValueError(f"unknown amp {budget.amp!r}; choose none or bf16")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    task = task.for_budget(budget)
    ddp = {}
    if launcher != "none":
        ddp = init_distributed(launcher)  # before the samplers: they read rank and world size
    val_set = val_set if val_set is not None and len(val_set) > 0 else None
    iterations = budget.iterations(len(train_set))
    set_random_seed(seed)
    backbone = build_backbone()
    arch = getattr(backbone, "arch", "")
    feature_start = time.perf_counter()
    if protocol == "frozen":
        backbone = FrozenBackbone(backbone)
        if feature_cache is not None:
            splits = {"train": train_set, "val": val_set, "test": test_set}
            views = task.feature_views(modalities)
            cached = {}
            for split, dataset in splits.items():
                if dataset is None:
                    continue
                root_split = "test" if split == "test" else "train"  # val and fit parts share the train split
                parts = {}
                root = root_and_indices(dataset)[0]
                for key, view in views.items():
                    cache_key = f"{feature_key}|{root_split}|{sorted(view.items())}"
                    parts[key] = (view, feature_cache.get(cache_key, partial(compute_split_features, backbone, root,
                                                                              view)))  # fmt: skip
                cached[split] = WithFeatures(dataset, parts)
            train_set, val_set, test_set = cached["train"], cached.get("val"), cached["test"]
    feature_time = time.perf_counter() - feature_start if feature_cache is not None else 0.0
    model = apply_speed_options(task.build_model(backbone, modalities), budget)
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
        optim_wrapper=dict(
            type=AutocastOptimWrapper if budget.amp == "bf16" else "OptimWrapper",
            optimizer=dict(type="AdamW", lr=budget.lr, weight_decay=budget.weight_decay, betas=(0.9, 0.999)),
            clip_grad=dict(max_norm=1.0),
        ),
        param_scheduler=_schedule(budget, iterations),
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
        launcher=launcher,
        env_cfg=ddp.get("env_cfg", dict(dist_cfg=dict(backend="nccl"))),
        cfg=dict(model_wrapper_cfg=ddp["model_wrapper_cfg"]) if "model_wrapper_cfg" in ddp else None,
        default_scope="mmengine",
        log_level="INFO",
        **extra,
    )
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
    )


def init_distributed(launcher: str) -> dict:
    """Start the process group for ``launcher`` and return the Runner arguments DDP needs on this device.

    mmengine's launcher and DDP wrapper assume CUDA devices; on CPU the gloo group is started here
    (mmengine then skips its own) and the model is wrapped without device ids.
    """
    if launcher not in ("pytorch", "slurm"):
        raise ValueError(f"unknown launcher {launcher!r}; choose none, pytorch (torchrun) or slurm")
    if torch.cuda.is_available():
        return dict(env_cfg=dict(dist_cfg=dict(backend="nccl")))
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="gloo")
    return dict(
        env_cfg=dict(dist_cfg=dict(backend="gloo")),
        model_wrapper_cfg=dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False),
    )


def _schedule(budget: TrainBudget, iterations: int) -> list[dict]:
    """Linear warm-up then cosine decay, both by iteration."""
    warmup = min(budget.warmup_iters, max(iterations - 1, 0))
    sched = []
    if warmup > 0:
        sched.append(dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=warmup))
    sched.append(dict(type="CosineAnnealingLR", by_epoch=False, begin=warmup, end=iterations, eta_min=0.0))
    return sched
