import copy

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

import backbones
from tasks import FinetunePlan, TrainBudget, finetune, get_task
from tasks.classification import ClassificationMetric


def _tiny_backbone(patch_size=8):
    return lambda: backbones.build("random_init_vit_t16", ("rgb",), img_size=32, patch_size=patch_size, depth=4)


def _capture(task):
    """Record each model the task builds, with a copy of its initial state (finetune does not return it)."""
    built = []
    original = task.build_model

    def build_model(backbone, modalities):
        model = original(backbone, modalities)
        built.append((model, copy.deepcopy(model.state_dict())))
        return model

    task.build_model = build_model
    return built


def test_linear_probe_learns_and_leaves_the_backbone_untouched(data, tmp_path):
    train, test = data
    task = get_task("classification")
    built = _capture(task)
    budget = TrainBudget(max_iters=40, batch_size=8, lr=1e-2, warmup_iters=4, log_interval=1, val_checks=0)
    # Patch 16 puts BatchNorm in the pyramid: its running stats would move if the backbone left eval mode.
    result = finetune(FinetunePlan(
        task, _tiny_backbone(16), train, test, ("rgb",), budget, seed=0, work_dir=tmp_path, protocol="frozen"
    ))  # fmt: skip
    losses = np.array(result.loss_history)
    assert losses[-8:].mean() < 0.6 * losses[:8].mean(), losses
    model, initial = built[0]
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, initial[f"backbone.{key}"]), key
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not torch.equal(model.head.weight, initial["head.weight"])
    assert set(result.metrics) == {"OA", "mF1", *(f"acc.{c}" for c in train.scene_classes)}
    assert 0 <= result.metrics["OA"] <= 100


@pytest.mark.slow  # over 2 s on 2 cores; `make test` runs it
def test_finetune_protocol_trains_the_backbone(data, tmp_path):
    train, test = data
    task = get_task("classification")
    built = _capture(task)
    budget = TrainBudget(max_iters=30, batch_size=8, lr=1e-3, warmup_iters=4, log_interval=1)
    result = finetune(FinetunePlan(task, _tiny_backbone(), train, test, ("rgb",), budget, seed=0, work_dir=tmp_path))
    losses = np.array(result.loss_history)
    assert losses[-6:].mean() < 0.7 * losses[:6].mean(), losses
    model, initial = built[0]
    key = "vit.blocks.0.attn.qkv.weight"
    assert not torch.equal(model.backbone.state_dict()[key], initial[f"backbone.{key}"])


@pytest.mark.slow  # over 10 s on 2 cores; `make test` runs it
def test_batch_size_one_and_same_seed_same_numbers(data, tmp_path):
    train, test = data
    task = get_task("classification")
    budget = TrainBudget(max_iters=3, batch_size=1, eval_batch_size=1, warmup_iters=0)
    small, held = Subset(train, [0, 1, 2]), Subset(test, [0, 1])
    runs = [finetune(FinetunePlan(task, _tiny_backbone(), small, held, ("rgb",), budget, 3, tmp_path / str(i)))
            for i in range(2)]
    assert runs[0].loss_history == runs[1].loss_history
    np.testing.assert_equal(runs[0].metrics, runs[1].metrics)  # NaN-aware: absent classes give NaN accuracy


def test_metric_against_hand_computed_values():
    metric = ClassificationMetric(("a", "b", "c", "d"))
    gt, pred = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 1, 1, 0])
    metric.process(None, [{"pred": p, "gt": g} for p, g in zip(pred, gt)])
    out = metric.compute_metrics(metric.results)
    assert out["OA"] == pytest.approx(60.0)  # 3 of 5 correct
    # per-class accuracy = correct / true count: a 1/2, b 2/2, c 0/1, d never occurs -> NaN
    assert out["acc.a"] == pytest.approx(50.0) and out["acc.b"] == pytest.approx(100.0) and out["acc.c"] == 0.0
    assert np.isnan(out["acc.d"])
    # F1 = 2TP / (2TP + FP + FN): a 2/(2+1+1) = 0.5, b 4/(4+1+0) = 0.8, c 0/(0+0+1) = 0; d absent -> left out
    assert out["mF1"] == pytest.approx(100 * (0.5 + 0.8 + 0.0) / 3)


def test_protocol_and_strata(data):
    train, _ = data
    with pytest.raises(ValueError, match="protocols="):
        get_task("classification", protocol="linear_probe")  # the protocol is a sweep field now
    task = get_task("classification")
    assert task.primary_metric == "OA" and task.higher_is_better("OA") and task.higher_is_better("acc.forest")
    np.testing.assert_array_equal(task.strata(train), train.scene_labels())
    np.testing.assert_array_equal(task.strata(Subset(train, [3, 1])), train.scene_labels()[[3, 1]])
