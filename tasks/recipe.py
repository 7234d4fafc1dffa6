"""The fine-tuning recipe: the optimiser and the learning-rate schedule a cell trains with, from its budget.

One place for what ``TrainBudget`` says about optimisation: recipe options are added here and in
``TrainBudget``, and nowhere else; ``tasks.engine.finetune`` takes what these functions return.

The ViT fine-tuning recipes of MAE, BEiT, CMID and MSSDF give the encoder a smaller lr than the task
head (a multiplier, and/or a layer-wise decay that shrinks it further towards the input), keep weight
decay off norms, biases and tokens, add stochastic depth, and warm up before a cosine, poly or step
decay. Each is a ``TrainBudget`` field (``tasks.base``); this module turns a budget into what mmengine's
Runner builds: ``optim_wrapper`` (mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` assigns the
param groups) and ``param_scheduler`` (``LinearLR`` then ``CosineAnnealingLR`` / ``PolyLR`` /
``MultiStepLR``); ``prepare_model`` makes the model side's changes (drop path). A budget with every
recipe field at its default gives the harness's original optimiser and schedule, unchanged
(``tests/test_recipe.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor
from torch import nn

from .base import TrainBudget
from .features import FrozenBackbone, frozen_parts
from .runtime import AutocastOptimWrapper

OPTIMIZERS = ("AdamW", "SGD", "Adan")
DECAYS = ("cosine", "poly", "step")


def check_recipe(budget: TrainBudget) -> None:
    """One clear error for a recipe value the builders below cannot honour."""
    if budget.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {budget.optimizer!r}; choose one of {OPTIMIZERS}")
    if budget.decay not in DECAYS:
        raise ValueError(f"unknown decay {budget.decay!r}; choose one of {DECAYS}")
    if budget.decay == "step" and not budget.step_milestones:
        raise ValueError("decay='step' needs step_milestones (fractions of the iterations, e.g. (0.67, 0.92))")
    if any(not 0 < m < 1 for m in budget.step_milestones):
        raise ValueError(f"step_milestones are fractions of the iterations in (0, 1), got {budget.step_milestones}")
    if not 0 < budget.layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {budget.layer_decay}")


def _paramwise(budget: TrainBudget) -> bool:
    """Whether the budget needs per-parameter groups (else one group, exactly the original optimiser)."""
    return budget.backbone_lr_mult != 1.0 or budget.layer_decay != 1.0 or bool(budget.no_decay_keys) or (
        budget.no_decay_1d)  # fmt: skip


def _optimizer(budget: TrainBudget) -> dict:
    if budget.optimizer == "AdamW":
        return dict(type="AdamW", lr=budget.lr, weight_decay=budget.weight_decay, betas=(0.9, 0.999))
    if budget.optimizer == "SGD":
        return dict(type="SGD", lr=budget.lr, weight_decay=budget.weight_decay, momentum=budget.momentum)
    from mmpretrain.engine.optimizers import Adan  # mmengine's registry has no Adan; mmpretrain's class is passed

    return dict(type=Adan, lr=budget.lr, weight_decay=budget.weight_decay)


def encoder_prefixes(model: nn.Module) -> list[str]:
    """Qualified name prefixes of the model's encoder: the modules the frozen protocol would freeze.

    A ViT's simple feature pyramid lives inside the backbone module but is task side (the released
    configs put it in the ``neck``, at the head's lr), so "the backbone" here is what ``frozen_parts``
    says, not everything under ``backbone.``.
    """
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        return []
    inner = getattr(backbone, "_orig_mod", backbone)  # torch.compile keeps the module as _orig_mod
    modules = frozen_parts(inner)[1]
    names = {id(m): name for name, m in model.named_modules()}
    return [names[id(m)] + "." for m in modules if id(m) in names]


def optim_wrapper(budget: TrainBudget, model: nn.Module) -> dict:
    """The Runner's ``optim_wrapper`` for ``budget`` (bfloat16 autocast when ``budget.amp`` asks).

    At the default recipe: one AdamW group, gradients clipped at norm 1, as the harness always did.
    Otherwise ``RecipeOptimWrapperConstructor`` builds one group per parameter with its own lr and
    weight decay: the layer-wise decay from the backbone's ``get_layer_depth`` (mmpretrain's rule),
    times ``backbone_lr_mult`` on the encoder; zero decay on ``no_decay_keys`` and (``no_decay_1d``)
    on every 1-D parameter.
    """
    check_recipe(budget)
    cfg = dict(type=AutocastOptimWrapper if budget.amp == "bf16" else "OptimWrapper", optimizer=_optimizer(budget))
    if budget.clip_grad > 0:
        cfg["clip_grad"] = dict(max_norm=budget.clip_grad)
    if _paramwise(budget):
        cfg["constructor"] = RecipeOptimWrapperConstructor
        cfg["paramwise_cfg"] = dict(
            layer_decay_rate=budget.layer_decay,
            custom_keys={key: dict(decay_mult=0.0) for key in budget.no_decay_keys},
            encoder_lr_mult=budget.backbone_lr_mult,
            encoder_prefixes=encoder_prefixes(model),
            **(dict(flat_decay_mult=0.0) if budget.no_decay_1d else {}),
        )
    return cfg


def model_layer_depth(model: nn.Module) -> Callable[[str], tuple[int, int]]:
    """``get_layer_depth`` for a whole task model: the backbone's own for ``backbone.*`` parameters, the top
    (lr scale 1) for the task side. A backbone without ``get_layer_depth`` puts everything at the top, which is
    right when the layer decay is 1 and refused otherwise."""
    backbone = getattr(model, "backbone", None)
    backbone = getattr(backbone, "_orig_mod", backbone)
    depth_of = getattr(backbone, "get_layer_depth", None)

    def get_layer_depth(param_name: str) -> tuple[int, int]:
        if depth_of is None:
            return 0, 1
        name = param_name.replace("backbone._orig_mod.", "backbone.")
        return depth_of(name, prefix="backbone.")

    # A frozen encoder has no trained parameter to decay: every trained one is task side, at the top.
    get_layer_depth.available = depth_of is not None or isinstance(backbone, FrozenBackbone)
    return get_layer_depth


class RecipeOptimWrapperConstructor(LearningRateDecayOptimWrapperConstructor):
    """mmpretrain's layer-wise lr decay constructor, for a task model whose backbone knows its layer depths,
    plus an lr multiplier on the encoder.

    Why not mmengine's ``custom_keys`` for the multiplier, as the released configs write it: mmengine
    applies only the longest matching key to a parameter, so with ``"backbone.": lr_mult`` and ``".bias":
    decay_mult=0`` an encoder bias gets one or the other, never both (in the released MSSDF classification
    configs the multiplier is ignored altogether: mmpretrain's constructor documents ``lr_mult`` in custom
    keys as disabled). Here every encoder parameter gets the multiplier and every matching key its decay.
    """

    def add_params(self, params: list[dict], module: nn.Module, prefix: str = "", get_layer_depth=None,
                   **kwargs) -> None:  # fmt: skip
        top = prefix == "" and get_layer_depth is None
        if top:
            get_layer_depth = model_layer_depth(module)
            if self.paramwise_cfg.get("layer_decay_rate", 1.0) != 1.0 and not get_layer_depth.available:
                raise ValueError(f"layer_decay needs a backbone with get_layer_depth(); "
                                 f"{type(getattr(module, 'backbone', module)).__name__} has none")  # fmt: skip
        super().add_params(params, module, prefix=prefix, get_layer_depth=get_layer_depth, **kwargs)
        if top:
            mult = self.paramwise_cfg.get("encoder_lr_mult", 1.0)
            prefixes = tuple(self.paramwise_cfg.get("encoder_prefixes", ()))
            for group in params:
                if prefixes and group["param_name"].startswith(prefixes):
                    group["lr"] *= mult
                    group["lr_scale"] *= mult


def schedule(budget: TrainBudget, iterations: int) -> list[dict]:
    """The Runner's ``param_scheduler``: a linear warm-up, then the budget's decay, all by iteration.

    At the default recipe: LinearLR from 1e-3 over ``warmup_iters`` (at most all but the last iteration),
    then cosine to 0 at the last iteration, as the harness always did. ``decay_iters`` plans the decay
    over a fixed length whatever the cell's iterations (a released config that decays to iteration 80k
    while training by epochs); the Runner stops at the cell's own end.
    """
    check_recipe(budget)
    warmup = round(budget.warmup_fraction * iterations) if budget.warmup_fraction > 0 else budget.warmup_iters
    warmup = min(warmup, max(iterations - 1, 0))
    end = max(budget.decay_iters or iterations, warmup + 1)
    sched = []
    if warmup > 0:
        sched.append(dict(type="LinearLR", start_factor=budget.warmup_start, by_epoch=False, begin=0, end=warmup))
    if budget.decay == "cosine":
        sched.append(dict(type="CosineAnnealingLR", by_epoch=False, begin=warmup, end=end, eta_min=budget.eta_min))
    elif budget.decay == "poly":
        sched.append(dict(type="PolyLR", by_epoch=False, begin=warmup, end=end, eta_min=budget.eta_min,
                          power=budget.poly_power))  # fmt: skip
    else:
        # Milestones count from iteration 0: mmdet's step schedule runs alongside its warm-up.
        milestones = sorted({max(1, round(m * end)) for m in budget.step_milestones})
        sched.append(dict(type="MultiStepLR", by_epoch=False, begin=0, end=end, milestones=milestones,
                          gamma=budget.step_gamma))  # fmt: skip
    return sched


def prepare_model(model: nn.Module, budget: TrainBudget) -> nn.Module:
    """The model changes the recipe makes before training: drop path in the encoder's blocks."""
    if budget.drop_path_rate > 0:
        inner = getattr(model, "backbone", None)
        if isinstance(inner, FrozenBackbone):  # the encoder does not train: nothing to regularise
            return model
        if not hasattr(inner, "set_drop_path_rate"):
            raise ValueError(f"drop_path_rate needs a backbone with set_drop_path_rate(); {type(inner).__name__} "
                             "has none")  # fmt: skip
        inner.set_drop_path_rate(budget.drop_path_rate)
    return model
