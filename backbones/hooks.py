"""Training-time behaviour of pretraining methods, as mmengine hooks (not ``if epoch > ...`` in models)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from rsbench.registry import HOOKS

from .diagnostics import format_gradients, loss_term_gradients, unchanged_state
from .mssdf.masking import SCALED_MIN_DSM_VISIBLE, curriculum_p


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def momentum_for_budget(iters: int, init_left: float = 0.05) -> float:
    """Start momentum m0 of a cosine m0 -> 1 schedule that leaves ``init_left`` of the teacher's init after ``iters``.

    The teacher keeps prod_t c_t of its initial weights; with c rising from m0 to 1 on a cosine the mean
    of (1 - c) is (1 - m0) / 2, so the share left is about exp(-iters (1 - m0) / 2). The paper's 0.996
    suits its ~100k steps; over a CPU run of 128 steps it would leave 77 % of a random teacher, which is
    then mostly what the student learns to predict.
    """
    return max(0.0, 1.0 - 2.0 * math.log(1.0 / init_left) / max(iters, 1))


@HOOKS.register_module()
class TeacherEMAHook(Hook):
    """Updates ``model.teacher`` (an mmengine ExponentialMovingAverage of ``model.student``) after each
    optimiser step, with the teacher coefficient rising from ``momentum`` to ``end_momentum`` on a
    cosine over the whole run (BYOL/DINO schedule).

    ``momentum="auto"`` picks the start for the run's length (:func:`momentum_for_budget`: 5 % of the
    initial teacher left at the end). The schedule used is logged and kept on the runner
    (``teacher_momentum``) for the exported checkpoint's metadata, and so for every result row.

    ``frozen=True`` (an ablation) never updates the teacher: it stays the initial copy of the student,
    so the targets are a fixed random network's tokens (mmengine's EMA would otherwise copy the student
    on its first update, which ``momentum=1.0`` alone does not prevent).
    """

    priority = "ABOVE_NORMAL"

    def __init__(self, momentum: float | str = 0.996, end_momentum: float = 1.0, init_left: float = 0.05,
                 frozen: bool = False) -> None:  # fmt: skip
        if momentum != "auto" and not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"teacher momentum must be in [0, 1] or 'auto', got {momentum!r}")
        self.requested, self.end_momentum, self.init_left = momentum, end_momentum, init_left
        self.momentum = 0.996 if momentum == "auto" else float(momentum)
        self.frozen = bool(frozen)

    def before_train(self, runner) -> None:
        if self.frozen:
            runner.teacher_momentum = dict(start=1.0, end=1.0, requested=self.requested, init_left=1.0, frozen=True)
            runner.logger.info("teacher frozen at its initial weights (no EMA update)")
            return
        if self.requested == "auto":
            self.momentum = momentum_for_budget(runner.max_iters, self.init_left)
        left = math.exp(-runner.max_iters * (self.end_momentum - self.momentum) / 2)
        runner.teacher_momentum = dict(start=round(self.momentum, 6), end=self.end_momentum,
                                       requested=self.requested, init_left=round(left, 4))  # fmt: skip
        runner.logger.info(f"teacher momentum {self.momentum:.5f} -> {self.end_momentum} over {runner.max_iters} "
                           f"iterations (about {100 * left:.1f} % of the initial teacher left at the end)")  # fmt: skip

    def teacher_coefficient(self, progress: float) -> float:
        """Weight of the old teacher at ``progress`` in [0, 1] of training."""
        return self.end_momentum - (self.end_momentum - self.momentum) * (math.cos(math.pi * progress) + 1) / 2

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.frozen:
            runner.message_hub.update_scalar("train/teacher_momentum", 1.0)
            return
        model = _unwrap(runner.model)
        coefficient = self.teacher_coefficient(runner.iter / max(runner.max_iters, 1))
        model.teacher.momentum = 1.0 - coefficient  # mmengine's EMA momentum weighs the new value
        model.teacher.update_parameters(model.student)
        runner.message_hub.update_scalar("train/teacher_momentum", coefficient)


@HOOKS.register_module()
class MaskingCurriculumHook(Hook):
    """Sets MSSDF's extra DSM masking probability p(epoch) = min(0.1 + 0.1 floor(epoch / 10), 0.7) before
    every iteration, from the fractional epoch (iteration / iterations per epoch). With the paper's
    500 epochs this equals the official per-epoch setting (floor(epoch / 10) only changes at whole
    epochs); ``epoch_scale`` stretches the schedule for short runs (p uses ``epoch * epoch_scale``),
    and the fractional epoch lets a 4-epoch CPU run walk the steps instead of jumping to 0.7.

    ``min_dsm_visible`` (a share of the tile's patches, or ``"scaled"`` for ``SCALED_MIN_DSM_VISIBLE``,
    1/8) keeps at least ceil(share x patches) DSM patches visible in every sample, whatever p is. The
    schedule was sized for 320 px / patch 16, where p = 0.7 still leaves about 30 of 400 DSM tokens
    visible; at 64 px / patch 8 it leaves about 5 of 64, too few to encode a tile's heights. None (the
    default) keeps the official schedule alone.
    """

    def __init__(self, epoch_scale: float = 1.0, min_dsm_visible: float | str | None = None) -> None:
        if min_dsm_visible == "scaled":
            min_dsm_visible = SCALED_MIN_DSM_VISIBLE
        if min_dsm_visible is not None and not 0.0 <= float(min_dsm_visible) <= 1.0:
            raise ValueError(f"min_dsm_visible is a share of the patches in [0, 1] or 'scaled', "
                             f"got {min_dsm_visible!r}")  # fmt: skip
        self.epoch_scale = epoch_scale
        self.min_dsm_visible = min_dsm_visible

    def before_train(self, runner) -> None:
        if self.min_dsm_visible is not None:
            _unwrap(runner.model).dsm_min_visible = float(self.min_dsm_visible)
            runner.logger.info(f"DSM masking keeps at least {100 * self.min_dsm_visible:.1f} % of the patches visible "
                               "in every sample")  # fmt: skip

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        per_epoch = max(len(runner.train_dataloader), 1)
        p = curriculum_p(runner.iter / per_epoch * self.epoch_scale)
        _unwrap(runner.model).dsm_extra_p = p
        runner.message_hub.update_scalar("train/dsm_extra_p", p)


@HOOKS.register_module()
class LossGradientHook(Hook):
    """Every ``interval`` iterations (and at the first), the gradient each loss term sends to the encoder
    (``export_encoder()``'s trainable parameters): its norm, and the cosine between every two terms'
    gradients (:func:`backbones.diagnostics.loss_term_gradients`). Any pretraining model whose ``loss``
    returns ``loss_*`` terms works.

    It runs before the iteration's own step, on the same batch and weights, with the random state saved and
    put back (:func:`backbones.diagnostics.unchanged_state`): it sees the step's very masks, and the run's
    trajectory is the same bit for bit with or without it. Cost: one forward and one backward per term,
    about 3 training steps for MSSDF's five terms (measured in docs/pretraining.md), hence the interval.
    Written to the log and, one JSON object per line, to ``<log_dir>/loss_gradients.jsonl``.
    """

    priority = "LOW"  # after the masking curriculum has set this iteration's p

    def __init__(self, interval: int = 50) -> None:
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.interval = interval
        self.history: list[dict] = []

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if data_batch is None or not (runner.iter == 0 or (runner.iter + 1) % self.interval == 0):
            return  # (iter + 1): MSSDF's own content diagnostic fires when iter % 10 == 0; don't pay for both
        start = time.perf_counter()
        model = _unwrap(runner.model)
        encoder = model.export_encoder() if hasattr(model, "export_encoder") else model
        with unchanged_state(model):
            data = model.data_preprocessor(data_batch, True)
            with runner.optim_wrapper.optim_context(model):  # autocast as the step has it
                losses = model._run_forward(data, mode="loss")
            report = loss_term_gradients(losses, list(encoder.parameters()))
        seconds = round(time.perf_counter() - start, 3)
        report = {"iter": runner.iter, "epoch": runner.epoch, **report, "seconds": seconds}
        self.history.append(report)
        for line in format_gradients(report):
            runner.logger.info(f"iter {runner.iter}: {line}")
        if is_main_process():
            with open(Path(runner.log_dir) / "loss_gradients.jsonl", "a") as fh:
                fh.write(json.dumps(report) + "\n")
