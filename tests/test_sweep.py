"""Sweep specs (per-task datasets, presets), --dry-run, and the local / process-pool / submitit launchers."""

import math
from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.running.cells import IDENTITY, cell_hash, expand_cells
from benchmark.running.progress import plan
from benchmark.running.provenance import code_fingerprint, config_hash
from benchmark.running.spec import SweepSpec
from benchmark.running.store import ResultStore
from benchmark.running.sweep import run_sweep
from rsdatasets import register_dataset
from rsdatasets.synthetic import SyntheticBenchmark
from tasks import TrainBudget

REPO = Path(__file__).resolve().parents[1]
VIT = dict(img_size=32, patch_size=8, depth=1)
BUDGET = dict(max_iters=2, batch_size=4, warmup_iters=0, eval_batch_size=16)


@register_dataset("synthetic_renamed")
class RenamedSynthetic(SyntheticBenchmark):
    """The synthetic benchmark under other scene class names: shows where a task's class names come from."""

    scene_classes = tuple(f"scene{i}" for i in range(6))


def _spec(tmp_path, **overrides) -> SweepSpec:
    fields = dict(
        name="tiny",
        backbones=[dict(name="random_init_vit_t16", checkpoint=None, kwargs=VIT)],
        tasks=["segmentation"],
        dataset=dict(name="synthetic", root=str(tmp_path / "data"), seed=0, size=32, n=16),
        fractions=[0.5, 1.0],
        train_seeds=[0, 1],
        budgets=dict(segmentation=BUDGET),
        task_kwargs=dict(segmentation=dict(head_channels=16)),
    )
    return SweepSpec(**{**fields, **overrides})


def _ok_values(run_dir) -> pd.Series:
    frame = ResultStore(run_dir).load()
    assert (frame["status"] == "ok").all(), frame["status"].unique()
    return frame.set_index(["config_hash", "metric"])["value"].sort_index()


def test_the_cell_hash_covers_what_decides_the_numbers(tmp_path, monkeypatch):
    spec = _spec(tmp_path, protocols=["frozen", "finetune"])
    cells = expand_cells(spec)
    assert {c.protocol for c in cells} == {"frozen", "finetune"}
    for cell in cells:
        expected = {k: getattr(cell, k) for k in IDENTITY if k != "dataset"}
        expected.update(code=code_fingerprint(), checkpoint="none", backbone_kwargs=VIT, dataset=spec.dataset,
                        modalities=["rgb", "dsm"], budget=TrainBudget(**BUDGET).hashed(),
                        task_kwargs=dict(head_channels=16))  # fmt: skip
        assert cell_hash(spec, cell) == cell.config_hash == config_hash(expected)
    # A change to the code that computes results changes every hash (no stale row is reused).
    before = cells[0].config_hash
    monkeypatch.setattr("benchmark.running.cells.code_fingerprint", lambda: "another-version")
    assert expand_cells(spec)[0].config_hash != before


