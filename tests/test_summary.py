"""Summaries a reader looks for first: label-efficiency AUC, the aggregate across tasks, robustness, compute.

Every expected number here is worked out by hand in the comment next to it.
"""

import math

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from benchmark.analysis.aggregates import (
    adaptation_compute,
    aggregate_scores,
    format_flops,
    least_degraded,
    normalization_anchors,
    normalized_scores,
    pareto_front,
    pretraining_compute,
    robustness_drops,
)
from benchmark.analysis.auc import (
    auc_weights,
    clean_rows,
    corrupted_rows,
    label_efficiency_auc,
    log_fraction_auc,
    paired_auc,
)
from benchmark.analysis.intervals import paired_difference

SEEDS = [(0, 0), (0, 1), (1, 0)]


def mean_resample(stats, weights):
    """A metric that is the tile-weighted mean of per-tile values (like overall accuracy)."""
    weights = np.atleast_2d(weights)
    return (weights @ stats["v"]) / weights.sum(1)


def resample_for(task):
    return mean_resample


class Store:
    """Rows of made-up cells and their tile statistics, as a sweep would leave them."""

    def __init__(self, n_tiles: int = 40, seed: int = 0):
        self.rows, self.stats, self.n = [], {}, n_tiles
        self.base = np.random.default_rng(seed).random(n_tiles)  # per-tile difficulty shared by every cell

    def add(self, backbone, method, fraction, tiles, seeds=SEEDS, lower=False, task="toy", arch="vit_t16",
            corruption=None, severity=None, **extra):  # fmt: skip
        for s, (split, train) in enumerate(seeds):
            values = np.asarray(tiles(s) if callable(tiles) else tiles, dtype=float)
            chash = f"{task}-{backbone}-{fraction}-{split}-{train}-{corruption}-{severity}"
            self.stats[chash] = {"v": values}
            self.rows.append({"task": task, "dataset": "synthetic", "protocol": "finetune", "metric": "m",
                              "method": method, "backbone": backbone, "arch": arch, "fraction": fraction,
                              "split_seed": split, "train_seed": train, "value": float(values.mean()),
                              "status": "ok", "config_hash": chash, "lower": lower, "corruption": corruption,
                              "severity": severity, **extra})  # fmt: skip
        return self

    @property
    def frame(self):
        return pd.DataFrame(self.rows)

    def stats_of(self, chash):
        return self.stats.get(chash)


# ---- label-efficiency AUC ----


def test_the_auc_of_known_curves():
    # log2 fractions -3, -2, 0 (range 3): trapezoids 1 * (10 + 20) / 2 + 2 * (20 + 50) / 2 = 15 + 70 = 85; / 3.
    assert log_fraction_auc([0.125, 0.25, 1.0], [10, 20, 50]) == pytest.approx(85 / 3)
    assert log_fraction_auc([1.0, 0.125, 0.25], [50, 10, 20]) == pytest.approx(85 / 3)  # any order
    assert log_fraction_auc([0.01, 0.1, 1.0], [40, 40, 40]) == pytest.approx(40)  # flat: its level
    # Straight in log fraction: the value at the middle of the log range (0.1 of 0.01..1), whatever the spacing.
    assert log_fraction_auc([0.01, 0.05, 0.1, 1.0], [0, np.log10(5) * 10, 10, 20]) == pytest.approx(10)
    assert math.isnan(log_fraction_auc([0.5], [3.0]))  # one fraction is no curve
    assert auc_weights([0.125, 0.25, 1.0]) == pytest.approx([1 / 6, 1 / 2, 1 / 3])
    with pytest.raises(ValueError, match="each fraction once"):
        log_fraction_auc([0.1, 0.1], [1, 2])
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        log_fraction_auc([0.0, 1.0], [1, 2])


