"""A sweep's pretraining stage: entries run once, are reused, and resolve ``pretrain:NAME`` checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_tiny_pretrain_config

import backbones
from benchmark.running.pretrain_stage import check_entries, encoder_path, pretrain_reference, run_pretraining

REPO = Path(__file__).resolve().parents[1]

TINY_MAE = dict(arch="vit_t16", img_size=32, patch_size=8, encoder_kwargs=dict(depth=2), decoder_dim=32,
                decoder_depth=1, decoder_heads=2)  # fmt: skip


def test_reference_parsing_and_checks(tmp_path):
    assert pretrain_reference("pretrain:mae") == "mae"
    assert pretrain_reference("/x/encoder.pth") is None and pretrain_reference(None) is None
    cfg = tmp_path / "c.py"
    cfg.write_text("x = 1\n")
    with pytest.raises(ValueError, match="names no pretrain entry"):
        check_entries([dict(name="mae", config=str(cfg))], ["pretrain:mssdf"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_entries([dict(name="mae", config=str(tmp_path / "missing.py"))], [])
    with pytest.raises(ValueError, match="needs 'name' and 'config'"):
        check_entries([dict(name="mae", conifg=str(cfg))], [])
    with pytest.raises(ValueError, match="unique"):
        check_entries([dict(name="a", config=str(cfg)), dict(name="a", config=str(cfg))], [])


def test_stage_runs_once_then_reuses_the_encoder(tmp_path):
    cfg = write_tiny_pretrain_config(tmp_path, "mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", TINY_MAE)
    entries = check_entries([dict(name="mae", config=str(cfg))], ["pretrain:mae", None])
    seen, logs = [], []
    paths = run_pretraining(entries, tmp_path / "run", progress=lambda *a: seen.append(a), log=logs.append)
    assert paths["mae"] == encoder_path(tmp_path / "run", "mae") and paths["mae"].is_file()
    assert seen[-1] == ("mae", 2, 2)  # 8 tiles, batch 4, 1 epoch
    encoder = backbones.build("mae_vit_t16", ("rgb", "dsm"), checkpoint=paths["mae"])
    assert encoder.patch_size == 8
    # The compute behind the encoder: one step's FLOPs (batch 4 of 32-px tiles) x 2 iterations x 1 process.
    meta = backbones.checkpoint.read_meta(paths["mae"])
    assert meta["step_flops"] > 0 and meta["world_size"] == 1 and meta["flops"] == 2 * meta["step_flops"]
    mtime = paths["mae"].stat().st_mtime_ns
    run_pretraining(entries, tmp_path / "run", log=logs.append)
    assert paths["mae"].stat().st_mtime_ns == mtime and "reusing" in logs[-1]


@pytest.mark.slow
def test_sweep_spec_pretrains_then_fine_tunes_on_the_exported_encoder(tmp_path, synth_root):
    from rich.console import Console

    from benchmark.analysis.summary import write_summary
    from benchmark.running.progress import print_plan
    from benchmark.running.spec import SweepSpec
    from benchmark.running.store import ResultStore
    from benchmark.running.sweep import run_sweep

    cfg = write_tiny_pretrain_config(tmp_path, "mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", TINY_MAE)
    spec = SweepSpec(
        name="stage", pretrain=[dict(name="mae", config=str(cfg))], tasks=["segmentation"],
        backbones=[dict(name="mae_vit_t16", checkpoint="pretrain:mae",
                        kwargs=dict(img_size=32, patch_size=8, depth=2))],
        dataset=dict(name="synthetic", root=str(synth_root), size=32, n=16), fractions=[0.5],
        budgets=dict(segmentation=dict(max_iters=2, batch_size=2, warmup_iters=0)),
        task_kwargs=dict(segmentation=dict(head_channels=16)),
    )  # fmt: skip
    spec.validate()
    console = Console(record=True, width=200)
    run = tmp_path / "run"
    print_plan(spec.with_pretrained(run), run, console)  # dry run: nothing pretrained or trained yet
    assert "to run first" in console.export_text() and not (run / "pretrain").exists()
    run_sweep(spec, run, console=console, summarize=write_summary)
    frame = ResultStore(run).load()
    assert set(frame["status"]) == {"ok"} and set(frame["backbone"]) == {"mae_vit_t16"}
    assert frame["checkpoint_hash"].iloc[0] == backbones.file_hash(encoder_path(run, "mae"))
    report = (run / "report.md").read_text()
    assert "Pretraining as run" in report and "pool" in report  # the fairness table: data, budget, wall time
    # timing.json: the stages add up to the wall time; the encoder's iteration seconds fit in its wall time
    timing = json.loads((run / "timing.json").read_text())
    stages = sum(timing[k] for k in ("startup_s", "pretraining_s", "data_s", "cells_s", "report_s"))
    assert timing["cells"] == 1 and stages == pytest.approx(timing["wall_s"], abs=0.1)
    mae = timing["pretraining"]["mae"]
    assert mae["this_run"] and 0 < mae["step_time_s"] <= mae["wall_time_s"] <= timing["pretraining_s"]
    assert 0 < mae["probe_time_s"] < mae["wall_time_s"] - mae["step_time_s"]  # the kNN probes: outside iterations
    split = subprocess.run([sys.executable, str(REPO / "perf" / "harness.py"), "--run", str(run)],
                           capture_output=True, text=True, check=True).stdout.strip().splitlines()  # fmt: skip
    assert "1 cells, 1 pretraining run(s)" in split[0] and split[-1].startswith("harness share ")
    shares = [float(line.split()[-2]) for line in split[1:-1]]
    assert sum(shares) == pytest.approx(100, abs=0.6)  # the parts add up to the wall time
    run_sweep(spec, run, console=console, summarize=write_summary)  # everything is reused: the encoder, the cell
    assert "reusing" in console.export_text() and len(ResultStore(run).load()) == len(frame)
    timing = json.loads((run / "timing.json").read_text())
    assert timing["cells"] == 0 and not timing["pretraining"]["mae"]["this_run"]
    with pytest.raises(ValueError, match="names no pretrain entry"):
        SweepSpec(**{**spec.__dict__, "pretrain": []}).validate()
