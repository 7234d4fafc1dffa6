"""The detection task: a tiny Faster R-CNN run, the box-AP metric against hand-worked values, edge cases."""

import math

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

import backbones
from rsdatasets.synthetic import SyntheticBenchmark
from tasks import FinetunePlan, TrainBudget, finetune, get_task
from tasks.detection import DetectionMetric

TINY = dict(img_size=64, patch_size=8, depth=4)
SMALL_HEADS = dict(neck_channels=32, fc_channels=64)  # CPU-sized heads for tests


def _tiny_backbone(modalities=("rgb",)):
    return lambda: backbones.build("random_init_vit_t16", modalities, **TINY)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, busy 2-core machine


@pytest.fixture(scope="module")
def data(synth_root):
    both = ("building", "car")  # the dataset's default is buildings only; the tests cover two classes
    train = SyntheticBenchmark(synth_root, "train", seed=0, size=64, n=32, det_classes=both)
    test = SyntheticBenchmark(synth_root, "test", seed=0, size=64, n=32, det_classes=both)
    return train, test


def _n_boxes(dataset, i: int) -> int:
    return len(dataset[i]["box_labels"])


@pytest.mark.slow
def test_tiny_detection_run_learns(data, tmp_path):
    train, test = data
    task = get_task("detection", **SMALL_HEADS)
    budget = TrainBudget(max_iters=30, batch_size=4, lr=2e-3, warmup_iters=3, eval_batch_size=8, log_interval=1)
    result = finetune(FinetunePlan(
        task, _tiny_backbone(), train, Subset(test, range(16)), ("rgb",), budget, 0, tmp_path
    ))
    losses = np.array(result.loss_history)
    assert len(losses) == 30
    # At init the RPN and RoI classifiers sit at ln 2 and ln 3; easy negatives are learnt within tens of steps.
    # Medians, because a batch holding a parking lot (100+ cars) spikes the loss whenever it comes.
    # (Seeds 0-3 give ratios of 0.36-0.52.)
    assert np.median(losses[-8:]) < 0.7 * np.median(losses[:8]), losses
    assert set(result.metrics) == {"mAP50", "mAP", "AP50.building", "AP50.car"}
    for name, value in result.metrics.items():
        assert math.isfinite(value) and 0 <= value <= 100, (name, value)


def _sample(boxes, labels, scores=None) -> dict:
    """A prediction/ground-truth record in the dict form mmengine's Evaluator hands to metrics."""
    boxes, labels = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.int64)
    scores = torch.ones(len(labels)) if scores is None else torch.tensor(scores, dtype=torch.float32)
    return {"bboxes": boxes, "labels": labels, "scores": scores}


def test_metric_against_hand_worked_values():
    b1, b2, c1 = [10, 10, 20, 20], [40, 40, 50, 52], [2, 30, 4, 34]
    gt_a = _sample([b1, b2, c1], [0, 0, 1])
    # Buildings: a false positive ranked first (0.9), then b1 exactly (0.8); b2 missed. No car predictions.
    pred_a = _sample([[60, 0, 64, 8], b1], [0, 0], [0.9, 0.8])
    empty = _sample([], [])  # an empty tile with nothing predicted counts for nothing
    metric = DetectionMetric(("building", "car"))
    metric.process(
        None, [{"pred_instances": pred_a, "gt_instances": gt_a}, {"pred_instances": empty, "gt_instances": empty}]
    )
    out = metric.compute_metrics(metric.results)
    # VOC (area) AP, building: ranked dets FP, TP -> recall (0, 0.5), precision (0, 0.5). The precision
    # envelope is 0.5 up to recall 0.5 and 0 beyond, so AP = (0.5 - 0) * 0.5 = 0.25. Car: 1 GT, no dets -> 0.
    assert out["AP50.building"] == pytest.approx(25.0)
    assert out["AP50.car"] == pytest.approx(0.0)
    assert out["mAP50"] == pytest.approx(12.5)
    # COCO: 101 recall points, precision 0.5 at the 51 points r <= 0.5, else 0 -> 25.5 / 101 at every IoU
    # threshold (the TP is exact); the car class has GT and so counts as 0.
    assert out["mAP"] == pytest.approx(100 * (25.5 / 101) / 2, abs=1e-4)

    perfect = DetectionMetric(("building", "car"))
    perfect.process(
        None, [{"pred_instances": gt_a, "gt_instances": gt_a}, {"pred_instances": empty, "gt_instances": empty}]
    )
    assert perfect.compute_metrics(perfect.results) == pytest.approx(
        {"mAP50": 100.0, "mAP": 100.0, "AP50.building": 100.0, "AP50.car": 100.0}
    )