def test_paired_auc_ci_shrinks_to_the_point_with_zero_noise_and_widens_with_noise():
    rng = np.random.default_rng(1)
    fractions = [0.1, 0.5, 1.0]
    base = [[{"v": rng.random(50) + i} for i in range(3)] for _ in range(3)]  # 3 seeds x 3 fractions
    shifted = [[{"v": c["v"] + 2.0} for c in curve] for curve in base]
    exact = paired_auc(mean_resample, fractions, shifted, base, n_resamples=500)
    assert (exact.mean, exact.low, exact.high) == pytest.approx((2.0, 2.0, 2.0))
    noisy = [[{"v": c["v"] + 2.0 + rng.normal(0, 1, 50)} for c in curve] for curve in base]
    d = paired_auc(mean_resample, fractions, noisy, base, n_resamples=500)
    assert d.low < d.mean < d.high and d.high - d.low > 0.1 and d.low < 2.0 < d.high
    # The observed value is the AUC of the mean curves (the AUC is linear in the metric).
    means = np.mean([[c["v"].mean() for c in curve] for curve in noisy], 0)
    means_b = np.mean([[c["v"].mean() for c in curve] for curve in base], 0)
    assert d.mean == pytest.approx(log_fraction_auc(fractions, means) - log_fraction_auc(fractions, means_b))


def test_paired_auc_shares_one_tile_multiset_across_fractions():
    # Two fractions of equal weight whose per-tile values cancel exactly: the AUC is 0 for every resample
    # only if both fractions are resampled with the same tiles (independent draws would scatter it).
    x = np.random.default_rng(2).normal(0, 1, 60)
    curves = [[{"v": x}, {"v": -x}] for _ in range(2)]
    d = paired_auc(mean_resample, [0.1, 1.0], curves, None, n_resamples=300)
    assert (d.mean, d.low, d.high) == pytest.approx((0.0, 0.0, 0.0), abs=1e-12)


def test_the_auc_difference_of_one_curve_per_seed_matches_a_paired_difference_of_the_aucs():
    # With a metric linear in the tile weights, AUC(A) - AUC(B) per resample is sum_f w_f (A_f - B_f);
    # feeding those per-tile combinations to stats.paired_difference directly must give the same numbers.
    rng = np.random.default_rng(3)
    fractions = [0.05, 0.2, 1.0]
    a = [[{"v": rng.random(30)} for _ in fractions] for _ in range(3)]
    b = [[{"v": rng.random(30)} for _ in fractions] for _ in range(3)]
    w = auc_weights(fractions)

    def combined(curves):
        return [{"v": sum(wi * c["v"] for wi, c in zip(w, curve))} for curve in curves]

    direct = paired_difference(mean_resample, combined(a), combined(b), n_resamples=400)
    via = paired_auc(mean_resample, fractions, a, b, n_resamples=400)
    assert (via.mean, via.low, via.high) == pytest.approx((direct.mean, direct.low, direct.high))


def _label_store(lower=False):
    sign = -1 if lower else 1
    store = Store()

    def tiles(level):  # per-tile difficulty + the seed's offset + the level, in the metric's direction
        return lambda s: store.base * 10 + s + sign * level

    for fraction, level in ((0.1, 40.0), (0.5, 50.0), (1.0, 60.0)):
        store.add("random_init_vit_t16", "random_init", fraction, tiles(level), lower=lower)
        store.add("supervised_vit_t16", "supervised", fraction, tiles(level + 10), lower=lower)
        if fraction != 0.5:  # MAE was not run at 50 %: no backbone's AUC may count 50 %
            store.add("mae_vit_t16", "mae", fraction, tiles(level + 4), lower=lower)
    return store


