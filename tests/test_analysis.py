"""Analysis of the long-format result rows: bootstrap CIs, ranks, label savings, published vs ours."""

import math

import numpy as np
import pandas as pd
import pytest

from benchmark import analysis
from benchmark.analysis.tables import method_task_table


def row(backbone, value, fraction=1.0, seed=0, task="segmentation", metric="mIoU", method=None, arch="vit_t16",
        dataset="synthetic", status="ok", checkpoint_hash="none"):  # fmt: skip
    return dict(method=method or analysis.method_of(backbone), backbone=backbone, arch=arch, task=task,
                dataset=dataset, fraction=fraction, n_train=int(100 * fraction), split_seed=0, train_seed=seed,
                metric=metric, value=value, status=status, checkpoint_hash=checkpoint_hash,
                config_hash=f"{backbone}-{checkpoint_hash}-{task}-{fraction}-{seed}", wall_time_s=10.0)  # fmt: skip


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows)


# ---- metric directions ----


@pytest.mark.parametrize(
    "task, metric, lower",
    [("depth", "RMSE", True), ("depth", "MAE", True), ("depth", "AbsRel_ge1m", True),
     ("segmentation", "mIoU", False), ("segmentation", "mIoU_excl_clutter", False),
     ("depth", "delta1.25_ge1m", False), ("classification", "OA", False), ("segmentation", "IoU.building", False),
     ("change_detection", "F1_change", False), ("detection", "mAP50", False), ("detection", "AP50.car", False)],
)  # fmt: skip
def test_metric_directions_come_from_the_task(task, metric, lower):
    assert analysis.lower_is_better(metric, task) is lower


def test_an_undeclared_metric_is_an_error_not_a_guess():
    with pytest.raises(KeyError, match="does not declare metric 'MSE'"):
        analysis.lower_is_better("MSE", "depth")
    with pytest.raises(KeyError, match="not registered"):
        analysis.lower_is_better("mIoU", "no_such_task")


def test_every_task_declares_its_primary_metric():
    from tasks import get_task, list_tasks

    for name in list_tasks():
        task = get_task(name)
        assert task.metric_info(task.primary_metric), name
    assert analysis.lower_is_better("RMSE", "depth") and not analysis.lower_is_better("mIoU", "segmentation")


def test_the_stored_direction_wins_over_the_registry():
    # A row written by a plugin task records its own direction; the report needs no import of the plugin.
    rows = frame([dict(row("random_init_vit_t16", 1.0, task="plugin_task", metric="MSE"), higher_is_better=False)])
    assert analysis.prepare(rows)["lower"].item() is True


# ---- bootstrap CI ----


def test_ci_collapses_when_all_seeds_agree():
    assert analysis.bootstrap_ci([42.0, 42.0, 42.0]) == (42.0, 42.0)


def test_ci_needs_two_seeds():
    low, high = analysis.bootstrap_ci([42.0])
    assert math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in analysis.bootstrap_ci([42.0, math.nan]))


@pytest.mark.parametrize("values", [[1.0, 2.0, 3.0], [10.0, 20.0], [3.0, 1.0, 2.0]])
def test_ci_of_up_to_three_seeds_is_min_to_max(values):
    # Worked by hand: all n draws equal the minimum with probability n**-n >= 1/27 > 2.5 %, so the 2.5th
    # percentile of the resampled means is the minimum (likewise the maximum on the other side).
    assert analysis.bootstrap_ci(values) == (min(values), max(values))


def test_ci_of_many_seeds_is_inside_the_range_and_reproducible():
    values = np.random.default_rng(1).normal(50, 2, size=20)
    low, high = analysis.bootstrap_ci(values)
    assert values.min() < low < values.mean() < high < values.max()
    assert analysis.bootstrap_ci(values) == (low, high)  # seeded: same interval every time
    # about mean +- 1.96 standard errors for a normal sample
    se = values.std(ddof=1) / math.sqrt(len(values))
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.25)


# ---- seed statistics ----


def test_seed_stats_average_over_seeds_and_skip_failures():
    rows = [row("random_init_vit_t16", v, seed=s) for s, v in enumerate([50.0, 52.0, 54.0])]
    rows += [row("random_init_vit_t16", math.nan, seed=3, status="failed: RuntimeError: boom")]
    rows += [row("random_init_vit_t16", 99.0, seed=0, metric="OA")]
    stats = analysis.seed_stats(frame(rows), {"segmentation": "mIoU"})
    assert len(stats) == 1
    s = stats.iloc[0]
    assert (s["n_seeds"], s["mean"], s["std"]) == (3, 52.0, 2.0)
    assert (s["ci_low"], s["ci_high"]) == (50.0, 54.0)
    assert s["method"] == "random_init"