def test_empty_tiles_train_and_strata(data):
    train, _ = data
    task = get_task("detection", **SMALL_HEADS)
    strata = task.strata(train)
    expected = [sum(1 << int(c) for c in set(train[i]["box_labels"].tolist())) for i in range(len(train))]
    assert strata.tolist() == expected
    assert task.strata(Subset(train, [3, 1])).tolist() == [expected[3], expected[1]]
    empty = int(np.flatnonzero(strata == 0)[0])
    busy = int(np.flatnonzero(strata == 3)[0])
    torch.manual_seed(0)
    model = task.build_model(_tiny_backbone()(), ("rgb",))
    for indices in ([empty], [empty, busy]):  # an all-empty batch (size 1) and a mixed one
        batch = model.data_preprocessor(task.collate([train[i] for i in indices], ("rgb",)), True)
        assert batch["data_samples"][0].gt_instances.bboxes.shape == (0, 4)
        losses = model(**batch, mode="loss")
        total = sum(v.sum() if torch.is_tensor(v) else sum(v) for k, v in losses.items() if "loss" in k)
        assert torch.isfinite(total)
        total.backward()


def test_same_seed_same_numbers_and_batch_size_one(data, tmp_path):
    train, test = data
    task = get_task("detection", **SMALL_HEADS)
    budget = TrainBudget(max_iters=3, batch_size=1, eval_batch_size=1, warmup_iters=0)
    empty = next(i for i in range(len(train)) if _n_boxes(train, i) == 0)
    small = Subset(train, [empty, *(i for i in range(len(train)) if _n_boxes(train, i) > 0)][:3])
    runs = [
        finetune(FinetunePlan(
            task, _tiny_backbone(), small, Subset(test, [0, 1]), ("rgb",), budget, 3, tmp_path / str(i)
        ))
        for i in range(2)
    ]
    assert len(runs[0].loss_history) == 3
    assert runs[0].loss_history == runs[1].loss_history
    assert runs[0].metrics == pytest.approx(runs[1].metrics, nan_ok=True)


def test_rgb_dsm_input(data, tmp_path):
    train, test = data
    task = get_task("detection", **SMALL_HEADS)
    budget = TrainBudget(max_iters=2, batch_size=2, eval_batch_size=4, warmup_iters=0)
    modalities = ("rgb", "dsm")
    result = finetune(FinetunePlan(
        task, _tiny_backbone(modalities), Subset(train, range(4)), Subset(test, range(4)), modalities, budget, 0,
        tmp_path
    ))
    assert all(math.isfinite(v) for v in result.loss_history)
    assert 0 <= result.metrics["mAP50"] <= 100


