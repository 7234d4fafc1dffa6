"""The fine-tuning recipe (tasks.recipe): param groups and schedules as the budget says, defaults unchanged."""

import math
from dataclasses import asdict

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS

import backbones
from tasks import TrainBudget, get_task
from tasks.base import RECIPE_FIELDS
from tasks.features import FrozenBackbone
from tasks.recipe import optim_wrapper, prepare_model, schedule

pytestmark = pytest.mark.usefixtures("one_thread")

#: ``asdict(TrainBudget())`` before the recipe fields existed: what every stored cell hashed. Never edit it; a
#: new budget field must stay out of ``hashed()`` at its default or every stored result goes stale.
HASHED_BEFORE_RECIPE = {
    "max_iters": 200, "epochs": None, "min_iters": 0, "batch_size": 8, "lr": 5e-4, "weight_decay": 0.05,
    "warmup_iters": 20, "eval_batch_size": 16, "log_interval": 10, "val_fraction": 0.2, "val_checks": 5,
    "min_labelled_for_val": 5, "amp": "none", "grad_checkpointing": False, "channels_last": False, "compile": False,
    "fused_attn": True,
}  # fmt: skip


def _model(task="segmentation", depth=4, frozen=False):
    torch.manual_seed(0)
    backbone = backbones.build("random_init_vit_t16", ("rgb", "dsm"), img_size=32, patch_size=8, depth=depth)
    if frozen:
        backbone = FrozenBackbone(backbone)
    kwargs = dict(head_channels=16) if task == "segmentation" else {}
    return get_task(task, **kwargs).build_model(backbone, ("rgb", "dsm"))


def _groups(model, budget):
    optimizer = build_optim_wrapper(model, optim_wrapper(budget, model)).optimizer
    by_param = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            by_param[id(p)] = group
    return {name: by_param[id(p)] for name, p in model.named_parameters() if id(p) in by_param}


def test_a_default_budget_hashes_as_before_the_recipe_existed():
    assert TrainBudget().hashed() == HASHED_BEFORE_RECIPE
    assert TrainBudget(lr=1e-3, batch_size=4).hashed() == {**HASHED_BEFORE_RECIPE, "lr": 1e-3, "batch_size": 4}
    assert TrainBudget().options() == ""
    assert set(asdict(TrainBudget())) == set(HASHED_BEFORE_RECIPE) | set(RECIPE_FIELDS)


def test_a_recipe_field_enters_the_hash_and_the_row_only_when_set():
    budget = TrainBudget(backbone_lr_mult=0.1, no_decay_keys=["norm", "bias"], decay="poly")
    assert budget.hashed() == {**HASHED_BEFORE_RECIPE, "backbone_lr_mult": 0.1, "no_decay_keys": ["norm", "bias"],
                               "decay": "poly"}  # fmt: skip
    assert budget.options() == "backbone_lr_mult=0.1,no_decay_keys=norm/bias,decay=poly"
    assert budget == TrainBudget(backbone_lr_mult=0.1, no_decay_keys=("norm", "bias"), decay="poly")  # list == tuple
    one = TrainBudget(no_decay_keys="norm", step_milestones=0.5)  # the CLI's bare value for a one-item list
    assert one.no_decay_keys == ("norm",) and one.step_milestones == (0.5,)


def test_default_recipe_is_the_original_optimiser_and_schedule():
    model = _model()
    assert optim_wrapper(TrainBudget(lr=2e-3), model) == dict(
        type="OptimWrapper", optimizer=dict(type="AdamW", lr=2e-3, weight_decay=0.05, betas=(0.9, 0.999)),
        clip_grad=dict(max_norm=1.0))  # fmt: skip
    optimizer = build_optim_wrapper(model, optim_wrapper(TrainBudget(), model)).optimizer
    assert len(optimizer.param_groups) == 1 and optimizer.param_groups[0]["weight_decay"] == 0.05
    assert schedule(TrainBudget(warmup_iters=20), 100) == [
        dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=20),
        dict(type="CosineAnnealingLR", by_epoch=False, begin=20, end=100, eta_min=0.0),
    ]
    assert schedule(TrainBudget(warmup_iters=20), 5) == [  # the warm-up never eats the whole run
        dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=4),
        dict(type="CosineAnnealingLR", by_epoch=False, begin=4, end=5, eta_min=0.0),
    ]
    assert prepare_model(model, TrainBudget()) is model