@pytest.mark.slow
def test_per_task_datasets_go_into_cells_and_rows(tmp_path):
    data = dict(root=str(tmp_path / "data"), seed=0, size=32, n=16)
    spec = _spec(
        tmp_path,
        tasks=["segmentation", "classification"],
        dataset=None,
        datasets=dict(
            segmentation=[dict(name="synthetic", **data), dict(name="synthetic_renamed", **data, fractions=[0.25])],
            classification=dict(
                name="synthetic_renamed",
                **data,
                modalities=["rgb"],
                budget=dict(max_iters=1),
                protocols=["finetune"],
            ),
        ),
        train_seeds=[0],
    )
    spec.validate()
    cells = expand_cells(spec)
    assert [(c.task, c.dataset, c.fraction) for c in cells] == [
        ("segmentation", "synthetic", 0.5), ("segmentation", "synthetic", 1.0),
        ("segmentation", "synthetic_renamed", 0.25), ("classification", "synthetic_renamed", 0.5),
        ("classification", "synthetic_renamed", 1.0),
    ]  # fmt: skip
    assert len({cell_hash(spec, c) for c in cells}) == len(cells)
    run_sweep(spec, tmp_path / "run")
    frame = ResultStore(tmp_path / "run").load()
    assert (frame["status"] == "ok").all()
    seg = frame[(frame["task"] == "segmentation") & (frame["metric"] == "mIoU")]
    assert sorted(zip(seg["dataset"], seg["fraction"], seg["n_train"])) == [
        ("synthetic", 0.5, 8), ("synthetic", 1.0, 16), ("synthetic_renamed", 0.25, 4)
    ]  # fmt: skip
    cls = frame[frame["task"] == "classification"]
    assert set(cls["dataset"]) == {"synthetic_renamed"} and set(cls["modalities"]) == {"rgb"}
    # The task took its class names from the dataset, not from its synthetic defaults.
    assert {"acc.scene0", "acc.scene5"} <= set(cls["metric"]) and "acc.residential" not in set(cls["metric"])
    assert len(list((tmp_path / "run" / "logs").glob("*.log"))) == len(cells)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(dataset=dict(name="no_such_data")), "task segmentation: unknown dataset 'no_such_data'"),
        (dict(dataset=None), "task segmentation has no dataset"),
        (dict(datasets=dict(depth=dict(name="synthetic"))), "datasets are given for ['depth']"),
        (dict(datasets=dict(segmentation=[dict(name="synthetic"), dict(name="synthetic")])), "lists a dataset twice"),
        (dict(datasets=dict(segmentation=dict(name="synthetic", fractions=[2.0]))), "label fraction 2.0"),
        (dict(datasets=dict(segmentation=dict(name="synthetic", budget=dict(iters=3)))), "unknown budget keys"),
        (dict(datasets=dict(segmentation=dict(root="x"))), "has no 'name'"),
        (dict(slurm=dict(partitions="gpu")), "unknown slurm keys ['partitions']"),
        (dict(datasets=dict(segmentation="synthetic")), "must be dict(name=..., ...)"),
    ],
)
def test_validate_names_the_problem(tmp_path, overrides, message):
    with pytest.raises((ValueError, KeyError)) as info:
        _spec(tmp_path, **overrides).validate()
    assert message in str(info.value.args[0])


PRESETS = {"mssdf_paper": 120, "cmid_paper": 30, "cmid_paper_swin": 30}  # backbones x (task, dataset, fraction) x seeds