@pytest.mark.parametrize("lower", [False, True])
def test_label_efficiency_auc_uses_common_fractions_and_pairs_with_random_init(lower):
    store = _label_store(lower)
    table = label_efficiency_auc(store.frame, store.stats_of, resample_for, n_resamples=300).set_index("backbone")
    assert set(table["fractions"]) == {"10 %, 100 %"}
    assert "left out" in table.loc["supervised_vit_t16", "note"] and "50 %" in table.loc["supervised_vit_t16", "note"]
    # MAE is random init + 4 at every fraction on the same tiles and seeds: a difference of exactly +-4.
    sign = -1 if lower else 1
    mae = table.loc["mae_vit_t16"]
    assert (mae["diff"], mae["diff_low"], mae["diff_high"]) == pytest.approx((sign * 4,) * 3)
    assert mae["verdict"] == "better" and mae["baseline"] == "random_init_vit_t16" and mae["diff_n_seeds"] == 3
    # The supervised control pairs with random init over the three fractions both have.
    sup = table.loc["supervised_vit_t16"]
    assert sup["diff_fractions"] == "10 %, 50 %, 100 %" and sup["diff"] == pytest.approx(sign * 10)
    # Random init's own AUC: mean over seeds (0, 1, 2 added) of tiles' base * 10 + the level (40, 60 at 10 %, 100 %).
    expected = store.base.mean() * 10 + 1 + sign * 50
    rand = table.loc["random_init_vit_t16"]
    assert rand["auc"] == pytest.approx(expected) and rand["auc_low"] < expected < rand["auc_high"]
    assert math.isnan(rand["diff"])


def test_a_single_fraction_gives_no_auc_and_says_so():
    store = Store()
    store.add("random_init_vit_t16", "random_init", 1.0, lambda s: store.base)
    store.add("mae_vit_t16", "mae", 1.0, lambda s: store.base + 1)
    table = label_efficiency_auc(store.frame, store.stats_of, resample_for).set_index("backbone")
    assert table["auc"].isna().all() and "no AUC" in table.loc["mae_vit_t16", "note"]


def test_without_tile_statistics_the_auc_has_no_interval():
    store = _label_store()
    table = label_efficiency_auc(store.frame, None).set_index("backbone")
    assert table.loc["mae_vit_t16", "diff"] == pytest.approx(4) and math.isnan(table.loc["mae_vit_t16", "diff_low"])
    assert table.loc["mae_vit_t16", "verdict"] == "no interval"


# ---- the aggregate across tasks ----


def _aggregate_store():
    store = Store()
    levels = {"random_init_vit_t16": ("random_init", 40.0), "supervised_vit_t16": ("supervised", 80.0),
              "mae_vit_t16": ("mae", 60.0)}  # fmt: skip
    for backbone, (method, level) in levels.items():
        for fraction in (0.1, 1.0):
            store.add(backbone, method, fraction, lambda s, lv=level: store.base * 0 + lv + (s - 1) * 2)
            # An error metric on another task: 2.0 m for random init, 1.0 m for the control, 1.5 m for MAE.
            store.add(backbone, method, fraction, lambda s, lv=level: store.base * 0 + 3 - lv / 40 + (s - 1) * 0.1,
                      task="depth", lower=True)  # fmt: skip
    return store


def test_normalised_scores_are_0_for_random_init_and_1_for_the_control_in_either_direction():
    scores = normalized_scores(_aggregate_store().frame)
    means = scores.groupby(["task", "backbone"])["score"].mean()
    for task in ("toy", "depth"):
        assert means[task, "random_init_vit_t16"] == pytest.approx(0)
        assert means[task, "supervised_vit_t16"] == pytest.approx(1)
        assert means[task, "mae_vit_t16"] == pytest.approx(0.5)  # 60 of 40..80; 1.5 m of 2.0..1.0 m


def test_a_column_whose_reference_does_not_beat_random_init_is_left_out():
    store = Store()
    store.add("random_init_vit_t16", "random_init", 1.0, lambda s: store.base + 5)
    store.add("supervised_vit_t16", "supervised", 1.0, lambda s: store.base + 1)
    store.add("mae_vit_t16", "mae", 1.0, lambda s: store.base + 2)
    anchors = normalization_anchors(store.frame)
    assert not anchors["usable"].any() and "does not beat" in anchors["note"].iloc[0]
    assert normalized_scores(store.frame).empty
    # Without a reference method, the best backbone is 1.
    frame = store.frame[store.frame["method"] != "supervised"].copy()
    frame.loc[frame["method"] == "mae", "value"] += 10
    anchors = normalization_anchors(frame)
    assert anchors["usable"].all() and anchors["reference_kind"].iloc[0] == "best backbone"


