"""Training-time behaviour of pretraining methods, as mmengine hooks (not ``if epoch > ...`` in models)."""

from __future__ import annotations

import math

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from .mmregistry import HOOKS
from .mssdf.masking import curriculum_p


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class TeacherEMAHook(Hook):
    """Updates ``model.teacher`` (an mmengine ExponentialMovingAverage of ``model.student``) after each
    optimiser step, with the teacher coefficient rising from ``momentum`` to ``end_momentum`` on a
    cosine over the whole run (BYOL/DINO schedule)."""

    priority = "ABOVE_NORMAL"

    def __init__(self, momentum: float = 0.996, end_momentum: float = 1.0) -> None:
        self.momentum, self.end_momentum = momentum, end_momentum

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
