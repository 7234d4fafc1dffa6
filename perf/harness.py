"""The harness's own share of a sweep's wall time: everything outside training, validation and test iterations.

Runs a reduced demo sweep as the user would (``rsbench sweep`` in a fresh process, so interpreter and library
start-up count) on the demo's budgets: one backbone loaded from a checkpoint (so checkpoint reading counts) x the
five tasks x two fractions, frozen protocol, no pretraining stage. It
times the whole command from outside and reads from the store the seconds each cell spent inside iterations
(``step_time_s``, mmengine's iteration timer) and filling the feature cache (``feature_time_s``). The rest is
harness: process and model start-up, dataset building, stratification, runner construction, store writes,
intervals and the report. Target (issue "Performance"): under 5 % for the demo sweep. Last line: the shares.

    python perf/harness.py          # ~2 minutes on 2 cores
"""

from __future__ import annotations

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


def main() -> None:
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
