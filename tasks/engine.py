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
from mmengine.dataset import InfiniteSampler
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
) -> FinetuneResult:
    """Train ``task`` on ``train_set`` for ``budget.max_iters`` iterations, then evaluate on ``test_set``.

    The training seed fixes weight init, batch order and augmentation; the backbone is
    built after seeding (hence a factory) so the same seed gives the same numbers on CPU.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    task = task.for_budget(budget)
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
    test_loader = DataLoader(test_set, batch_size=budget.eval_batch_size, shuffle=False, collate_fn=collate)
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


def _schedule(budget: TrainBudget) -> list[dict]:
    """Linear warm-up then cosine decay, both by iteration."""
    warmup = min(budget.warmup_iters, max(budget.max_iters - 1, 0))
    sched = []
    if warmup > 0:
        sched.append(dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=warmup))
    sched.append(dict(type="CosineAnnealingLR", by_epoch=False, begin=warmup, end=budget.max_iters, eta_min=0.0))
    return sched
