"""Optimiser construction for pretraining models that carry frozen EMA teachers."""

from __future__ import annotations

from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from rsbench.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableOnlyOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's param-wise constructor, minus submodules with nothing to train.

    A frozen EMA teacher is a submodule (so it is checkpointed, resumed and broadcast under
    DDP), but it has no place in the optimiser; the default constructor would log one
    warning per teacher parameter.
    """

    def add_params(self, params: list[dict], module: nn.Module, prefix: str = "", is_dcn_module=None) -> None:
        if not any(p.requires_grad for p in module.parameters()):
            return
        super().add_params(params, module, prefix, is_dcn_module)
