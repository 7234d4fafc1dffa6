"""mmengine plumbing shared by fine-tuning (``tasks.engine``) and pretraining (``benchmark.running.pretrain``).

The hooks every run carries (progress, heartbeat for the cell watchdog, a finite loss, a stop request, model
selection), the quiet console runner, the bfloat16 autocast optimiser wrapper, the DDP set-up on CPU or GPU, and
``release_runner``, which closes what an mmengine Runner leaves behind in a long-lived process. Nothing here
decides a number; what a run trains is ``tasks.engine`` (the loop) and ``tasks.recipe`` (optimiser, schedule).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from contextlib import contextmanager

import torch
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner
from torch import nn

from rsbench.watchdog import beat


class NonFiniteLossError(RuntimeError):
    """Training diverged: a NaN or infinite loss. The cell fails; no metric is written for it."""


class Interrupted(BaseException):
    """The run was asked to stop (SIGTERM, see ``benchmark.running.preemption``); a BaseException so that no
    ``except Exception`` turns it into a failed cell: an interrupted cell writes nothing and runs again."""


class StopHook(Hook):
    """Raises ``Interrupted`` after the iteration during which ``should_stop()`` became true."""

    priority = "LOWEST"

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        self.should_stop = should_stop

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.should_stop():
            raise Interrupted(f"stopped after iteration {runner.iter + 1}")


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


def init_distributed(ddp: str) -> dict:
    """Start the process group for ``ddp`` (how the ranks were launched); the Runner arguments DDP needs here.

    mmengine's launcher and DDP wrapper assume CUDA devices; on CPU the gloo group is started here
    (mmengine then skips its own) and the model is wrapped without device ids.
    """
    if ddp not in ("pytorch", "slurm"):
        raise ValueError(f"unknown ddp launcher {ddp!r}; choose none, pytorch (torchrun) or slurm")
    if torch.cuda.is_available():
        return dict(env_cfg=dict(dist_cfg=dict(backend="nccl")))
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="gloo")
    return dict(
        env_cfg=dict(dist_cfg=dict(backend="gloo")),
        model_wrapper_cfg=dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False),
    )
