"""Intervals of cells and comparisons: tile bootstrap coverage, the paired difference, metrics recomputed from tiles,
and the analysis that uses them (paired comparisons, label savings, does random init rise with labels)."""

import math
import zlib

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark import analysis
from benchmark.analysis.intervals import paired_difference, tile_ci, tile_weights
from benchmark.running.rundir import RunDir
from benchmark.running.tilestats import save_tile_stats
from tasks.change_detection import ChangeMetric
from tasks.classification import ClassificationMetric
from tasks.depth import DepthMetric, depth_sums
from tasks.detection import DetectionMetric
from tasks.segmentation import SegmentationMetric

OA = ClassificationMetric.resample


def correct(p: float, n: int, rng) -> dict:
    """Classification tile statistics of a model that is right with probability p on each of n test images."""
    return {"correct": (rng.random(n) < p).astype(float)}


# ---- per-cell CI over test tiles ----


def test_tile_ci_covers_the_true_accuracy_at_about_the_nominal_rate():
    # Known distribution: each test image is right with probability 0.7, so OA is a binomial mean with truth 70.
    rng = np.random.default_rng(0)
    trials, hits = 200, 0
    for t in range(trials):
        low, high = tile_ci(OA, correct(0.7, 100, rng), n_resamples=500, seed=t)
        hits += low <= 70.0 <= high
    assert 0.90 <= hits / trials <= 0.99  # nominal 95 % (percentile bootstrap runs slightly narrow at n=100)


def test_tile_ci_brackets_the_value_and_is_reproducible():
    stats = correct(0.8, 200, np.random.default_rng(1))
    value = OA(stats, np.ones((1, 200)))[0]
    low, high = tile_ci(OA, stats)
    assert low < value < high
    assert tile_ci(OA, stats) == (low, high)
    se = 100 * math.sqrt(0.8 * 0.2 / 200)
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_tile_weights_count_multiplicities():
    w = tile_weights(np.array([[0, 0, 2], [1, 2, 2]]), 3)
    assert w.tolist() == [[2, 0, 1], [0, 1, 2]]


# ---- paired difference ----


def test_identical_backbones_differ_by_exactly_zero():
    rng = np.random.default_rng(2)
    a = [correct(0.7, 100, rng) for _ in range(3)]
    diff = paired_difference(OA, a, a)
    assert (diff.mean, diff.low, diff.high) == (0.0, 0.0, 0.0)
    assert not diff.resolved


def test_a_real_difference_is_resolved_with_the_right_sign():
    rng = np.random.default_rng(3)
    base = [correct(0.6, 200, rng) for _ in range(3)]
    # B is A with 30 % of A's wrong images turned right: a true +12-point difference on the same tiles
    better = [{"correct": np.where((s["correct"] == 0) & (rng.random(200) < 0.3), 1.0, s["correct"])} for s in base]
    diff = paired_difference(OA, better, base)
    assert diff.resolved and diff.low > 0
    assert diff.mean == pytest.approx(np.mean([100 * (b["correct"].mean() - a["correct"].mean())
                                               for a, b in zip(base, better)]))  # fmt: skip
    reverse = paired_difference(OA, base, better)
    assert reverse.high < 0 and reverse.mean == pytest.approx(-diff.mean)


def test_pairing_uses_the_shared_tiles_not_independent_samples():
    # Both models are right on the same hard/easy images (highly correlated); an unpaired comparison of two
    # 60 % vs 62 % models on 200 images would not resolve 2 points, the paired one does.
    rng = np.random.default_rng(4)
    easy = rng.random(200) < 0.6
    a = {"correct": easy.astype(float)}
    flip = np.flatnonzero(~easy)[:4]  # B also gets 4 of A's wrong images right: +2 points, nothing else differs
    b = {"correct": a["correct"].copy()}
    b["correct"][flip] = 1.0
    diff = paired_difference(OA, [b], [a])
    assert diff.mean == pytest.approx(2.0) and diff.low > 0


def test_seed_noise_widens_the_interval():
    rng = np.random.default_rng(5)
    base = [correct(0.7, 100, rng) for _ in range(4)]
    noisy = [correct(p, 100, rng) for p in (0.55, 0.85, 0.6, 0.8)]  # same mean skill, large seed spread
    one_seed = paired_difference(OA, noisy[:1], base[:1])
    four = paired_difference(OA, noisy, base)
    assert not four.resolved
    assert four.n_seeds == 4 and one_seed.n_seeds == 1


def test_paired_difference_refuses_unpaired_input():
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match="paired seeds"):
        paired_difference(OA, [correct(0.5, 10, rng)], [correct(0.5, 10, rng)] * 2)
    with pytest.raises(ValueError, match="same test tiles"):
        paired_difference(OA, [correct(0.5, 10, rng)], [correct(0.5, 11, rng)])


