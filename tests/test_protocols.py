"""Frozen vs fine-tuning side by side (benchmark.analysis.protocols) on made-up result tables."""

import math

import numpy as np
import pandas as pd
import pytest

from benchmark.analysis.protocols import agreement_table, compare_protocols, has_both_protocols, protocol_tables

BACKBONES = {"random_init_vit_t16": "random_init", "a_vit": "a", "b_vit": "b", "c_vit": "c"}


def _rows(scores: dict, seeds=(0, 1, 2), noise=0.1, metric="mIoU", higher=True, seed=0) -> pd.DataFrame:
    """scores[(task, fraction, protocol)] = {backbone: true score}; one row per seed pair with a little noise."""
    rng = np.random.default_rng(seed)
    records = []
    for (task, fraction, protocol), by_backbone in scores.items():
        for backbone, value in by_backbone.items():
            for s in seeds:
                records.append(dict(task=task, dataset="synthetic", fraction=fraction, protocol=protocol,
                                    backbone=backbone, method=BACKBONES[backbone], split_seed=0, train_seed=s,
                                    metric=metric, value=value + noise * rng.standard_normal(), status="ok",
                                    higher_is_better=higher))  # fmt: skip
    return pd.DataFrame.from_records(records)


ORDER = {"random_init_vit_t16": 50.0, "a_vit": 60.0, "b_vit": 55.0, "c_vit": 70.0}
REVERSED = {"random_init_vit_t16": 70.0, "a_vit": 55.0, "b_vit": 60.0, "c_vit": 50.0}


def test_same_order_gives_tau_one_and_reversed_order_tau_minus_one():
    frozen = _rows({("segmentation", 0.05, "frozen"): ORDER})
    same = pd.concat([frozen, frozen.assign(protocol="finetune")])  # the very same numbers under both protocols
    result = compare_protocols(same, n_boot=200)
    assert result.tau == pytest.approx(1.0) and result.tau_low == pytest.approx(1.0)
    assert not result.cells["disagree"].any()
    flipped = _rows({("segmentation", 0.05, "frozen"): ORDER, ("segmentation", 0.05, "finetune"): REVERSED})
    result = compare_protocols(flipped, n_boot=200)
    assert result.tau == pytest.approx(-1.0) and result.tau_high == pytest.approx(-1.0)
    # c: +20 frozen, -20 fine-tuned over random init, seeds tight: beyond both CIs
    cells = result.cells.set_index("backbone")
    assert cells.loc["c_vit", "disagree"] and cells.loc["c_vit", "gain_frozen"] == pytest.approx(20, abs=0.5)
    assert cells.loc["c_vit", "gain_finetune"] == pytest.approx(-20, abs=0.5)
    assert "disagree beyond" in result.summary() and "c_vit" in agreement_table(result)


def test_noise_larger_than_the_differences_leaves_the_order_and_the_cells_unresolved():
    rows = _rows({("segmentation", 0.05, "frozen"): ORDER, ("segmentation", 0.05, "finetune"): REVERSED},
                 noise=40.0, seeds=range(4), seed=3)  # fmt: skip
    result = compare_protocols(rows, n_boot=500)
    assert result.tau_low < 0 < result.tau_high or result.tau_high - result.tau_low > 1
    assert not result.cells["disagree"].any()  # intervals overlap everywhere


