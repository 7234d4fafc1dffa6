"""The harness's own share of a sweep's wall time: everything outside training, validation and test iterations.

Runs a reduced demo sweep as the user would (``rsbench sweep`` in a fresh process, so interpreter and library
start-up count) on the demo's budgets: one backbone loaded from a checkpoint (so checkpoint reading counts) x the
five tasks x two fractions, frozen protocol, no pretraining stage. It
times the whole command from outside and reads from the store the seconds each cell spent inside iterations
(``step_time_s``, mmengine's iteration timer) and filling the feature cache (``feature_time_s``). The rest is
harness: process and model start-up, dataset building, stratification, runner construction, store writes,
intervals and the report. Target (issue "Performance"): under 5 % for the demo sweep. Last line: the shares.

``--run DIR`` measures a finished sweep instead, from its own ``timing.json`` (stage wall times, written by
every sweep) and the rows it computed: that is how the demo itself (``make demo``, ~20 minutes, too long to
rerun here) is split into iterations and harness. Pretraining's iterations and kNN probes (an evaluation)
count as work; its runner construction, data set-up and checkpoint writes count as harness.

    python perf/harness.py                          # ~2 minutes on 2 cores: a reduced demo sweep
    python perf/harness.py --run results/runs/demo  # a second: the demo as it ran
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

SPEC = """
name = "harness"
_vit = dict(img_size=64, patch_size=8)
backbones = [dict(name="mae_vit_t16", checkpoint={ckpt!r}, kwargs=_vit)]
dataset = dict(name="synthetic", seed=0, size=64)
tasks = ["segmentation", "classification", "detection", "change_detection", "depth"]
protocols = ["frozen"]
fractions = [0.05, 1.0]
_probe = dict(batch_size=16, lr=1e-2, warmup_iters=10, val_checks=5, epochs=30, min_iters=150, max_iters=600)
budgets = dict(segmentation=_probe, classification=_probe, depth=dict(_probe, lr=3e-3), change_detection=_probe,
               detection=dict(_probe, lr=2e-3, min_iters=100, max_iters=250))
task_kwargs = dict(detection=dict(neck_channels=32))
"""


def measure_run(run_dir: Path) -> None:
    """The harness share of a finished sweep, from its timing.json and the rows it computed."""
    timing_file = run_dir / "timing.json"
    if not timing_file.is_file():
        sys.exit(f"perf/harness.py: {timing_file} does not exist; run the sweep with this checkout first "
                 "(every sweep writes it)")  # fmt: skip
    timing = json.loads(timing_file.read_text())
    executor = timing.get("executor", timing.get("launcher", "local"))  # "launcher" in runs before the rename
    if timing.get("jobs", 1) != 1 or executor != "local":
        sys.exit(f"perf/harness.py: {run_dir} ran with {timing.get('jobs')} jobs ({executor}); the "
                 "split into cells needs a serial local run (--jobs 1, the demo's default)")  # fmt: skip
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's harness, wherever it runs from
    from benchmark.running.store import is_corrupted

    rows = pd.read_parquet(run_dir / "results.parquet")
    rows = rows[~is_corrupted(rows)]  # a corrupted test pass is part of its cell's time, not a cell
    cells = rows[pd.to_datetime(rows["created"], utc=True) >= pd.to_datetime(timing["created"], utc=True)]
    cells = cells.drop_duplicates("config_hash")
    if len(cells) != timing["cells"]:
        sys.exit(f"perf/harness.py: timing.json says {timing['cells']} cells ran, the store has {len(cells)} rows "
                 "created since; was the run dir written to by another sweep?")  # fmt: skip
    wall = timing["wall_s"]
    ran = [p for p in timing["pretraining"].values() if p.get("this_run")]
    pre_steps = sum(p.get("step_time_s") or 0.0 for p in ran)
    probes = sum(p.get("probe_time_s") or 0.0 for p in ran)
    steps, features, cell = cells["step_time_s"].sum(), cells["feature_time_s"].sum(), cells["cell_time_s"].sum()
    parts = [
        ("pretraining iterations", pre_steps, False),
        ("pretraining kNN probes (evaluation)", probes, False),
        ("pretraining runner, data, checkpoints", timing.get("pretraining_s", 0.0) - pre_steps - probes, True),
        ("cell training / validation / test iterations", steps, False),
        ("cells filling the feature cache (encoder)", features, False),
        ("set-up inside cells (runner, model, data)", cell - steps - features, True),
        ("between cells (store writes, progress)", timing["cells_s"] - cell, True),
        ("start-up (imports, spec), data check", timing["startup_s"] + timing["data_s"], True),
        ("summary: intervals, tables, plots, report", timing["report_s"], True),
    ]
    print(f"{run_dir}: {len(cells)} cells, {len(ran)} pretraining run(s), {wall:.1f} s wall ({timing['created']})")
    for label, seconds, _ in parts:
        print(f"  {label:<46} {seconds:8.1f} s  {100 * seconds / wall:5.1f} %")
    harness = sum(seconds for _, seconds, overhead in parts if overhead)
    print(f"harness share {100 * harness / wall:.1f} % of the wall time (target < 5 %); "
          f"{100 * (harness + features) / wall:.1f} % counting feature extraction as overhead")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="measure this finished sweep's run dir instead (e.g. the demo's)")
    args = parser.parse_args()
    if args.run is not None:
        return measure_run(args.run)
    work = Path(tempfile.mkdtemp(prefix="rsbench_perf_harness_"))
    import torch

    import backbones

    torch.manual_seed(1)
    model = backbones.build("mae_vit_t16", ("rgb", "dsm"), img_size=64, patch_size=8)
    ckpt = backbones.save_encoder_checkpoint(model, work / "encoder.pth", method="mae", **model.checkpoint_geometry())
    spec = work / "harness.py"
    spec.write_text(SPEC.format(ckpt=str(ckpt)))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "benchmark.cli", "sweep", str(spec), "--run-dir", str(work / "run")],
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"the sweep failed:\n{done.stderr[-3000:]}")
    cells = pd.read_parquet(work / "run" / "results.parquet").drop_duplicates("config_hash")
    steps, features, cell = cells["step_time_s"].sum(), cells["feature_time_s"].sum(), cells["cell_time_s"].sum()
    in_cells = cell - steps - features
    outside = wall - cell
    print(f"{len(cells)} cells in {wall:.1f} s (command wall time, from outside)")
    print(f"  training / validation / test iterations  {steps:7.1f} s  {100 * steps / wall:5.1f} %")
    print(f"  filling the feature cache (encoder)       {features:7.1f} s  {100 * features / wall:5.1f} %")
    print(f"  set-up inside cells (runner, model, ...)  {in_cells:7.1f} s  {100 * in_cells / wall:5.1f} %")
    print(f"  outside cells (start-up, data, report)    {outside:7.1f} s  {100 * outside / wall:5.1f} %")
    harness = in_cells + outside
    print(f"harness share {100 * harness / wall:.1f} % of the wall time (target < 5 %); "
          f"{100 * (harness + features) / wall:.1f} % counting feature extraction as overhead")  # fmt: skip


if __name__ == "__main__":
    main()