def test_the_iqm_of_a_known_table_and_the_probability_of_improvement_by_hand():
    rows = []
    table = {"a": [0.1, 0.9, 0.5, 0.3], "b": [1.2, -0.2, 0.7, 0.4]}  # two columns x four seeds of one backbone
    randoms = {"a": [0.0, 0.2, -0.1, -0.3], "b": [0.1, 0.0, 2.0, -0.5]}
    for backbone, method, values in (("mae", "mae", table), ("rand", "random_init", randoms)):
        for task, column in values.items():
            for s, v in enumerate(column):
                rows.append({"task": task, "dataset": "d", "protocol": "p", "metric": "m", "fraction": 1.0,
                             "method": method, "backbone": backbone, "split_seed": 0, "train_seed": s,
                             "score": v, "random_backbone": "rand"})  # fmt: skip
    out = aggregate_scores(pd.DataFrame(rows), n_resamples=2000).set_index("backbone")
    # Sorted: -0.2 0.1 | 0.3 0.4 0.5 0.7 | 0.9 1.2; the middle half's mean: (0.3 + 0.4 + 0.5 + 0.7) / 4 = 0.475.
    assert out.loc["mae", "iqm"] == pytest.approx(0.475)
    assert out.loc["mae", "iqm_low"] < 0.475 < out.loc["mae", "iqm_high"]
    # Column a: every mae value beats every random value except 0.1 < 0.2: 15 of 16 pairs. Column b: count the
    # pairs (x > y) for x in (1.2, -0.2, 0.7, 0.4), y in (0.1, 0.0, 2.0, -0.5): 3 + 1 + 3 + 3 = 10 of 16.
    assert out.loc["mae", "p_improvement"] == pytest.approx((15 / 16 + 10 / 16) / 2)
    assert out.loc["mae", "p_low"] <= out.loc["mae", "p_improvement"] <= out.loc["mae", "p_high"]
    assert math.isnan(out.loc["rand", "p_improvement"])  # random init against itself is no comparison
    assert out.loc["mae", "n_columns"] == 2 and out.loc["mae", "n_scores"] == 8


def test_one_run_per_column_gives_the_aggregate_without_an_interval_not_a_zero_width_one():
    # The demo has one seed: resampling one run per column always gives the same IQM, and [x, x] would read as
    # certainty. The point estimate stays; the interval is absent, and the table shows no brackets.
    rows = [{"task": t, "dataset": "d", "protocol": "p", "metric": "m", "fraction": 1.0, "method": m,
             "backbone": b, "split_seed": 0, "train_seed": 0, "score": v, "random_backbone": "rand"}
            for t, (x, y) in {"a": (0.4, 0.0), "b": (-0.2, 0.0), "c": (0.9, 0.0)}.items()
            for b, m, v in (("mae", "mae", x), ("rand", "random_init", y))]  # fmt: skip
    out = aggregate_scores(pd.DataFrame(rows), n_resamples=200).set_index("backbone")
    assert out.loc["mae", "iqm"] == pytest.approx((0.4 - 0.2 + 0.9) / 3)  # 25 % of 3 scores trims none
    assert math.isnan(out.loc["mae", "iqm_low"]) and math.isnan(out.loc["mae", "iqm_high"])
    assert out.loc["mae", "p_improvement"] == pytest.approx(2 / 3)
    assert math.isnan(out.loc["mae", "p_low"]) and math.isnan(out.loc["mae", "p_high"])


def test_the_aggregate_of_a_whole_store_uses_only_columns_every_backbone_has():
    store = _aggregate_store()
    store.add("cmid_vit_t16", "cmid", 0.1, lambda s: store.base * 0 + 70)  # CMID ran one column only
    out = aggregate_scores(normalized_scores(store.frame), n_resamples=500).set_index("backbone")
    assert set(out["n_columns"]) == {1}
    assert out.loc["supervised_vit_t16", "iqm"] == pytest.approx(1) and out.loc["cmid_vit_t16", "iqm"] > 0.5
    assert out.loc["supervised_vit_t16", "p_improvement"] == pytest.approx(1.0)