def test_mean_over_groups_and_the_metric_direction():
    rows = pd.concat([
        _rows({("segmentation", 0.05, "frozen"): ORDER, ("segmentation", 0.05, "finetune"): ORDER}),
        _rows({("segmentation", 1.0, "frozen"): ORDER, ("segmentation", 1.0, "finetune"): REVERSED}),
        # RMSE: lower is better; the same order under both protocols is agreement whatever the direction
        _rows({("depth", 0.05, "frozen"): ORDER, ("depth", 0.05, "finetune"): ORDER}, metric="RMSE", higher=False),
    ])  # fmt: skip
    result = compare_protocols(rows, metrics={"segmentation": "mIoU", "depth": "RMSE"}, n_boot=300)
    taus = result.groups.set_index(["task", "fraction"])["tau"]
    assert taus[("segmentation", 0.05)] == pytest.approx(1) and taus[("segmentation", 1.0)] == pytest.approx(-1)
    assert taus[("depth", 0.05)] == pytest.approx(1)
    assert result.tau == pytest.approx(1 / 3)
    assert result.tau_low <= 1 / 3 <= result.tau_high
    depth = result.cells[result.cells["task"] == "depth"].set_index("backbone")
    assert depth.loc["c_vit", "gain_frozen"] == pytest.approx(-20, abs=0.5)  # higher RMSE than random init: worse
    with pytest.raises(ValueError, match="several metrics"):
        compare_protocols(pd.concat([rows, rows.assign(metric="aAcc")]))


def test_only_cells_that_both_protocols_ran_with_common_seeds_are_compared():
    rows = _rows({("segmentation", 0.05, "frozen"): ORDER, ("segmentation", 0.05, "finetune"): ORDER,
                  ("segmentation", 1.0, "frozen"): ORDER})  # fmt: skip
    rows = rows[~((rows["backbone"] == "b_vit") & (rows["protocol"] == "finetune") & (rows["train_seed"] == 2))]
    result = compare_protocols(rows, n_boot=100)
    assert list(result.groups["fraction"]) == [0.05] and result.groups["n_seeds"].iloc[0] == 2
    single = _rows({("segmentation", 0.05, "frozen"): ORDER, ("segmentation", 0.05, "finetune"): REVERSED}, seeds=(0,))
    one_seed = compare_protocols(single, n_boot=100)
    assert one_seed.tau == pytest.approx(-1) and math.isnan(one_seed.groups["tau_low"].iloc[0])
    assert not one_seed.cells["disagree"].any()  # one seed: no interval, no claim


def test_gains_and_cis_from_paired_comparisons_are_used_as_given():
    rows = _rows({("depth", 0.05, "frozen"): ORDER, ("depth", 0.05, "finetune"): ORDER}, metric="RMSE", higher=False)
    comparisons = pd.DataFrame([
        dict(task="depth", dataset="synthetic", fraction=0.05, protocol="frozen", backbone="a_vit", diff=-0.8,
             ci_low=-1.0, ci_high=-0.6, lower=True),
        dict(task="depth", dataset="synthetic", fraction=0.05, protocol="finetune", backbone="a_vit", diff=0.5,
             ci_low=0.3, ci_high=0.7, lower=True),
    ])  # fmt: skip
    cells = compare_protocols(rows, comparisons=comparisons, n_boot=100).cells.set_index("backbone")
    assert cells.loc["a_vit", "gain_frozen"] == pytest.approx(0.8)  # lower RMSE: a gain
    assert cells.loc["a_vit", ["low_frozen", "high_frozen"]].tolist() == pytest.approx([0.6, 1.0])
    assert cells.loc["a_vit", "gain_finetune"] == pytest.approx(-0.5) and cells.loc["a_vit", "disagree"]


def test_the_report_tables_and_when_a_run_has_both_protocols():
    frozen = _rows({("segmentation", 0.05, "frozen"): ORDER})
    assert not has_both_protocols(frozen) and not has_both_protocols(frozen.iloc[:0])
    rows = _rows({("segmentation", 0.05, "frozen"): ORDER, ("segmentation", 0.05, "finetune"): REVERSED})
    assert has_both_protocols(rows)
    tables = dict(protocol_tables(compare_protocols(rows, n_boot=100)))
    tau = tables["protocols-tau"]
    assert list(tau.text["Kendall tau"]) == ["-1.00"] and "Kendall tau -1.00" in tau.note
    assert "c_vit" in set(tables["protocols-disagree"].text["backbone"])
