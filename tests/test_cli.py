import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import run_two_ranks

from benchmark.cli import main


@pytest.mark.slow
def test_help_through_the_console_script():
    exe = shutil.which("rsbench") or f"{sys.executable} -m benchmark.cli"
    out = subprocess.run(f"{exe} --help", shell=True, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for command in ("backbones", "data", "sweep", "demo"):
        assert command in out.stdout


def test_backbones_lists_the_registry(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "random_init_vit_t16" in out and "random_init" in out


def test_data_synth_generates_and_reuses(tmp_path, capsys):
    args = ["data", "synth", "--root", str(tmp_path), "--size", "32", "--n", "4", "--splits", "train", "test"]
    assert main(args) == 0
    manifests = sorted(tmp_path.rglob("manifest.json"))
    assert len(manifests) == 2
    stamps = [m.stat().st_mtime_ns for m in manifests]
    assert main(args) == 0
    assert [m.stat().st_mtime_ns for m in manifests] == stamps


def _spec(tmp_path, backbone="random_init_vit_t16", fractions="[0.25, 1.0]", checkpoint=None):
    path = tmp_path / "tiny_sweep.py"
    path.write_text(
        f"""name = "tiny"
dataset = dict(name="synthetic", root={str(tmp_path / "data")!r}, seed=0, size=32, n=16)
tasks = ["segmentation"]
backbones = [dict(name={backbone!r}, checkpoint={checkpoint!r}, kwargs=dict(img_size=32, patch_size=8, depth=2))]
modalities = ["rgb", "dsm"]
fractions = {fractions}
train_seeds = [0]
budgets = dict(segmentation=dict(max_iters=3, batch_size=4, warmup_iters=0))
task_kwargs = dict(segmentation=dict(head_channels=16))
"""
    )
    return path


@pytest.mark.slow
def test_sweep_writes_rows_table_and_plot_then_skips_done_cells(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["sweep", str(_spec(tmp_path)), "--run-dir", str(run_dir)]) == 0
    frame = pd.read_parquet(run_dir / "results.parquet")
    miou = frame[frame["metric"] == "mIoU"]
    assert sorted(miou["fraction"]) == [0.25, 1.0]
    assert sorted(miou["n_train"]) == [4, 16]  # requested fraction and actual count are both recorded
    assert (miou["status"] == "ok").all()
    assert (run_dir / "label_efficiency_segmentation.png").stat().st_size > 1000
    assert "mIoU" in (run_dir / "table.md").read_text()
    out = capsys.readouterr().out
    assert "Method x task" in out and "mIoU" in out

    assert main(["sweep", str(_spec(tmp_path)), "--run-dir", str(run_dir)]) == 0
    assert "2 already done" in capsys.readouterr().out
    assert len(pd.read_parquet(run_dir / "results.parquet")) == len(frame)


@pytest.mark.parametrize(
    "argv_factory, message",
    [
        (lambda p: ["sweep", str(p / "missing.py")], "does not exist"),
        (lambda p: ["sweep", str(_spec(p, backbone="no_such_backbone"))], "unknown backbone 'no_such_backbone'"),
        (lambda p: ["sweep", str(_spec(p, fractions="[0.0, 1.0]"))], "outside (0, 1]"),
        (lambda p: ["sweep", str(_spec(p, checkpoint=str(p / "enc.pth")))], "enc.pth of backbone"),
    ],
)
def test_bad_input_is_one_error_line_and_no_results(tmp_path, capsys, argv_factory, message):
    run_dir = tmp_path / "run"
    assert main([*argv_factory(tmp_path), "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (run_dir / "results.parquet").exists()


@pytest.mark.slow  # over 10 s on 2 cores; `make test` runs it
def test_finetune_writes_one_cell(tmp_path, capsys):
    run_dir = tmp_path / "ft"
    argv = ["finetune", "--task", "segmentation", "--backbone", "random_init_vit_t16", "--fraction", "0.5",
            "--seed", "1", "--run-dir", str(run_dir), "--dataset-options", "size=32", "n=8",
            f"root={tmp_path / 'data'}", "--backbone-options", "img_size=32", "patch_size=8", "depth=2",
            "--task-options", "head_channels=16", "--budget", "max_iters=2", "batch_size=2"]  # fmt: skip
    assert main(argv) == 0
    frame = pd.read_parquet(run_dir / "results.parquet")
    assert set(frame["train_seed"]) == {1} and set(frame["fraction"]) == {0.5} and set(frame["n_train"]) == {4}
    assert (frame["status"] == "ok").all() and "mIoU" in set(frame["metric"])
    assert main([*argv[:-3], "--budget", "max_iter=2"]) == 2
    assert "unknown budget keys ['max_iter']" in capsys.readouterr().err


def test_option_values_keep_tile_ids_as_strings():
    from benchmark.cli import _option_value

    assert _option_value("2_10") == "2_10"
    assert _option_value("64") == 64 and _option_value("5e-4") == 5e-4 and _option_value("0.5") == 0.5
    assert _option_value("true") is True and _option_value("None") is None
    assert _option_value("2_10,2_11") == ["2_10", "2_11"] and _option_value("IRRG") == "IRRG"


@pytest.mark.slow
def test_finetune_one_cell_with_ddp_on_two_cpu_ranks(tmp_path):
    """`rsbench finetune --ddp pytorch` under torchrun: two gloo ranks train one cell with DDP and rank 0
    alone writes its rows, evaluated over the whole test split (each rank scores its half)."""
    run_dir = tmp_path / "ddp"
    run_two_ranks(
        "finetune", "--task", "segmentation", "--backbone", "random_init_vit_t16", "--fraction", "0.5",
        "--run-dir", str(run_dir), "--ddp", "pytorch", "--dataset-options", "size=32", "n=8",
        f"root={tmp_path / 'data'}", "--backbone-options", "img_size=32", "patch_size=8", "depth=2",
        "--task-options", "head_channels=16", "norm=GN", "--budget", "max_iters=3", "batch_size=2", "eval_batch_size=2",
    )  # fmt: skip
    frame = pd.read_parquet(run_dir / "results.parquet")
    assert (frame["status"] == "ok").all() and frame["metric"].is_unique  # one row per metric: rank 0 wrote
    log = next((run_dir / "cells").rglob("*.log")).read_text()
    assert "Distributed training: True" in log and "MMDistributedDataParallel" in log
    assert "(test) [2/2]" in log  # 8 test tiles / (2 ranks x batch 2): each rank scored its half
