"""Robustness as a sweep axis and the compute behind a row: corrupted test passes of a trained cell (no retraining,
their own features, rows and tile statistics), the spec's ``corruptions`` and backbone ``label`` and what they do
to a cell's hash, and the FLOPs / parameters a cell records without changing a number."""

import json
import math
import os
import random
from dataclasses import replace

import numpy as np
import pytest
import torch
from rich.console import Console
from torch.utils.data import Subset

import backbones
from backbones.checkpoint import encoder_parameter_counts
from benchmark.running.cells import cell_config, corruption_plan, expand_cells
from benchmark.running.spec import SweepSpec
from rsdatasets.corruptions import CorruptedDataset
from tasks import FinetunePlan, TrainBudget, finetune, get_task
from tasks.compute import step_flops
from tasks.features import FeatureCache

pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(**overrides) -> SweepSpec:
    base = dict(name="r", backbones=[dict(name="random_init_vit_t16", checkpoint=None,
                                          kwargs=dict(img_size=32, patch_size=8, depth=1))],
                tasks=["segmentation", "depth"], dataset=dict(name="synthetic", seed=0, size=32, n=16),
                fractions=[0.5, 1.0], budgets=dict(segmentation=dict(max_iters=2, batch_size=4)))  # fmt: skip
    return SweepSpec(**{**base, **overrides})


# ---- the spec ----


@pytest.mark.parametrize("corruptions, message", [
    ([dict(name="snow", severities=[1])], "unknown corruption 'snow'; known: gaussian_noise"),
    ([dict(name="missing_dsm", severities=[4])], "'missing_dsm' has severities 1..3, got 4"),
    ([dict(name="jpeg", severities=[1.5])], "'jpeg' has severities 1..5, got 1.5"),
    ([dict(name="jpeg")], "dict(name=..., severities=[...], seed=0)"),
    (["jpeg"], "dict(name=..., severities=[...], seed=0)"),
    ([dict(name="jpeg", severities=[1], level=2)], "unknown keys ['level']"),
    ([dict(name="jpeg", severities=[1]), dict(name="jpeg", severities=[1])], "listed twice"),
])  # fmt: skip
def test_a_bad_corruption_is_one_clear_error_before_anything_runs(corruptions, message):
    with pytest.raises(ValueError, match=None) as err:
        _spec(corruptions=corruptions).validate()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_label_may_not_take_another_entry_s_name():
    b = dict(name="random_init_vit_t16", checkpoint=None, kwargs=dict(img_size=32, patch_size=8))
    _spec(backbones=[b, dict(b, label="random_init_deeper", kwargs=dict(b["kwargs"], depth=2))]).validate()
    with pytest.raises(ValueError, match="already the name of another backbone entry"):
        _spec(backbones=[b, dict(b, label="random_init_vit_t16", kwargs=dict(depth=2))]).validate()
    with pytest.raises(ValueError, match="non-empty string"):
        _spec(backbones=[dict(b, label="")]).validate()


def test_corruptions_and_labels_enter_a_cell_s_hash_only_where_they_apply():
    plain = {c.label(): c for c in expand_cells(_spec())}
    assert not any("corruptions" in c.config or "label" in c.config for c in plain.values())
    assert {c.config_hash for c in expand_cells(_spec(corruptions=[]))} == {c.config_hash for c in plain.values()}
    # A missing DSM applies to segmentation (RGB + DSM in) but not to depth (RGB in, DSM the target): depth's
    # cells keep their hashes, segmentation's get new ones, each with the passes it runs.
    robust = _spec(corruptions=[dict(name="missing_dsm", severities=[1, 3])])
    for cell in expand_cells(robust):
        before = plain[cell.label()]
        if cell.task == "depth":
            assert cell.config_hash == before.config_hash and cell.passes == []
            assert corruption_plan(robust, cell)[1] == ["missing_dsm: not applicable to depth (its model reads rgb)"]
        else:
            assert cell.config_hash != before.config_hash and cell.cell_key != before.cell_key
            assert [(p.corruption, p.severity, p.seed) for p in cell.passes] == [("missing_dsm", 1, 0),
                                                                                 ("missing_dsm", 3, 0)]
            assert len({p.config_hash for p in cell.passes} | {cell.config_hash}) == 3
    # A label renames the rows: a cell of its own; the entry without one keeps its hash.
    entry = _spec().backbones[0]
    labelled = _spec(backbones=[entry, dict(entry, label="twin")])
    cells = expand_cells(labelled)
    assert {c.config_hash for c in cells if not c.backbone_label} == {c.config_hash for c in plain.values()}
    twins = [c for c in cells if c.backbone_label]
    assert twins and all(c.config["label"] == "twin" and c.shown_backbone == "twin" for c in twins)
    assert cell_config(labelled, twins[0])["backbone_kwargs"] == entry["kwargs"]