# ---- every task metric recomputed from its tile statistics ----


def _seg_results(rng, n=12, classes=6):
    from mmseg.evaluation.metrics import IoUMetric

    out = []
    for _ in range(n):
        gt = torch.from_numpy(rng.integers(0, classes, (16, 16)))
        noise = torch.from_numpy(rng.integers(0, classes, (16, 16)))
        pred = torch.where(torch.from_numpy(rng.random((16, 16)) < 0.6), gt, noise)
        out.append(IoUMetric.intersect_and_union(pred, gt, classes, 255))
    return out


def _check(metric, results, primary):
    reported = metric.compute_metrics(results)[primary]
    stats = metric.last_tile_stats
    n = len(results)
    assert metric.resample(stats, np.ones((1, n)))[0] == pytest.approx(reported, rel=1e-6, abs=1e-9)
    # (float32 in mmseg / mmdet, float64 here: equal to float32 precision)
    # a resample that takes the first tile twice and drops the last equals the metric of that list of results
    weights = np.ones((1, n))
    weights[0, 0], weights[0, -1] = 2, 0
    again = type(metric)(**metric._init_kwargs) if hasattr(metric, "_init_kwargs") else metric
    expected = again.compute_metrics([results[0], *results[:-1]])[primary]
    assert metric.resample(stats, weights)[0] == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_segmentation_miou_from_tiles():
    _check(SegmentationMetric(tuple("abcdef")), _seg_results(np.random.default_rng(7)), "mIoU")


def test_classification_oa_from_tiles():
    rng = np.random.default_rng(8)
    results = [(int(p), int(g)) for p, g in zip(rng.integers(0, 3, 30), rng.integers(0, 3, 30))]
    _check(ClassificationMetric(("a", "b", "c")), results, "OA")


def test_change_f1_from_tiles():
    from mmseg.evaluation.metrics import IoUMetric

    rng = np.random.default_rng(9)
    results = []
    for _ in range(10):
        gt = torch.from_numpy((rng.random((16, 16)) < 0.1).astype(np.int64))
        pred = torch.from_numpy((rng.random((16, 16)) < 0.15).astype(np.int64)) | gt * int(rng.random() < 0.7)
        results.append(IoUMetric.intersect_and_union(pred, gt, 2, 255))
    _check(ChangeMetric(), results, "F1_change")


def test_depth_rmse_from_tiles():
    rng = np.random.default_rng(10)
    results = []
    for _ in range(10):
        gt = torch.from_numpy(rng.uniform(0, 20, (1, 8, 8)))
        pred = gt + torch.from_numpy(rng.normal(0, 2, (1, 8, 8)))
        valid = torch.from_numpy(rng.random((1, 8, 8)) < 0.9)
        results.append(depth_sums(pred, gt, valid, 1.0))
    _check(DepthMetric(), results, "RMSE")


def test_detection_map50_from_tiles_matches_mmdet_eval_map():
    rng = np.random.default_rng(11)
    results = []
    for _ in range(15):
        k = int(rng.integers(0, 5))
        gt = np.sort(rng.uniform(0, 60, (k, 4)), axis=1)[:, [0, 2, 1, 3]].astype(np.float32)
        gt[:, 2:] = gt[:, :2] + rng.uniform(5, 20, (k, 2))
        hits = gt + rng.normal(0, 1.5, gt.shape).astype(np.float32)
        junk = np.sort(rng.uniform(0, 60, (3, 4)), axis=1)[:, [0, 2, 1, 3]].astype(np.float32)
        junk[:, 2:] = junk[:, :2] + 8
        boxes = np.vstack([hits, junk]).astype(np.float32)
        results.append({"boxes": boxes, "scores": rng.random(len(boxes)).astype(np.float32),
                        "labels": rng.integers(0, 2, len(boxes)), "gt_boxes": gt,
                        "gt_labels": rng.integers(0, 2, k)})  # fmt: skip
    _check(DetectionMetric(("building", "car")), results, "mAP50")


def test_vectorised_area_ap_is_mmdets_average_precision():
    from mmdet.evaluation.functional import average_precision

    from tasks.detection import area_ap

    rng = np.random.default_rng(13)
    tp = np.cumsum(rng.random((5, 40)) < 0.6, axis=1).astype(float)
    fp = np.cumsum(rng.random((5, 40)) < 0.4, axis=1).astype(float)
    recalls, precisions = tp / 30, tp / np.maximum(tp + fp, 1e-6)
    np.testing.assert_allclose(area_ap(recalls, precisions), average_precision(recalls, precisions, "area"),
                               rtol=1e-6)  # fmt: skip  (mmdet returns float32)


# ---- the analysis on stored tile statistics ----