# ---- robustness ----


def _robust_store():
    store = Store()
    for backbone, method, drop in (("random_init_vit_t16", "random_init", 3.0), ("mae_vit_t16", "mae", 1.0)):
        store.add(backbone, method, 1.0, lambda s: store.base * 10 + 50 + s)
        for severity in (1, 2):
            store.add(backbone, method, 1.0, lambda s, d=drop * severity: store.base * 10 + 50 + s - d,
                      corruption="gaussian_noise", severity=severity)  # fmt: skip
        store.add(backbone, method, 1.0, lambda s, d=drop * 5: store.base * 10 + 50 + s - d, corruption="missing_dsm",
                  severity=3)  # fmt: skip
    return store


def test_a_robustness_row_is_never_a_clean_row():
    frame = _robust_store().frame
    frame.loc[0, "corruption"] = "none"
    frame.loc[1, "corruption"] = ""
    assert len(clean_rows(frame)) + len(corrupted_rows(frame)) == len(frame)
    assert clean_rows(frame)["corruption"].fillna("none").isin(["none", ""]).all()
    assert set(corrupted_rows(frame)["corruption"]) == {"gaussian_noise", "missing_dsm"}
    assert len(clean_rows(frame.drop(columns=["corruption", "severity"]))) == len(frame)
    # The clean summaries ignore corrupted passes: adding them changes neither the AUC nor the scores.
    store = _label_store()
    clean = label_efficiency_auc(store.frame, store.stats_of, resample_for, n_resamples=200)
    for row in list(store.rows):
        store.rows.append({**row, "value": row["value"] - 30, "corruption": "haze", "severity": 2})
    mixed = label_efficiency_auc(store.frame, store.stats_of, resample_for, n_resamples=200)
    pd.testing.assert_frame_equal(clean, mixed)
    agg = _aggregate_store()
    before = aggregate_scores(normalized_scores(agg.frame), n_resamples=200)
    agg.rows += [{**r, "value": r["value"] * 0.1, "corruption": "jpeg", "severity": 1} for r in list(agg.rows)]
    pd.testing.assert_frame_equal(before, aggregate_scores(normalized_scores(agg.frame), n_resamples=200))


def test_robustness_drops_are_paired_and_direction_aware():
    store = _robust_store()
    drops = robustness_drops(store.frame, store.stats_of, resample_for, n_resamples=300)
    drops = drops.set_index(["backbone", "corruption", "severity"])
    # Every tile loses exactly `drop * severity`: the paired CI is that number, on both ends.
    for backbone, drop in (("random_init_vit_t16", 3.0), ("mae_vit_t16", 1.0)):
        for severity in (1, 2):
            row = drops.loc[(backbone, "gaussian_noise", severity)]
            assert (row["drop"], row["ci_low"], row["ci_high"]) == pytest.approx((drop * severity,) * 3)
            assert row["verdict"] == "degrades" and row["n_seeds"] == 3
    # An error metric that rises under corruption is a positive drop too.
    err = Store()
    err.add("a", "mae", 1.0, lambda s: err.base + 1, lower=True)
    err.add("a", "mae", 1.0, lambda s: err.base + 1.5, lower=True, corruption="haze", severity=1)
    row = robustness_drops(err.frame, err.stats_of, resample_for, n_resamples=200).iloc[0]
    assert row["drop"] == pytest.approx(0.5) and row["verdict"] == "degrades"


def test_the_backbone_that_degrades_least_and_its_margin():
    store = _robust_store()
    table = least_degraded(store.frame, store.stats_of, resample_for, n_resamples=300)
    table = table.set_index(["corruption", "severity"])
    row = table.loc[("gaussian_noise", 2)]
    assert row["best"] == "mae_vit_t16" and row["runner_up"] == "random_init_vit_t16"
    # Drops 2 and 6 on every tile: the margin is 4 with no spread.
    assert (row["margin"], row["ci_low"], row["ci_high"]) == pytest.approx((4.0, 4.0, 4.0)) and row["resolved"]
    assert table.loc[("missing_dsm", 3), "margin"] == pytest.approx(10.0)