def test_method_comes_from_the_registry_or_the_name_prefix():
    assert analysis.method_of("random_init_vit_t16") == "random_init"
    assert analysis.method_of("cmid_resnet50") == "cmid"  # not registered here: prefix before _resnet
    assert analysis.method_of("somebodys_vit_l14") == "somebodys"
    old_store = frame([row("mae_vit_t16", 1.0)]).drop(columns=["method", "arch"])
    prepared = analysis.prepare(old_store)
    assert prepared["method"].item() == "mae" and prepared["arch"].item() == "vit_t16"


def test_two_checkpoints_of_one_backbone_stay_apart():
    rows = [row("mssdf_vit_t16", 40.0, checkpoint_hash="aaaaaaaa1111"),
            row("mssdf_vit_t16", 60.0, checkpoint_hash="bbbbbbbb2222")]  # fmt: skip
    stats = analysis.seed_stats(frame(rows))
    assert sorted(stats["backbone"]) == ["mssdf_vit_t16@aaaaaaaa", "mssdf_vit_t16@bbbbbbbb"]
    assert sorted(stats["mean"]) == [40.0, 60.0]


# ---- ranks ----


def test_ranks_are_direction_aware_and_ties_share_the_better_rank():
    rows = [row("random_init_vit_t16", 50.0), row("mae_vit_t16", 60.0), row("mssdf_vit_t16", 60.0)]
    rows += [row(b, v, task="depth", metric="RMSE")
             for b, v in (("random_init_vit_t16", 2.0), ("mae_vit_t16", 1.5), ("mssdf_vit_t16", 1.0))]  # fmt: skip
    ranked = analysis.with_ranks(analysis.seed_stats(frame(rows)))
    ranks = ranked.set_index(["task", "backbone"])["rank"]
    assert ranks["segmentation"].to_dict() == {"mae_vit_t16": 1, "mssdf_vit_t16": 1, "random_init_vit_t16": 3}
    assert ranks["depth"].to_dict() == {"mae_vit_t16": 2, "mssdf_vit_t16": 1, "random_init_vit_t16": 3}


def test_best_cell_per_column_is_bold_in_the_method_task_table():
    rows = [
        row(b, v, task="depth", metric="RMSE", fraction=f)
        for b, v, f in (("random_init_vit_t16", 2.0, 1.0), ("mssdf_vit_t16", 1.0, 1.0), ("mssdf_vit_t16", 3.0, 0.5))
    ]
    table = method_task_table(analysis.seed_stats(frame(rows)))
    column = ("depth RMSE ↓", "100 %")
    assert table.bold.loc[("mssdf", "mssdf_vit_t16"), column]  # lowest RMSE
    assert not table.bold.loc[("random_init", "random_init_vit_t16"), column]
    assert not table.bold[("depth RMSE ↓", "50 %")].any()  # a column with one entry has no winner
    assert table.text.loc[("random_init", "random_init_vit_t16"), ("depth RMSE ↓", "50 %")] == "–"


# ---- label savings: tests/test_statistics.py (they need paired tile statistics) ----


# ---- published vs ours ----


def test_published_rows_match_method_task_dataset_fraction_metric():
    reference = analysis.load_reference()
    assert {"mssdf", "cmid"} <= set(reference["method"])
    rows = [row("mssdf_vit_t16", 70.0, fraction=0.5, dataset="potsdam", seed=s) for s in (0, 1)]
    rows += [row("mssdf_vit_t16", 50.0, fraction=1.0, dataset="potsdam")]  # no published number at 100 %
    rows += [row("mae_vit_t16", 10.0, task="detection", metric="mAP50", dataset="dota")]
    rows += [row("mae_vit_t16", 5.0, task="detection", metric="mAP", dataset="dota")]  # COCO mAP: not the same
    out = analysis.published_vs_ours(analysis.seed_stats(frame(rows)), reference)
    potsdam = out[out["task"] == "segmentation"]
    assert len(potsdam) == 1
    assert potsdam.iloc[0][["dataset", "fraction", "published", "ours"]].tolist() == ["ISPRS Potsdam", 0.5, 78.30, 70.0]
    assert potsdam.iloc[0]["delta"] == pytest.approx(-8.3)
    dota = out[out["task"] == "detection"]  # two published MAE backbones (ViT-B-RVSA, ViTAE-B-RVSA)
    assert sorted(dota["published"]) == [76.96, 78.08]
    assert set(dota["ours"]) == {10.0} and set(dota["metric"]) == {"mAP (ours: mAP50)"}


def test_synthetic_runs_match_no_published_number():
    rows = [row("mssdf_vit_t16", 50.0 + s, fraction=f, seed=s) for f in (0.05, 1.0) for s in (0, 1)]
    stats = analysis.seed_stats(frame(rows))
    assert analysis.published_vs_ours(stats, analysis.load_reference()).empty
