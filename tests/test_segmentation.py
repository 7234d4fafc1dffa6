import numpy as np
import pytest
import torch
from torch.utils.data import Subset

import backbones
from tasks import FinetunePlan, TrainBudget, finetune, get_task
from tasks.segmentation import SegmentationMetric

TINY = dict(img_size=32, patch_size=8, depth=4)


def _tiny_backbone(modalities=("rgb", "dsm")):
    return lambda: backbones.build("random_init_vit_t16", modalities, **TINY)


@pytest.mark.slow
def test_tiny_segmentation_run_learns(data, tmp_path):
    train, test = data
    task = get_task("segmentation", head_channels=32)
    budget = TrainBudget(max_iters=60, batch_size=8, lr=2e-3, warmup_iters=4, log_interval=1)
    result = finetune(FinetunePlan(
        task, _tiny_backbone(), train, test, ("rgb", "dsm"), budget, seed=0, work_dir=tmp_path
    ))
    losses = np.array(result.loss_history)
    assert len(losses) == 60
    assert losses[-8:].mean() < 0.8 * losses[:8].mean(), losses
    assert 0 <= result.metrics["mIoU"] <= 100 and 0 <= result.metrics["OA"] <= 100
    assert any(p.stat().st_size > 0 for p in tmp_path.rglob("*.log"))


def test_same_seed_same_numbers_and_batch_size_one(data, tmp_path):
    train, test = data
    task = get_task("segmentation", head_channels=16, norm="GN")
    budget = TrainBudget(max_iters=3, batch_size=1, eval_batch_size=1, warmup_iters=0)
    small = Subset(train, [0, 1, 2])
    runs = [
        finetune(FinetunePlan(
            task, _tiny_backbone(("rgb",)), small, Subset(test, [0, 1]), ("rgb",), budget, 3, tmp_path / str(i)
        ))
        for i in range(2)
    ]
    assert runs[0].loss_history == runs[1].loss_history
    assert runs[0].metrics == runs[1].metrics


def test_metric_against_hand_computed_values():
    metric = SegmentationMetric(("a", "b", "c"), exclude=("c",))
    gt = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 2, 0, 0]])
    metric.process(None, [{"pred": pred, "gt": gt}])
    out = metric.compute_metrics(metric.results)
    # class a: inter 1, union 3 (gt 2 + pred 2 - 1); b: inter 2, union 3; c: inter 2, union 3
    assert out["IoU.a"] == pytest.approx(100 / 3)
    assert out["IoU.b"] == pytest.approx(200 / 3)
    assert out["IoU.c"] == pytest.approx(200 / 3)
    assert out["mIoU"] == pytest.approx(500 / 9)
    assert out["mIoU_excl_c"] == pytest.approx(50.0)
    assert out["OA"] == pytest.approx(100 * 5 / 7)  # the 255 pixel is ignored
    # F1 per class: a 2*0.5*0.5/(1)=0.5, b 2*(2/3)*1/(5/3)=0.8, c 2*1*(2/3)/(5/3)=0.8
    assert out["mF1"] == pytest.approx(100 * (0.5 + 0.8 + 0.8) / 3)


def test_sliding_window_inference_covers_a_larger_tile():
    torch.manual_seed(0)
    task = get_task("segmentation", head_channels=16, crop_size=32, stride=24)
    model = task.build_model(_tiny_backbone(("rgb",))(), ("rgb",)).eval()
    big = {"rgb": torch.rand(1, 3, 56, 56)}
    with torch.no_grad():
        slid = model(big, mode="tensor")
        # windows at 0 and 24 on each axis: the top-left 24 x 24 is seen by one window only
        first = model._logits({"rgb": big["rgb"][..., :32, :32]})
    assert slid.shape == (1, 6, 56, 56)
    assert torch.allclose(slid[..., :24, :24], first[..., :24, :24], atol=1e-5)
    preds = model(big, {"mask": torch.zeros(1, 56, 56, dtype=torch.long)}, mode="predict")
    assert preds[0]["pred"].shape == (56, 56)
