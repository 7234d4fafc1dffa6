"""Training-time behaviour of pretraining methods, as mmengine hooks (not ``if epoch > ...`` in models)."""

from __future__ import annotations

import math

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from rsbench.registry import HOOKS

from .mssdf.masking import curriculum_p


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
    """

    priority = "ABOVE_NORMAL"

    def __init__(self, momentum: float | str = 0.996, end_momentum: float = 1.0, init_left: float = 0.05) -> None:
        if momentum != "auto" and not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"teacher momentum must be in [0, 1] or 'auto', got {momentum!r}")
        self.requested, self.end_momentum, self.init_left = momentum, end_momentum, init_left
        self.momentum = 0.996 if momentum == "auto" else float(momentum)

    def before_train(self, runner) -> None:
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
    and the fractional epoch lets a 4-epoch CPU run walk the steps instead of jumping to 0.7."""

    def __init__(self, epoch_scale: float = 1.0) -> None:
        self.epoch_scale = epoch_scale

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        per_epoch = max(len(runner.train_dataloader), 1)
        p = curriculum_p(runner.iter / per_epoch * self.epoch_scale)
        _unwrap(runner.model).dsm_extra_p = p
        runner.message_hub.update_scalar("train/dsm_extra_p", p)
