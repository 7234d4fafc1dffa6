"""The one training + evaluation loop every task uses: an mmengine Runner built from a Task."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.runner import Runner, set_random_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .base import Task, TrainBudget


@dataclass
class FinetuneResult:
    """What one fine-tuning cell produced."""

    metrics: dict[str, float]
    loss_history: list[float] = field(default_factory=list)
    n_train: int = 0
    wall_time_s: float = 0.0
    device: str = "cpu"
    log_dir: str = ""


class ProgressHook(Hook):
    """Reports each finished training iteration to a callback (drives rich progress bars)."""

    priority = "VERY_LOW"

    def __init__(self, callback: Callable[[int, int], None]) -> None:
        self.callback = callback

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.callback(runner.iter + 1, runner.max_iters)


class QuietConsoleMixin:
    """For mmengine Runners: the console shows warnings only; the full log still goes to the work dir."""

    def build_logger(self, log_level="INFO", log_file=None, **kwargs) -> MMLogger:
        logger = super().build_logger(log_level=log_level, log_file=log_file, **kwargs)
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.setLevel(logging.WARNING)
        return logger


class QuietConsoleRunner(QuietConsoleMixin, Runner):
    """The fine-tuning runner: a cell's progress is a progress bar, not mmengine's console log."""


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
) -> FinetuneResult:
    """Train ``task`` on ``train_set`` for ``budget.max_iters`` iterations, then evaluate on ``test_set``.

    The training seed fixes weight init, batch order and augmentation; the backbone is
    built after seeding (hence a factory) so the same seed gives the same numbers on CPU.
    ``launcher="pytorch"`` (under torchrun) or ``"slurm"`` trains one cell with DDP through mmengine:
    each rank draws its own share of batches (``batch_size`` is per process) and evaluates its
    share of the test set; the metric is computed once over all of them.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    task = task.for_budget(budget)
    ddp = {}
    if launcher != "none":
        ddp = init_distributed(launcher)  # before the samplers: they read rank and world size
    set_random_seed(seed)
    model = task.build_model(build_backbone(), modalities)
    collate = partial(task.collate, modalities=tuple(modalities))
    train_loader = DataLoader(
        train_set,
        batch_size=budget.batch_size,
        sampler=InfiniteSampler(train_set, shuffle=True, seed=seed),
        collate_fn=collate,
        num_workers=0,
    )
    # DefaultSampler: in order, and sharded across ranks the way mmengine's evaluator gathers results back.
    test_sampler = DefaultSampler(test_set, shuffle=False)
    test_loader = DataLoader(test_set, batch_size=budget.eval_batch_size, sampler=test_sampler, collate_fn=collate)
    hooks = [ProgressHook(progress)] if progress else []
    runner = QuietConsoleRunner(
        model=model,
        work_dir=str(work_dir),
        experiment_name=f"rsbench-{task.name}-{uuid.uuid4().hex[:8]}",  # unique: one process runs many cells
        train_dataloader=train_loader,
        train_cfg=dict(by_epoch=False, max_iters=budget.max_iters, val_interval=budget.max_iters + 1),
        optim_wrapper=dict(
            optimizer=dict(type="AdamW", lr=budget.lr, weight_decay=budget.weight_decay, betas=(0.9, 0.999)),
            clip_grad=dict(max_norm=1.0),
        ),
        param_scheduler=_schedule(budget),
        test_dataloader=test_loader,
        test_cfg=dict(),
        test_evaluator=task.build_metric(),
        default_hooks=dict(
            logger=dict(type="LoggerHook", interval=budget.log_interval),
            checkpoint=None,  # cells report metrics; a checkpoint per cell would only fill the disk
        ),
        custom_hooks=hooks,
        randomness=dict(seed=seed),
        launcher=launcher,
        env_cfg=ddp.get("env_cfg", dict(dist_cfg=dict(backend="nccl"))),
        cfg=dict(model_wrapper_cfg=ddp["model_wrapper_cfg"]) if "model_wrapper_cfg" in ddp else None,
        default_scope="mmengine",
        log_level="INFO",
    )
    start = time.perf_counter()
    runner.train()
    metrics = runner.test()
    wall = time.perf_counter() - start
    losses = runner.message_hub.get_scalar("train/loss").data[0].tolist()
    device = str(next(model.parameters()).device)
    if device.startswith("cuda"):
        device = torch.cuda.get_device_name()
    return FinetuneResult(
        metrics={k: float(v) for k, v in metrics.items()},
        loss_history=losses,
        n_train=len(train_set),
        wall_time_s=wall,
        device=device,
        log_dir=runner.log_dir,
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


def _schedule(budget: TrainBudget) -> list[dict]:
    """Linear warm-up then cosine decay, both by iteration."""
    warmup = min(budget.warmup_iters, max(budget.max_iters - 1, 0))
    sched = []
    if warmup > 0:
        sched.append(dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=warmup))
    sched.append(dict(type="CosineAnnealingLR", by_epoch=False, begin=warmup, end=budget.max_iters, eta_min=0.0))
    return sched