def test_equal_drops_are_not_resolved():
    store = Store(seed=4)
    rng = np.random.default_rng(5)
    for backbone in ("a", "b"):
        store.add(backbone, "mae", 1.0, lambda s: store.base)
        store.add(backbone, "mae", 1.0, lambda s: store.base - 0.1 + rng.normal(0, 0.2, store.n), corruption="haze",
                  severity=1)  # fmt: skip
    row = least_degraded(store.frame, store.stats_of, resample_for, n_resamples=500).iloc[0]
    assert row["ci_low"] < 0 < row["ci_high"] and not row["resolved"]


# ---- compute ----


def test_adaptation_compute_counts_each_clean_cell_once():
    store = _robust_store()
    frame = store.frame.assign(wall_time_s=10.0, encoder_params_rgb=5e6)
    frame = pd.concat([frame, frame[frame["corruption"].isna()].assign(metric="other")])  # a second metric row
    table = adaptation_compute(frame).set_index("backbone")
    assert table.loc["mae_vit_t16", "cells"] == 3 and table.loc["mae_vit_t16", "adapt_s_total"] == 30.0
    assert math.isnan(table.loc["mae_vit_t16", "train_flops_total"])  # not counted: unknown, never 0
    assert table.loc["mae_vit_t16", "encoder_params_rgb"] == 5e6


def test_pretraining_compute_and_the_pareto_front():
    encoders = {
        "mae": {"method": "mae", "step_flops": 2e9, "iters": 1000, "batch_size": 64, "wall_time_s": 100.0},
        "mssdf": {"method": "mssdf", "flops": 5e12, "wall_time_s": 300.0},
        "rand": {"method": "random_init"},
        "timm": {"method": "timm"},
    }
    table = pretraining_compute(encoders).set_index("name")
    assert table.loc["mae", "pretrain_flops"] == 2e12 and table.loc["mae", "samples_seen"] == 64000
    assert table.loc["mssdf", "flops_source"] == "counted" and table.loc["rand", "pretrain_flops"] == 0
    assert math.isnan(table.loc["timm", "pretrain_flops"]) and format_flops(table.loc["timm", "pretrain_flops"]) == (
        "unknown")  # fmt: skip
    assert format_flops(2e12) == "2 TFLOP"
    points = pd.DataFrame({"pretrain_flops": [0, 2e12, 5e12, 3e12, np.nan], "auc": [40, 50, 55, 45, 90]})
    # (3e12, 45) is beaten by (2e12, 50); the unknown-cost point is never on the front.
    assert pareto_front(points).tolist() == [True, True, True, False, False]
    assert pareto_front(points.assign(auc=-points["auc"]), lower_y=True).tolist() == [True, True, True, False, False]


# ---- figures ----


def test_summary_figures_are_written(tmp_path):
    from benchmark.analysis.summary_plots import (
        aggregate_plot,
        difference_heatmap,
        pareto_plot,
        performance_profile_plot,
    )

    agg = _aggregate_store()
    scores = normalized_scores(agg.frame)
    summary = aggregate_scores(scores, n_resamples=200)
    auc = label_efficiency_auc(_label_store().frame, _label_store().stats_of, resample_for, n_resamples=200)
    auc = pd.concat([auc, auc.assign(task="depth", diff=-auc["diff"], diff_low=-auc["diff_high"],
                                     diff_high=-auc["diff_low"], lower=True)])  # fmt: skip
    points = auc[auc["auc"].notna()].assign(pretrain_flops=[0, 2e12, 3e12] * 2)
    points = pd.concat([points, points.iloc[:1].assign(backbone="timm_vit_t16", pretrain_flops=np.nan)])  # unknown
    paths = [
        aggregate_plot(summary, tmp_path / "aggregate.png"),
        performance_profile_plot(scores, tmp_path / "profile.png"),
        difference_heatmap(auc, tmp_path / "heatmap.png"),
        pareto_plot(points[points["task"] == "toy"], tmp_path / "pareto.png"),
    ]
    for path in paths:
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0, path
