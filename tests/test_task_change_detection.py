import numpy as np
import pytest
import torch
from torch.utils.data import Subset

import backbones
from tasks import FinetunePlan, TrainBudget, finetune, get_task
from tasks.change_detection import ChangeMetric


def _tiny_backbone():
    return lambda: backbones.build("random_init_vit_t16", ("rgb",), img_size=32, patch_size=8, depth=4)


@pytest.mark.slow
def test_tiny_change_detection_run_learns(data, tmp_path):
    train, test = data
    task = get_task("change_detection", head_channels=32)
    budget = TrainBudget(max_iters=40, batch_size=8, lr=2e-3, warmup_iters=4, log_interval=1)
    result = finetune(FinetunePlan(task, _tiny_backbone(), train, test, ("rgb",), budget, seed=0, work_dir=tmp_path))
    losses = np.array(result.loss_history)
    assert len(losses) == 40
    assert losses[-8:].mean() < 0.7 * losses[:8].mean(), losses
    assert set(result.metrics) == {"F1_change", "IoU_change", "mIoU", "OA"}
    assert 0 <= result.metrics["mIoU"] <= 100 and 0 <= result.metrics["OA"] <= 100


def test_batch_size_one_and_same_seed_same_numbers(data, tmp_path):
    train, test = data
    task = get_task("change_detection", head_channels=16)
    budget = TrainBudget(max_iters=3, batch_size=1, eval_batch_size=1, warmup_iters=0)
    small, held = Subset(train, [0, 1, 2]), Subset(test, [0, 1])
    runs = [finetune(FinetunePlan(task, _tiny_backbone(), small, held, ("rgb",), budget, 3, tmp_path / str(i)))
            for i in range(2)]
    assert runs[0].loss_history == runs[1].loss_history
    np.testing.assert_equal(runs[0].metrics, runs[1].metrics)  # NaN-aware (no change anywhere -> NaN F1)


def test_metric_against_hand_computed_values():
    metric = ChangeMetric()
    gt = torch.tensor([[0, 1, 1, 255], [0, 0, 1, 0]])
    pred = torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0]])
    nothing = torch.zeros(2, 2, dtype=torch.long)  # a second tile without change, predicted right
    metric.process(None, [{"pred": pred, "gt": gt}, {"pred": nothing, "gt": nothing}])
    out = metric.compute_metrics(metric.results)
    # 255 is ignored. change: TP 2, FP 1, FN 1 -> F1 4/6, IoU 2/4.
    assert out["F1_change"] == pytest.approx(100 * 4 / 6)
    assert out["IoU_change"] == pytest.approx(50.0)
    # no change: TP 3 + 4 (second tile), FP 1, FN 1 -> IoU 7/9; mIoU = (7/9 + 1/2) / 2
    assert out["mIoU"] == pytest.approx(100 * (7 / 9 + 0.5) / 2)
    assert out["OA"] == pytest.approx(100 * 9 / 11)  # 5 of 7 + 4 of 4 valid pixels


def test_metric_without_any_change_is_nan_not_zero():
    metric = ChangeMetric()
    nothing = torch.zeros(2, 2, dtype=torch.long)
    metric.process(None, [{"pred": nothing, "gt": nothing}])
    out = metric.compute_metrics(metric.results)
    assert np.isnan(out["F1_change"]) and np.isnan(out["IoU_change"])
    assert out["mIoU"] == 100.0 and out["OA"] == 100.0


def test_modalities_collate_and_strata(data):
    train, _ = data
    task = get_task("change_detection")
    assert task.input_modalities(("rgb", "dsm", "ms")) == ("rgb",)
    with pytest.raises(ValueError, match="both dates"):
        task.input_modalities(("dsm",))
    batch = task.collate([train[0], train[1]], ("rgb",))
    assert set(batch["inputs"]) == {"rgb", "rgb_t2"} and batch["inputs"]["rgb_t2"].shape == (2, 3, 32, 32)
    assert batch["data_samples"]["change"].shape == (2, 32, 32)
    expected = [int(train[i]["change"].any()) for i in range(len(train))]
    np.testing.assert_array_equal(task.strata(train), expected)
    assert 0 < sum(expected) < len(train)  # both strata occur in the tiny data
    assert task.primary_metric == "F1_change" and task.higher_is_better("F1_change")