# ---- corrupted test passes of a trained cell ----


def _plan(data, tmp_path, protocol, extra, cache=None, **kw):
    train, test = data
    budget = TrainBudget(max_iters=6, batch_size=4, warmup_iters=0, val_checks=0)
    return FinetunePlan(get_task("segmentation", head_channels=16),
                        lambda: backbones.build("random_init_vit_t16", ("rgb", "dsm"), img_size=32, patch_size=8,
                                                depth=1),
                        Subset(train, range(12)), test, ("rgb", "dsm"), budget, 0, tmp_path, protocol=protocol,
                        feature_cache=cache, feature_key="k", extra_tests=extra, **kw)  # fmt: skip


@pytest.mark.parametrize("protocol", ["frozen", "finetune"])
def test_an_extra_test_pass_on_the_clean_split_repeats_the_clean_test_exactly(data, tmp_path, protocol):
    cache = FeatureCache() if protocol == "frozen" else None
    result = finetune(_plan(data, tmp_path, protocol, {"again": data[1]}, cache))
    again = result.extra_tests["again"]
    assert again.metrics == result.metrics and not again.error
    assert set(again.tile_stats) == set(result.tile_stats)
    assert all(np.array_equal(again.tile_stats[k], result.tile_stats[k]) for k in result.tile_stats)


def test_a_corrupted_pass_under_the_frozen_protocol_encodes_the_corrupted_inputs(data, tmp_path):
    cache = FeatureCache()
    missing = CorruptedDataset(data[1], "missing_dsm", 3, seed=0)
    result = finetune(_plan(data, tmp_path, "frozen", {"missing_dsm/3": missing}, cache))
    # Features of the clean and of the corrupted test split are cached apart (not the clean cache reused).
    assert cache.misses == 3 and result.extra_tests["missing_dsm/3"].metrics != result.metrics
    # Without a cache the frozen encoder reads the same corrupted inputs every step: the same numbers.
    plain = finetune(_plan(data, tmp_path / "b", "frozen", {"missing_dsm/3": missing}, None))
    assert plain.extra_tests["missing_dsm/3"].metrics == pytest.approx(result.extra_tests["missing_dsm/3"].metrics)
    assert plain.metrics == pytest.approx(result.metrics)


def test_a_failed_pass_is_its_own_failure_and_the_clean_result_stands(data, tmp_path):
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            raise RuntimeError("tile unreadable")

    result = finetune(_plan(data, tmp_path, "finetune", {"bad": Broken()}))
    assert result.metrics["mIoU"] == result.metrics["mIoU"]
    assert result.extra_tests["bad"].error == "RuntimeError: tile unreadable"


# ---- compute ----


def test_counting_a_step_s_flops_changes_neither_the_model_nor_any_random_state(data):
    task = get_task("segmentation", head_channels=16)
    model = task.build_model(backbones.build("random_init_vit_t16", ("rgb",), img_size=32, patch_size=8, depth=1),
                             ("rgb",))  # fmt: skip
    batch = task.collate([data[0][i] for i in range(4)], ("rgb",))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    flops = step_flops(model, batch)
    after_count = (torch.rand(1), np.random.rand(), random.random())
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    assert after_count == (torch.rand(1), np.random.rand(), random.random())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    # A ViT-Ti block at 16 tokens: the forward alone is at least 2 * params * tokens; a backward about doubles it.
    block = sum(p.numel() for p in model.backbone.vit.blocks.parameters())
    assert flops > 3 * 2 * block * 16 * 4


def test_training_flops_are_a_step_s_count_times_the_iterations_counted_once_per_key(data, tmp_path):
    counts: dict[str, float] = {}
    first = finetune(_plan(data, tmp_path, "finetune", {}, flops_cache=counts, flops_key="seg"))
    assert first.step_flops > 0 and first.train_flops == first.step_flops * first.iterations == 6 * first.step_flops
    assert counts == {"seg": first.step_flops} and first.flop_count_s > 0
    second = finetune(_plan(data, tmp_path / "b", "finetune", {}, flops_cache=counts, flops_key="seg"))
    assert second.step_flops == first.step_flops and second.flop_count_s == 0.0
    assert second.metrics == first.metrics  # counting changed no number
    assert math.isnan(finetune(_plan(data, tmp_path / "c", "finetune", {})).step_flops)  # no cache: not counted


