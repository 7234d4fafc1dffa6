"""CMID's losses: focal L1 + focal frequency loss for MIM, and the DINO-style local distillation loss.

The focal frequency loss is the FFL authors' package (``focal-frequency-loss``) with the
settings of the official CMID code (average spectrum over the batch, log-scaled and
batch-normalised spectrum weights). Focal L1 (A2MIM) and DINO's centred cross-entropy are a
few lines each and exist in no maintained package, so they are written here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from focal_frequency_loss import FocalFrequencyLoss
from mmengine.dist import all_reduce
from torch import Tensor, nn


def focal_l1(pred: Tensor, target: Tensor, alpha: float = 0.2, gamma: float = 1.0) -> Tensor:
    """Element-wise focal L1 (A2MIM, sigmoid form): |d| (2 sigmoid(alpha |d|) - 1)^gamma; large errors count more."""
    d = (pred - target).abs()
    return d * (2 * torch.sigmoid(alpha * d) - 1) ** gamma


class MIMLoss(nn.Module):
    """Reconstruction of raw (normalised) pixels: focal L1 on the masked pixels and the focal frequency loss on
    the whole image, in which unmasked pixels are replaced by a detached mix of prediction and target and
    weigh only ``fft_unmask_weight`` (the official ``fft_unmask_replace="mixed"``)."""

    def __init__(self, alpha: float = 0.2, gamma: float = 1.0, fft_weight: float = 1.0,
                 fft_unmask_weight: float = 0.001) -> None:  # fmt: skip
        super().__init__()
        self.alpha, self.gamma = alpha, gamma
        self.fft_weight, self.fft_unmask_weight = fft_weight, fft_unmask_weight
        self.ffl = FocalFrequencyLoss(loss_weight=1.0, alpha=1.0, ave_spectrum=True, log_matrix=True,
                                      batch_matrix=True)  # fmt: skip

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
        """``weight`` (B x C x H x W, 1 = masked and valid) selects what the spatial loss sees. Returns
        (focal L1, weighted focal frequency loss)."""
        l1 = (focal_l1(pred, target, self.alpha, self.gamma) * weight).sum() / weight.sum().clamp(min=1e-5)
        keep = weight + (1 - weight) * self.fft_unmask_weight
        replaced = 0.5 * pred.detach() + 0.5 * target
        fft = self.ffl(pred * keep + replaced * (1 - keep), target)
        return l1, self.fft_weight * fft


class LocalDistillLoss(nn.Module):
    """DINO's cross-entropy between a sharpened, centred teacher and the student, over prototype logits.

    ``teacher_temp`` is set during training by ``LocalTeacherTempHook`` (warm-up 0.04 -> 0.07);
    the centre (a buffer, checkpointed and resumed) follows the batch mean of the teacher
    logits with ``centre_momentum``, averaged over ranks under DDP.
    """

    def __init__(self, prototypes: int, student_temp: float = 0.1, teacher_temp: float = 0.04,
                 centre_momentum: float = 0.9) -> None:  # fmt: skip
        super().__init__()
        self.student_temp, self.teacher_temp, self.centre_momentum = student_temp, teacher_temp, centre_momentum
        self.register_buffer("centre", torch.zeros(prototypes))

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Logits ... x K of the student and the teacher at the same (matched) positions."""
        target = F.softmax((teacher.detach() - self.centre) / self.teacher_temp, dim=-1)
        loss = -(target * F.log_softmax(student / self.student_temp, dim=-1)).sum(-1).mean()
        self.update_centre(teacher.detach())
        return loss

    @torch.no_grad()
    def update_centre(self, teacher: Tensor) -> None:
        batch_centre = teacher.flatten(0, -2).mean(0)
        all_reduce(batch_centre, op="mean")  # in place; a no-op outside DDP
        self.centre.mul_(self.centre_momentum).add_(batch_centre, alpha=1 - self.centre_momentum)