@pytest.mark.parametrize("preset, n_cells", PRESETS.items())
def test_paper_presets_load_expand_and_dry_run(tmp_path, monkeypatch, capsys, preset, n_cells):
    from rsdatasets import list_datasets

    path = REPO / "configs" / "sweeps" / f"{preset}.py"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RSBENCH_CHECKPOINTS", raising=False)
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "rsbench convert" in err and len(err.strip().splitlines()) == 1
    for line in path.read_text().splitlines():  # every checkpoint the preset names, as an empty file
        if 'checkpoint=f"{_ckpt}/' in line:
            name = line.split('checkpoint=f"{_ckpt}/')[1].split('"')[0]
            (tmp_path / "checkpoints").mkdir(exist_ok=True)
            (tmp_path / "checkpoints" / name).touch()
    spec = SweepSpec.from_file(path)
    cells = expand_cells(spec)
    assert len(cells) == n_cells
    assert {c.dataset for c in cells} <= set(list_datasets())
    assert all(Path(b["checkpoint"]).is_file() for b in spec.backbones if b["checkpoint"])
    run_dir = tmp_path / "run"
    assert main(["sweep", str(path), "--dry-run", "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{n_cells} cells: 0 done, {n_cells} to run" in out and "Nothing was run" in out
    for dataset in {c.dataset for c in cells}:
        assert dataset in out
    assert not run_dir.exists()


def test_dry_run_reads_status_and_time_from_the_store(tmp_path, capsys):
    spec = _spec(tmp_path)
    done, failed, *todo = expand_cells(spec)
    rows = [
        dict(task="segmentation", backbone=cell.backbone, metric="mIoU", value=value, status=status, wall_time_s=wall,
             config_hash=cell_hash(spec, cell))
        for cell, value, status, wall in ((done, 5.0, "ok", 30.0), (failed, math.nan, "failed: boom", 1.0))
    ]  # fmt: skip
    ResultStore(tmp_path / "run").append(rows)
    cells = plan(spec, tmp_path / "run")
    assert list(cells["status"]) == ["done", "failed", "todo", "todo"]
    assert list(cells["estimate_s"]) == [30.0] * 4 and set(cells["estimate_from"]) == {"store"}
    assert list(plan(spec, tmp_path / "run", force=True)["status"]) == ["todo"] * 4
    fresh = plan(spec, tmp_path / "elsewhere")
    assert set(fresh["estimate_from"]) == {"guess"} and (fresh["estimate_s"] > 0).all()


@pytest.mark.slow
def test_parallel_workers_and_submitit_give_the_inline_numbers(tmp_path):
    spec = _spec(tmp_path)
    run_sweep(spec, tmp_path / "inline")
    reference = _ok_values(tmp_path / "inline")
    run_sweep(spec, tmp_path / "pool", jobs=2)
    pd.testing.assert_series_equal(_ok_values(tmp_path / "pool"), reference, rtol=1e-5)
    devices = set(ResultStore(tmp_path / "pool").load()["device"])
    assert all("1 threads" in d for d in devices), devices  # 2 cores // 2 jobs (on this 2-core machine)
    logs = sorted((tmp_path / "pool" / "logs").glob("*.log"))
    assert len(logs) == 4 and all("status: ok" in p.read_text() for p in logs)
    # Slurm path with submitit's in-process executor: same numbers, one job per cell.
    run_sweep(spec, tmp_path / "debug", executor="slurm", slurm=dict(cluster="debug", time_min=5))
    pd.testing.assert_series_equal(_ok_values(tmp_path / "debug"), reference, rtol=1e-5)


@pytest.mark.slow
def test_submitit_local_executor_runs_cells_as_processes(tmp_path, capsys):
    spec = _spec(tmp_path, fractions=[1.0], train_seeds=[0])
    run_sweep(spec, tmp_path / "run", executor="slurm", slurm=dict(cluster="local", time_min=5, cpus=1))
    frame = ResultStore(tmp_path / "run").load()
    assert (frame["status"] == "ok").all() and frame["config_hash"].nunique() == 1
    assert "submitted 1 job(s) to local" in capsys.readouterr().out
    assert list((tmp_path / "run" / "submitit").rglob("*_log.out"))


def test_a_failing_cell_is_a_row_and_a_log_and_runs_again(tmp_path):
    spec = _spec(tmp_path, fractions=[1.0], train_seeds=[0], budgets=dict(segmentation=dict(BUDGET, batch_size=0)))
    run_sweep(spec, tmp_path / "run")
    frame = ResultStore(tmp_path / "run").load()
    assert len(frame) == 1 and frame["status"].item().startswith("failed: ValueError")
    log = next((tmp_path / "run" / "logs").glob("*.log")).read_text()
    assert "--- traceback" in log and "status: failed" in log
    assert list(plan(spec, tmp_path / "run")["status"]) == ["failed"]  # failed cells are not done: they run again


def test_sweep_flags(tmp_path, capsys):
    spec_file = tmp_path / "spec.py"
    spec_file.write_text("name = 'x'\ntasks = ['segmentation']\nbackbones = [dict(name='random_init_vit_t16')]\n"
                         "dataset = dict(name='synthetic')\n")  # fmt: skip
    with pytest.raises(SystemExit):
        main(["sweep", str(spec_file), "--resume", "--force"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["sweep", str(spec_file), "--jobs", "0", "--run-dir", str(tmp_path / "r")]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err
    assert main(["sweep", str(spec_file), "--executor", "slurm", "--slurm", "nodes=2", "--run-dir", str(tmp_path)]) == 2
    assert "unknown slurm keys ['nodes']" in capsys.readouterr().err
    assert main(["sweep", str(spec_file), "--resume", "--dry-run", "--run-dir", str(tmp_path / "r")]) == 0