def test_encoder_parameters_per_modality():
    both = backbones.build("random_init_vit_t16", ("rgb", "dsm"), img_size=32, patch_size=8, depth=1)
    rgb = backbones.build("random_init_vit_t16", ("rgb",), img_size=32, patch_size=8, depth=1)
    a, b = encoder_parameter_counts(both), encoder_parameter_counts(rgb)
    assert a["total"] == a["shared"] + a["rgb"] + a["dsm"] and set(b) == {"total", "shared", "rgb"}
    assert a["shared"] == b["shared"] and a["rgb"] == b["rgb"] and a["total"] - b["total"] == a["dsm"]
    assert a["rgb"] == 3 * 8 * 8 * 192 + 192 and a["dsm"] == 8 * 8 * 192 + 192  # one patch projection each
    assert a["total"] < sum(p.numel() for p in both.parameters())  # the task-side pyramid is not the encoder


# ---- through the sweep: rows, tile statistics, provenance, verify ----


@pytest.mark.slow
def test_a_sweep_with_corruptions_writes_pass_rows_their_statistics_and_the_skips(tmp_path, synth_root):
    from benchmark.running.cell_runner import CellRunner
    from benchmark.running.rundir import RunDir
    from benchmark.running.store import ResultStore
    from benchmark.running.sweep import run_sweep
    from benchmark.running.tilestats import load_tile_stats
    from benchmark.running.verify import verify

    spec = _spec(dataset=dict(name="synthetic", seed=0, size=32, n=16, root=str(synth_root)), fractions=[1.0],
                 protocols=["frozen"], budgets=dict(segmentation=dict(max_iters=2, batch_size=4, val_checks=0),
                                                    depth=dict(max_iters=2, batch_size=4, val_checks=0)),
                 corruptions=[dict(name="missing_dsm", severities=[3]), dict(name="gaussian_noise", severities=[2])])
    run_sweep(spec, tmp_path, console=Console(file=open(os.devnull, "w")))
    frame = ResultStore(tmp_path).load()
    seg = expand_cells(spec)[0]
    assert seg.task == "segmentation" and len(seg.passes) == 2
    rows = frame[frame["metric"] == "mIoU"].set_index("config_hash")
    assert rows.loc[seg.config_hash, "corruption"] == "none" and rows.loc[seg.config_hash, "severity"] == 0
    for p in seg.passes:
        row = rows.loc[p.config_hash]
        assert (row["corruption"], row["severity"], row["trained_config_hash"]) == (p.corruption, p.severity,
                                                                                     seg.config_hash)
        assert row["cell_key"] == seg.cell_key and row["n_train"] == rows.loc[seg.config_hash, "n_train"]
        stats = load_tile_stats(tmp_path, p.config_hash)
        assert stats is not None and not np.array_equal(stats["intersect"],
                                                        load_tile_stats(tmp_path, seg.config_hash)["intersect"])
    clean = frame[frame["corruption"] == "none"]
    assert clean["train_flops"].gt(0).all() and clean["encoder_params"].gt(0).all()
    provenance = json.loads(RunDir(tmp_path).provenance(expand_cells(spec)[1].config_hash).read_text())
    assert provenance["corruptions"]["skipped"] == ["missing_dsm: not applicable to depth (its model reads rgb)"]
    assert frame[frame["task"] == "depth"]["corruption"].isin(["none", "gaussian_noise"]).all()
    assert verify(tmp_path, fix=True).ok, verify(tmp_path).problems
    # A forced re-run of the cell replaces its pass rows too (one part per cell key), never duplicates them.
    CellRunner(spec, tmp_path, force=True).store.append(CellRunner(spec, tmp_path).run_cell(seg))
    again = ResultStore(tmp_path).load()
    assert len(again) == len(frame) and (again["config_hash"].value_counts() <= again["metric"].nunique()).all()
    assert replace(seg).passes == seg.passes