def test_backbone_multiplier_layer_decay_and_no_decay_keys_give_each_parameter_its_lr_and_decay():
    model = _model(depth=4)  # 4 blocks: depths 0 (embeddings), 1..4 (blocks), 5 (top); scale = 0.5 ** (5 - depth)
    lr, wd = 1e-3, 0.05
    budget = TrainBudget(lr=lr, weight_decay=wd, backbone_lr_mult=0.1, layer_decay=0.5,
                         no_decay_keys=("norm", "bias", "cls_token", "pos_embed"))  # fmt: skip
    groups = _groups(model, budget)
    top = "backbone.vit.blocks.3.attn.qkv.weight"
    assert groups[top]["lr"] == pytest.approx(lr * 0.1 * 0.5) and groups[top]["weight_decay"] == wd
    assert groups["backbone.vit.blocks.0.mlp.fc1.weight"]["lr"] == pytest.approx(lr * 0.1 * 0.5**4)
    assert groups["backbone.patch_embeds.rgb.proj.weight"]["lr"] == pytest.approx(lr * 0.1 * 0.5**5)
    assert groups["backbone.patch_embeds.dsm.proj.weight"]["weight_decay"] == wd
    assert groups["backbone.vit.cls_token"]["lr"] == pytest.approx(lr * 0.1 * 0.5**5)
    assert groups["backbone.vit.cls_token"]["weight_decay"] == 0.0
    # the encoder's norms and biases: the backbone multiplier *and* no decay (mmengine's custom_keys give one)
    for name in ("backbone.vit.blocks.2.norm1.weight", "backbone.vit.blocks.2.attn.qkv.bias"):
        assert groups[name]["lr"] == pytest.approx(lr * 0.1 * 0.5**2) and groups[name]["weight_decay"] == 0.0
    assert groups["backbone.vit.norm.weight"]["lr"] == pytest.approx(lr * 0.1)  # after the blocks: top depth
    # task side at the full lr: the head, and the ViT's feature pyramid (the released configs' neck)
    task_side = [n for n in groups if not n.startswith(("backbone.vit.", "backbone.patch_embeds."))]
    assert any(n.startswith("backbone.pyramid.") for n in task_side) and any("decode" in n or "head" in n
                                                                              for n in task_side)  # fmt: skip
    for name in task_side:
        assert groups[name]["lr"] == pytest.approx(lr), name
        assert groups[name]["weight_decay"] == (0.0 if "bias" in name or "norm" in name else wd), name
    assert "backbone.vit.pos_embed" not in groups or groups["backbone.vit.pos_embed"]["weight_decay"] == 0.0


def test_no_decay_on_1d_parameters_catches_every_norm_and_bias():
    model = _model()
    groups = _groups(model, TrainBudget(no_decay_1d=True))
    for name, p in model.named_parameters():
        assert groups[name]["weight_decay"] == (0.0 if p.ndim == 1 else 0.05), name
        assert groups[name]["lr"] == pytest.approx(5e-4)


def test_frozen_protocol_groups_only_the_trained_parameters():
    model = _model(frozen=True)
    groups = _groups(model, TrainBudget(backbone_lr_mult=0.1, layer_decay=0.75))
    assert groups and all(not n.startswith("backbone.") for n in groups)
    assert all(g["lr"] == pytest.approx(5e-4) for g in groups.values())