def test_vectorised_centernet_targets_are_mmdets():
    from mmdet.models.dense_heads import CenterNetHead

    from tasks.detection import CenterNetHeadAnySize

    g = torch.Generator().manual_seed(0)
    boxes, labels = [], []
    for k in (0, 1, 7, 25):  # an empty image, and crowded ones where centres share cells
        xy = torch.rand(k, 2, generator=g) * 56
        size = torch.rand(k, 2, generator=g) * 30 + 1
        boxes.append(torch.cat([xy, (xy + size).clamp(max=64)], 1))
        labels.append(torch.randint(0, 2, (k,), generator=g))
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("mmdet"):  # the head builds its losses from mmdet's registry
        head = CenterNetHeadAnySize(in_channels=8, feat_channels=8, num_classes=2)
    ours, ours_avg = head.get_targets(boxes, labels, (4, 8, 16, 16), (64, 64))
    theirs, theirs_avg = CenterNetHead.get_targets(head, boxes, labels, (4, 8, 16, 16), (64, 64))
    assert int(ours_avg) == int(theirs_avg)
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


@pytest.mark.slow
def test_detection_learns_buildings_on_a_tiny_set(synth_root, tmp_path):
    """The demo-scale detector learns: a frozen random-init ViT-Ti/8 with the CenterNet probe, 48 labelled 64-px
    tiles (buildings: larger than the 8-px patch), far above the mAP50 of the same probe before training."""
    from tasks.features import FeatureCache

    train = SyntheticBenchmark(synth_root, "train", seed=0, size=64, n=48)
    test = SyntheticBenchmark(synth_root, "test", seed=0, size=64, n=32)
    task = get_task("detection", class_names=("building",), neck_channels=32)

    def vit():
        return backbones.build("random_init_vit_t16", ("rgb", "dsm"), img_size=64, patch_size=8)

    cache = FeatureCache()
    scores = {}
    for iters in (1, 300):
        budget = TrainBudget(max_iters=iters, batch_size=16, lr=2e-3, warmup_iters=min(10, iters - 1) if iters > 1
                             else 0, val_checks=0)  # fmt: skip
        result = finetune(FinetunePlan(
            task, vit, train, test, ("rgb", "dsm"), budget, 0, tmp_path / str(iters), protocol="frozen",
            feature_cache=cache, feature_key="tiny"
        ))  # fmt: skip
        scores[iters] = result.metrics["mAP50"]
    assert scores[300] > 30 and scores[300] > scores[1] + 20, scores


def test_fine_tuning_with_the_frozen_protocols_centernet_head_trains_end_to_end(data, tmp_path):
    """head="probe": under fine-tuning, the frozen protocol's detector (CenterNet on the probe neck) on the trained
    encoder (issue 25: Faster R-CNN learns nothing at demo scale, the frozen CenterNet head does)."""
    from tasks.features import FrozenBackbone
    from tasks.probe import DetectionProbeNeck, EncoderMaps

    train, test = data
    task = get_task("detection", head="probe", neck_channels=32)
    model = task.build_model(_tiny_backbone()(), ("rgb",))
    frozen = get_task("detection", neck_channels=32).build_model(FrozenBackbone(_tiny_backbone()()), ("rgb",))
    assert type(model) is type(frozen) and isinstance(model.neck, DetectionProbeNeck)
    assert isinstance(model.backbone, EncoderMaps)
    batch = model.data_preprocessor(task.collate([train[i] for i in range(2)], ("rgb",)), training=True)
    losses = model(**batch, mode="loss")
    sum(v.sum() for k, v in losses.items() if "loss" in k).backward()
    block = model.backbone.backbone.vit.blocks[0].attn.qkv.weight  # the encoder trains: it gets a gradient
    assert block.grad is not None and block.grad.abs().sum() > 0

    budget = TrainBudget(max_iters=4, batch_size=2, eval_batch_size=4, warmup_iters=1, lr=2e-3, backbone_lr_mult=0.1,
                         layer_decay=0.75, drop_path_rate=0.1)  # fmt: skip
    result = finetune(FinetunePlan(
        task, _tiny_backbone(), Subset(train, range(8)), Subset(test, range(4)), ("rgb",), budget, 0, tmp_path
    ))
    assert len(result.loss_history) == 4 and all(math.isfinite(v) for v in result.loss_history)
    assert 0 <= result.metrics["mAP50"] <= 100