@pytest.mark.slow
def test_a_tiny_sweep_with_corruptions_reports_it_all_and_rsbench_report_redoes_it_without_training(tmp_path,
                                                                                                       synth_root):
    """The issue's end-to-end check: a sweep with a pretrained encoder and corruptions; its report has the verdict
    (aggregate, AUC heatmap), the AUC, robustness and compute; ``rsbench report RUN_DIR`` gives the same again
    from the store and the saved tile statistics alone."""
    import pandas as pd
    from conftest import write_tiny_pretrain_config

    from benchmark.cli import main
    from benchmark.running.store import ResultStore

    # The positive control, trained on the pool's labels: the aggregate's 1 (a reference that beats random init).
    control = dict(type="SupervisedPretrain", arch="vit_t16", img_size=32, patch_size=8, modalities=("rgb", "dsm"),
                   encoder_kwargs=dict(depth=2), num_scene_classes=6, num_seg_classes=6, height_weight=1.0,
                   rgb_only_prob=0.5, data_preprocessor=dict(type="BaseDataPreprocessor"))  # fmt: skip
    config = write_tiny_pretrain_config(tmp_path, "supervised_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", control, 8)
    vit = dict(img_size=32, patch_size=8, depth=2)
    spec = tmp_path / "tiny_robust.py"
    spec.write_text(f"""name = "tiny_robust"
pretrain = [dict(name="control", config={str(config)!r})]
backbones = [dict(name="random_init_vit_t16", checkpoint=None, kwargs={vit!r}),
             dict(name="supervised_vit_t16", checkpoint="pretrain:control", kwargs={vit!r})]
dataset = dict(name="synthetic", root={str(synth_root)!r}, size=32, n=16)
tasks = ["segmentation", "depth"]
fractions = [0.5, 1.0]
protocols = ["frozen"]
_budget = dict(max_iters=20, batch_size=4, warmup_iters=0, val_checks=0, lr=1e-2)
budgets = dict(segmentation=_budget, depth=_budget)
task_kwargs = dict(segmentation=dict(head_channels=16), depth=dict(head_channels=16))
corruptions = [dict(name="missing_dsm", severities=[3]), dict(name="gaussian_noise", severities=[1, 2])]
""")
    run = tmp_path / "run"
    assert main(["sweep", str(spec), "--run-dir", str(run)]) == 0
    md = (run / "report.md").read_text()
    for heading in ("## Verdict", "### The aggregate across tasks", "## Label efficiency",
                    "### Label efficiency: AUC of each backbone", "## Robustness to corruptions",
                    "### Robustness, segmentation", "### Which backbone degrades least", "### Compute behind every row",
                    "![Paired difference of the label-efficiency AUC to random init"):  # fmt: skip
        assert heading in md, heading
    assert "not applied: missing_dsm: not applicable to depth (its model reads rgb)" in md
    robust = pd.read_csv(run / "robustness.csv")
    assert set(robust["backbone"]) == {"random_init_vit_t16", "supervised_vit_t16"}
    assert set(zip(robust["task"], robust["corruption"])) == {("segmentation", "missing_dsm"),
                                                             ("segmentation", "gaussian_noise"),
                                                             ("depth", "gaussian_noise")}  # fmt: skip
    assert robust["ci_low"].notna().all()  # every pass saved its tile statistics, so every drop has its CI
    stats = pd.read_csv(run / "stats.csv")
    assert stats["auc"].notna().all()
    assert stats.loc[stats["backbone"] == "supervised_vit_t16", "auc_diff_low"].notna().all()
    aggregate = pd.read_csv(run / "aggregate.csv").set_index("backbone")
    assert set(aggregate.index) == {"random_init_vit_t16", "supervised_vit_t16"} and aggregate["iqm"].notna().all()
    # One training seed per column: nothing to resample, so the aggregate has no interval and the report says why.
    assert aggregate[["iqm_low", "iqm_high"]].isna().all().all()
    assert "no interval where every column has one run" in md
    compute = pd.read_csv(run / "compute.csv").set_index("backbone")
    assert compute.loc["random_init_vit_t16", "pretrain_flops"] == 0
    assert compute.loc["supervised_vit_t16", "pretrain_flops"] > 0 and (run / "pareto.png").is_file()
    assert (compute["adapt_flops"] > 0).all() and (compute["encoder_params"] > 0).all()

    # The same report from the run directory alone: nothing trains, the store does not change.
    before = ResultStore(run).load()
    cells = sorted(p.name for p in (run / "cells").iterdir())
    logs = sorted(p.name for p in (run / "logs").iterdir())
    csvs = {n: (run / f"{n}.csv").read_text() for n in ("stats", "aggregate", "robustness", "compute", "comparisons")}
    for name in [*csvs, "report"]:
        for path in run.glob(f"{name}.*"):
            path.unlink()
    assert main(["report", str(run)]) == 0
    pd.testing.assert_frame_equal(ResultStore(run).load(), before)
    assert sorted(p.name for p in (run / "cells").iterdir()) == cells and sorted(
        p.name for p in (run / "logs").iterdir()) == logs  # fmt: skip
    for name, text in csvs.items():
        assert (run / f"{name}.csv").read_text() == text, name
    assert "## Robustness to corruptions" in (run / "report.md").read_text()