def test_layer_decay_needs_a_backbone_that_knows_its_layers():
    backbone = backbones.build("random_init_resnet50", ("rgb",))
    model = get_task("classification", class_names=("a", "b")).build_model(backbone, ("rgb",))
    with pytest.raises(ValueError, match="get_layer_depth"):
        build_optim_wrapper(model, optim_wrapper(TrainBudget(layer_decay=0.75), model))
    groups = _groups(model, TrainBudget(backbone_lr_mult=0.1))  # a multiplier needs no depths
    encoder = [n for n in groups if n.startswith("backbone.")]
    assert encoder and all(groups[n]["lr"] == pytest.approx(5e-5) for n in encoder)
    assert groups["head.weight"]["lr"] == pytest.approx(5e-4)


def _lrs(budget, iterations, at):
    """The lr of a one-parameter optimiser at each iteration of ``at`` under the budget's schedule."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=budget.lr)
    cfgs = schedule(budget, iterations)
    schedulers = [PARAM_SCHEDULERS.build(dict(cfg, optimizer=optimizer)) for cfg in cfgs]
    out = {}
    for it in range(iterations):
        if it in at:
            out[it] = optimizer.param_groups[0]["lr"]
        for s in schedulers:  # mmengine's ParamSchedulerHook: every scheduler steps after every iteration
            s.step()
    return out


def test_warmup_then_poly_decay_to_eta_min():
    budget = TrainBudget(lr=1.0, warmup_iters=10, warmup_start=1e-6, decay="poly", eta_min=0.01, poly_power=1.0)
    lrs = _lrs(budget, 110, at={0, 5, 10, 60, 109})
    assert lrs[0] == pytest.approx(1e-6)
    assert lrs[5] == pytest.approx(1e-6 + (1 - 1e-6) * 5 / 9, rel=1e-3)  # mmengine's LinearLR is at 1 from w - 1
    assert lrs[10] == pytest.approx(1.0)
    # mmengine's PolyLR: eta_min + (lr - eta_min) * (1 - t / (T - 1)) ** power, at eta_min on the last iteration
    assert lrs[60] == pytest.approx(0.01 + 0.99 * (1 - 50 / 99), rel=1e-6)
    assert lrs[109] == pytest.approx(0.01, rel=1e-6)


def test_warmup_fraction_cosine_eta_min_and_a_decay_planned_longer_than_the_run():
    budget = TrainBudget(lr=1.0, warmup_fraction=0.1, eta_min=0.1)
    lrs = _lrs(budget, 200, at={20, 110, 199})
    assert lrs[20] == pytest.approx(1.0)
    assert lrs[110] == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-3)  # half-way: cosine at its midpoint
    assert lrs[199] == pytest.approx(0.1, abs=1e-3)
    long = _lrs(TrainBudget(lr=1.0, warmup_iters=0, decay="poly", decay_iters=400), 200, at={199})
    assert long[199] == pytest.approx(1 - 199 / 399, rel=1e-6)  # still half-way down when training stops


def test_step_decay_at_fractions_of_the_run():
    budget = TrainBudget(lr=1.0, warmup_iters=5, warmup_start=1 / 3, decay="step", step_milestones=(8 / 12, 11 / 12))
    lrs = _lrs(budget, 120, at={0, 10, 79, 80, 109, 110})
    assert lrs[0] == pytest.approx(1 / 3) and lrs[10] == pytest.approx(1.0) and lrs[79] == pytest.approx(1.0)
    assert lrs[80] == pytest.approx(0.1) and lrs[109] == pytest.approx(0.1) and lrs[110] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="step_milestones"):
        schedule(TrainBudget(decay="step"), 10)


def test_sgd_and_adan_and_no_clipping():
    model = _model()
    cfg = optim_wrapper(TrainBudget(optimizer="SGD", momentum=0.99, clip_grad=0), model)
    assert "clip_grad" not in cfg
    sgd = build_optim_wrapper(model, cfg).optimizer
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.99
    adan = build_optim_wrapper(model, optim_wrapper(TrainBudget(optimizer="Adan", no_decay_1d=True), model)).optimizer
    assert type(adan).__name__ == "Adan"
    with pytest.raises(ValueError, match="optimizer"):
        optim_wrapper(TrainBudget(optimizer="Lion"), model)


def test_drop_path_rises_linearly_over_the_encoder_blocks():
    model = prepare_model(_model(depth=5), TrainBudget(drop_path_rate=0.2))
    blocks = model.backbone.vit.blocks
    assert isinstance(blocks[0].drop_path1, torch.nn.Identity)
    rates = [b.drop_path1.drop_prob for b in blocks[1:]]
    assert rates == pytest.approx([0.05, 0.1, 0.15, 0.2]) and blocks[4].drop_path2.drop_prob == pytest.approx(0.2)
    model.train()
    x = {"rgb": torch.randn(2, 3, 32, 32), "dsm": torch.randn(2, 1, 32, 32)}
    a, b = model.backbone(x)[-1], model.backbone(x)[-1]  # the last map: from the last block
    assert not torch.allclose(a, b)  # stochastic in training ...
    model.eval()
    assert torch.equal(model.backbone(x)[-1], model.backbone(x)[-1])  # ... and not in evaluation


def test_every_vit_parameter_has_a_layer_depth():
    vit = backbones.build("random_init_vit_t16", ("rgb", "dsm"), img_size=32, patch_size=8, depth=3)
    depths = {name: vit.get_layer_depth(name)[0] for name, _ in vit.named_parameters()}
    assert {vit.get_layer_depth(n)[1] for n in depths} == {5}
    assert depths["vit.blocks.0.attn.proj.weight"] == 1 and depths["vit.blocks.2.mlp.fc2.bias"] == 3
    assert depths["patch_embeds.dsm.proj.weight"] == 0 and depths["vit.cls_token"] == 0
    assert all(d == 4 for n, d in depths.items() if n.startswith(("pyramid.", "vit.norm.")))
    assert vit.get_layer_depth("head.weight", prefix="backbone.") == (4, 5)
    assert not math.isnan(sum(depths.values()))


@pytest.mark.parametrize("task", ["segmentation", "depth", "change_detection", "classification", "detection"])
def test_probe_head_under_fine_tuning_trains_the_encoder_through_the_frozen_protocols_head(task):
    def vit():
        return backbones.build("random_init_vit_t16", ("rgb",), img_size=32, patch_size=8, depth=2)

    frozen = get_task(task).build_model(FrozenBackbone(vit()), ("rgb",))
    model = get_task(task, head="probe").build_model(vit(), ("rgb",))
    assert type(model) is type(frozen)
    if task == "detection":
        assert type(model.neck) is type(frozen.neck)
    groups = _groups(model, TrainBudget(backbone_lr_mult=0.1, layer_decay=0.5))
    encoder = [n for n in groups if n.startswith(("backbone.backbone.vit.", "backbone.backbone.patch_embeds."))]
    assert encoder and not any(".pyramid." in n for n in encoder)
    top, embed = "backbone.backbone.vit.blocks.1.attn.proj.weight", "backbone.backbone.patch_embeds.rgb.proj.weight"
    assert groups[top]["lr"] == pytest.approx(5e-4 * 0.1 * 0.5) and groups[embed]["lr"] == pytest.approx(
        5e-4 * 0.1 * 0.5**3)  # fmt: skip
    head = [n for n in groups if not n.startswith("backbone.")]
    assert head and all(groups[n]["lr"] == pytest.approx(5e-4) for n in head)
    with pytest.raises(ValueError, match="head"):
        get_task(task, head="uper")


def test_drop_path_in_a_swin_encoder():
    swin = backbones.build("random_init_swin_b", ("rgb",))
    swin.set_drop_path_rate(0.3)
    blocks = [b for stage in swin.net.layers for b in stage.blocks]
    assert isinstance(blocks[0].drop_path1, torch.nn.Identity)
    assert blocks[-1].drop_path2.drop_prob == pytest.approx(0.3) and 0 < blocks[12].drop_path1.drop_prob < 0.3
