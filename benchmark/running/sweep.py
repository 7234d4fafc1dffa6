"""A sweep from start to end: the pretraining stage, the pending cells through an executor, the sweep's clock.

``run_sweep`` is what ``rsbench sweep`` and ``rsbench finetune`` run; the report at the end is the caller's
(``summarize``: the CLI hands in ``benchmark.analysis``'s), so running never depends on analysis.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from mmengine.dist import is_main_process
from rich.console import Console

from tasks.runtime import init_distributed

from .cell_runner import CellRunner
from .cells import expand_cells
from .executors import run_logged, run_pool, run_submitit
from .progress import SweepProgress
from .rundir import RunDir, write_json_atomic
from .spec import SLURM_KEYS, SweepSpec

#: What ``run_sweep`` calls at the end with (the run's rows, the spec, the run directory, the console).
Summarize = Callable[[pd.DataFrame, SweepSpec, Path, Console], object]


class SweepClock:
    """Wall time of a sweep's stages, written to ``RUN_DIR/timing.json``: what ``perf/harness.py --run`` reads
    to split a real run (the demo's) into iterations and harness."""

    def __init__(self, started: float | None = None) -> None:
        self.created, self.epoch = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.time()
        self.started = started if started is not None else time.perf_counter()
        self.stages: dict[str, float] = {"startup_s": time.perf_counter() - self.started}
        self.last = time.perf_counter()
        self.pretraining: dict[str, dict] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = self.stages.get(stage, 0.0) + now - self.last
        self.last = now

    def pretrained(self, encoders: dict[str, Path]) -> None:
        """The pretraining stage's lap, and each encoder's own wall / iteration seconds (from its metadata)."""
        from backbones.checkpoint import read_meta

        self.lap("pretraining_s")
        for name, path in encoders.items():
            meta = read_meta(path)
            self.pretraining[name] = {k: meta.get(k) for k in ("wall_time_s", "step_time_s", "probe_time_s", "iters")}
            self.pretraining[name]["this_run"] = path.stat().st_mtime >= self.epoch  # else reused from before

    def write(self, run: RunDir, **extra) -> None:
        total = time.perf_counter() - self.started
        write_json_atomic(run.timing, {
            "created": self.created, "wall_s": total, **self.stages,  # unrounded: display rounds
            "pretraining": self.pretraining, **extra,
        })  # fmt: skip


def run_sweep(spec: SweepSpec, run_dir: str | Path, force: bool = False, console: Console | None = None,
              jobs: int = 1, executor: str = "local", slurm: dict | None = None, ddp: str = "none",
              accept_stale: bool = False, started: float | None = None,
              summarize: Summarize | None = None) -> Path:  # fmt: skip
    """Run every pending cell (inline, in ``jobs`` local workers, or as Slurm jobs), then ``summarize`` the run.

    ``executor`` says where cells run (``local``: inline or ``jobs`` workers; ``slurm``: submitit jobs);
    ``ddp`` says how one cell trains across this job's ranks (``none``, ``pytorch`` under torchrun, ``slurm``
    under srun). ``summarize(rows, spec, run_dir, console)`` (the CLI passes the analysis' ``write_summary``)
    prints and writes the report; the sweep itself never computes a statistic. ``started``: the
    ``time.perf_counter()`` of the process start (the CLI's), so that ``timing.json`` counts library imports too.
    """
    clock = SweepClock(started)

    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    if executor not in ("local", "slurm"):
        raise ValueError(f"unknown executor {executor!r}; choose local or slurm")
    slurm = {**spec.slurm, **(slurm or {})}
    unknown = sorted(set(slurm) - set(SLURM_KEYS))
    if unknown:
        raise ValueError(f"unknown slurm keys {unknown}; known: {list(SLURM_KEYS)}")
    console = console or Console()
    run = RunDir(run_dir)
    if spec.pretrain:  # first stage: the encoders that "pretrain:NAME" checkpoints refer to
        from .pretrain_stage import run_spec_pretraining

        encoders = run_spec_pretraining(spec.pretrain, run, console)
        clock.pretrained(encoders)
        spec = spec.with_pretrained(run.root)
    if ddp != "none" and (jobs > 1 or executor != "local"):
        raise ValueError("DDP inside a cell (--ddp) runs under torchrun in one process per rank: use --jobs 1, local")
    if ddp != "none":
        init_distributed(ddp)
        if not is_main_process():  # one display and one summary: rank 0's
            console = Console(file=open(os.devnull, "w"))
    runner = CellRunner(spec, run.root, force=force, ddp=ddp)
    run.root.mkdir(parents=True, exist_ok=True)
    if is_main_process():
        write_json_atomic(run.spec_file, asdict(spec))  # what `rsbench results verify` compares the store with
    runner.store.sync_csv()
    every = expand_cells(spec)  # expanded and hashed once (after DDP set-up: the world size is in the hash)
    cells = runner.pending(every, accept_stale)
    console.print(
        f"sweep [bold]{spec.name}[/bold]: {len(every)} cells, {len(every) - len(cells)} already done -> {run.root}"
    )
    stale = [] if force else runner.stale(every)
    if stale:
        verb = "kept (--accept-stale)" if accept_stale else "computed again (--accept-stale keeps them)"
        console.print(f"{len(stale)} cell(s) have results from other code than this checkout's: {verb}",
                      soft_wrap=True)  # fmt: skip
    if cells and executor == "local":
        runner.prepare(cells)  # missing data fails here, once; synthetic data is generated before the clock starts
    clock.lap("data_s")
    parallel = jobs if executor == "local" or jobs > 1 else max(len(cells), 1)  # Slurm: all at once unless capped
    try:
        with SweepProgress(console, cells, spec, run.root, parallel) as display:
            if executor == "slurm" and cells:
                run_submitit(runner, cells, slurm, jobs, display)
            elif jobs > 1:
                run_pool(runner, cells, jobs, display)
            else:
                for cell in cells:
                    display.started(cell, total=cell.budget.max_iters)
                    display.finished(run_logged(runner, cell, False, progress=display.iteration_callback(cell)))
    finally:  # stopped or finished: one results.parquet / .csv for pandas and the report
        if is_main_process():
            runner.store.consolidate()
    clock.lap("cells_s")
    if not is_main_process():
        return run.root
    if summarize is not None:
        summarize(runner.store.load(), spec, run.root, console)
    clock.lap("report_s")
    clock.write(run, cells=len(cells), jobs=jobs, executor=executor)
    if display.failed:
        console.print(f"[red]{display.failed} cell(s) failed; see the logs under {run.logs}[/red]")
    return run.root
