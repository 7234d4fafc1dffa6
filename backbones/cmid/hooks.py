"""CMID's behaviour over training: the local branch's teacher-temperature warm-up, as an mmengine hook."""

from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from rsbench.registry import HOOKS


@HOOKS.register_module()
class LocalTeacherTempHook(Hook):
    """Sets the local branch's teacher temperature before every iteration: linear from ``warmup_temp`` to
    ``temp`` over the first ``warmup_epochs`` (fractional epochs, iteration / iterations per epoch),
    then constant; the official schedule is 0.04 -> 0.07 over 50 of 400 epochs (per whole epoch)."""

    def __init__(self, warmup_temp: float = 0.04, temp: float = 0.07, warmup_epochs: float = 50) -> None:
        self.warmup_temp, self.temp, self.warmup_epochs = warmup_temp, temp, warmup_epochs

    def temperature(self, epoch: float) -> float:
        """Teacher temperature at a (fractional) epoch."""
        progress = min(epoch / self.warmup_epochs, 1.0) if self.warmup_epochs > 0 else 1.0
        return self.warmup_temp + (self.temp - self.warmup_temp) * progress

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        temp = self.temperature(runner.iter / max(len(runner.train_dataloader), 1))
        model.local_loss.teacher_temp = temp
        runner.message_hub.update_scalar("train/local_teacher_temp", temp)