def _store(tmp_path, specs):
    """Rows + tile statistics: specs = [(backbone, fraction, seed, p_correct)], 200 shared test images."""
    rng = np.random.default_rng(12)
    hard = rng.random(200)  # image difficulty shared by every model: that is what pairing exploits
    rows = []
    for backbone, fraction, seed, p in specs:
        chash = f"{backbone}-{fraction}-{seed}"
        noise = np.random.default_rng(zlib.crc32(chash.encode())).random(200) * 0.1
        stats = {"correct": (hard + noise < p + 0.05).astype(float)}
        save_tile_stats(RunDir(tmp_path).tile_stats(chash), stats, task="classification", metric="OA")
        method = "random_init" if backbone.startswith("random") else backbone.split("_vit")[0]
        rows.append(dict(method=method, backbone=backbone, arch="vit_t16", task="classification", dataset="synthetic",
                         protocol="frozen", fraction=fraction, n_train=int(400 * fraction), split_seed=0,
                         train_seed=seed, metric="OA", value=100 * stats["correct"].mean(), status="ok",
                         config_hash=chash, higher_is_better=True))  # fmt: skip
    return pd.DataFrame(rows)


CURVES = {"random_init_vit_t16": [0.5, 0.6, 0.7], "supervised_vit_t16": [0.75, 0.8, 0.85],
          "mae_vit_t16": [0.51, 0.6, 0.7]}


def _curve_specs():
    return [(b, f, s, p) for b, ps in CURVES.items() for f, p in zip((0.05, 0.25, 1.0), ps) for s in (0, 1)]


def test_paired_comparisons_resolve_real_gaps_and_not_ties(tmp_path):
    frame = _store(tmp_path, _curve_specs())
    paired = analysis.paired_comparisons(frame, tmp_path).set_index(["backbone", "fraction"])
    assert paired.loc[("supervised_vit_t16", 0.05), "verdict"] == "better"
    assert paired.loc[("supervised_vit_t16", 0.05), "ci_low"] > 0
    assert paired.loc[("mae_vit_t16", 0.25), "verdict"] == "not resolved"  # the same skill as random init
    assert paired.loc[("mae_vit_t16", 0.25), "ci_low"] < 0 < paired.loc[("mae_vit_t16", 0.25), "ci_high"]
    assert set(paired["baseline"]) == {"random_init_vit_t16"}


def test_label_savings_are_claimed_only_where_the_interval_supports_them(tmp_path):
    frame = _store(tmp_path, _curve_specs())
    savings = analysis.label_savings(frame, tmp_path).set_index("backbone")
    assert savings.loc["supervised_vit_t16", "fraction_needed"] == 0.05  # 75 % at 5 % beats 70 % at 100 %
    assert savings.loc["supervised_vit_t16", "result"] == "5 % of labels (saves 95 %)"
    assert savings.loc["supervised_vit_t16", "ci_low"] > 0
    # mae at 100 % ties random init at 100 %: no claim either way
    assert savings.loc["mae_vit_t16", "result"] == "not resolved at this budget"
    assert math.isnan(savings.loc["mae_vit_t16", "fraction_needed"])


def test_label_savings_say_not_reached_when_every_fraction_is_worse(tmp_path):
    specs = [(b, f, s, p) for b, ps in {"random_init_vit_t16": [0.5, 0.6, 0.9], "mae_vit_t16": [0.3, 0.4, 0.5]}.items()
             for f, p in zip((0.05, 0.25, 1.0), ps) for s in (0, 1)]  # fmt: skip
    savings = analysis.label_savings(_store(tmp_path, specs), tmp_path)
    assert savings["result"].item() == "not reached (worse at every fraction)"


def test_baseline_monotonicity_and_its_caveat(tmp_path):
    frame = _store(tmp_path, _curve_specs())
    mono = analysis.baseline_monotonicity(frame, tmp_path).iloc[0]
    assert mono["monotone"] and mono["ci_low"] > 0
    broken = _store(tmp_path, [(b, f, s, p) for b, ps in {"random_init_vit_t16": [0.8, 0.6, 0.5],
                                                           "mae_vit_t16": [0.6, 0.6, 0.6]}.items()
                               for f, p in zip((0.05, 0.25, 1.0), ps) for s in (0, 1)])  # fmt: skip
    assert not analysis.baseline_monotonicity(broken, tmp_path).iloc[0]["monotone"]
    caveat = analysis.label_savings(broken, tmp_path)["caveat"].item()
    assert caveat.startswith("random init is better at 5 %, 25 % than at 100 %")


def test_stats_lines_have_two_way_intervals_even_with_one_seed(tmp_path):
    frame = _store(tmp_path, [("random_init_vit_t16", 1.0, 0, 0.7)])
    line = analysis.seed_stats(frame, run_dir=tmp_path).iloc[0]
    assert line["n_seeds"] == 1 and line["ci_kind"] == "seeds x tiles"
    assert line["ci_low"] < line["mean"] < line["ci_high"]
