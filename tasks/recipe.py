"""The fine-tuning recipe: the optimiser and the learning-rate schedule a cell trains with, from its budget.

One place for what ``TrainBudget`` says about optimisation, so that recipe options (a backbone lr multiplier,
layer-wise lr decay, no-decay keys, drop path, warm-up + poly / cosine schedules) are added here and in
``TrainBudget``, and nowhere else: ``tasks.engine.finetune`` takes what these functions return.
"""

from __future__ import annotations

from .base import TrainBudget
from .runtime import AutocastOptimWrapper


def optim_wrapper(budget: TrainBudget) -> dict:
    """The mmengine ``optim_wrapper`` config: AdamW, gradient clipping, bfloat16 autocast when ``budget.amp`` asks."""
    return dict(
        type=AutocastOptimWrapper if budget.amp == "bf16" else "OptimWrapper",
        optimizer=dict(type="AdamW", lr=budget.lr, weight_decay=budget.weight_decay, betas=(0.9, 0.999)),
        clip_grad=dict(max_norm=1.0),
    )


def schedule(budget: TrainBudget, iterations: int) -> list[dict]:
    """Linear warm-up then cosine decay, both by iteration."""
    warmup = min(budget.warmup_iters, max(iterations - 1, 0))
    sched = []
    if warmup > 0:
        sched.append(dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=warmup))
    sched.append(dict(type="CosineAnnealingLR", by_epoch=False, begin=warmup, end=iterations, eta_min=0.0))
    return sched
