"""Where sweep cells run, the executors: inline, in N local worker processes, or as Slurm jobs through submitit.

Every path ends in :func:`run_logged`: the cell runs, its rows go into the store, and its log lands in
``RUN_DIR/logs/``. Scheduling is left to the standard library (``ProcessPoolExecutor``) and to Slurm
(submitit job arrays); this module only keeps at most N cells in flight and reports each to the display.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

from mmengine.dist import is_main_process

from rsbench.watchdog import CellStalled, CellWatchdog

from . import preemption
from .cell_runner import CellRunner
from .cells import Cell
from .progress import SweepProgress
from .provenance import config_hash
from .slurm_queue import QueueWatch
from .spec import SweepSpec

#: ``--slurm`` / spec ``slurm`` keys -> submitit AutoExecutor parameters (generic ones reach every cluster).
SUBMITIT_PARAMETERS = {
    "partition": "slurm_partition", "time_min": "timeout_min", "gpus": "gpus_per_node", "cpus": "cpus_per_task",
    "mem_gb": "mem_gb", "account": "slurm_account", "qos": "slurm_qos", "constraint": "slurm_constraint",
    "array_parallelism": "slurm_array_parallelism", "setup": "slurm_setup",
}  # fmt: skip


@dataclass(frozen=True)
class CellOutcome:
    """What the parent learns about a cell that ran elsewhere: its status, time and log file."""

    cell: Cell
    status: str  # "ok", "failed: reason" or "skipped" (another sweep on the same store finished it first)
    wall_time_s: float = 0.0
    log: str = ""


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr, at the file-descriptor level, into ``path``.

    File descriptors rather than ``sys.stdout``, so that C++ warnings of torch and mmcv and the
    mmengine console handler land in the cell's log too.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, saved_fd in zip((1, 2), saved):
                os.dup2(saved_fd, fd)
                os.close(saved_fd)


def run_logged(runner: CellRunner, cell: Cell, capture_output: bool,
               progress: Callable[[int, int], None] | None = None) -> CellOutcome:  # fmt: skip
    """Run one cell, append its rows to the store and write its log; skip it if the store has it by now."""
    import torch

    cfg, chash = cell.config, cell.config_hash
    if not runner.force and runner.store.cell_status(chash, cell.cell_key) == "ok":
        return CellOutcome(cell, "skipped")
    log = runner.run.cell_log(cell.log_name(), chash)
    log.parent.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    header = [f"cell: {cell.label()}", f"config_hash: {chash}",
              f"started: {started} on {platform.node()} (pid {os.getpid()}, {torch.get_num_threads()} torch threads)",
              f"config: {json.dumps(cfg, sort_keys=True, default=str)}", "", ""]  # fmt: skip
    if slurm_job_id():  # what `scancel`, `sacct` and the sweep's failed row call this cell's job
        header.insert(3, f"slurm job: {slurm_job_id()}")
    with open(log, "a") as fh:  # a cell that runs again (after a failure, --force) adds to its log
        fh.write("\n".join(header))
    start = time.perf_counter()

    def abandon(reason: str) -> None:  # the cell is stuck for good: record it before the watchdog ends the process
        runner.store.append(runner.failed_rows(cell, f"failed: {reason}", time.perf_counter() - start))

    rows = None
    try:
        with _output_to(log) if capture_output else nullcontext(), \
                CellWatchdog(log, floor_s=runner.sweep.stall_timeout_s, on_abandon=abandon):
            rows = runner.run_cell(cell, progress)
    except CellStalled as exc:  # raised between run_cell's end and the watchdog's: the cell did stall
        rows = rows or runner.failed_rows(cell, f"failed: {exc}", time.perf_counter() - start)
    _release_memory()
    if is_main_process():  # under DDP every rank ran the cell; rank 0 alone records it
        runner.store.append(rows)
    status, wall = rows[0]["status"], time.perf_counter() - start
    with open(log, "a") as fh:
        # mmengine writes its full log (losses, metrics) into the cell's work dir; keep a copy here.
        for mm_log in runner.run.mmengine_logs(chash)[-1:]:
            fh.write(f"--- mmengine log {mm_log}\n{mm_log.read_text(errors='replace')}\n")
        error = runner.run.error_log(chash)
        if status != "ok" and error.is_file():
            fh.write(f"--- traceback\n{error.read_text()}\n")
        fh.write(f"status: {status}\nwall time: {wall:.1f} s\n")
    return CellOutcome(cell, status, wall, str(log))


def slurm_job_id() -> str | None:
    """This process's Slurm job as submitit names it: ``ARRAY_TASK`` inside a job array, else the job id."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


_GC_FROZEN = False


def _release_memory() -> None:
    """Free the finished cell's model and hand freed heap back to the OS (glibc keeps it otherwise).

    A 120-cell sweep of ViT-S/B/L in one process was OOM-killed at 24 GB after 115 cells; the
    models themselves are not kept (checked with weak references), so return what the allocator holds.
    """
    import ctypes
    import gc

    global _GC_FROZEN
    gc.collect()
    if not _GC_FROZEN:
        # After the first cell every library is imported: move what survives (modules, registries, datasets; ~550k
        # objects) out of the collector's view, so each later collection walks only what a cell created. A full
        # walk took 0.25 s per cell, 20 s of the demo; frozen objects are still freed by reference counting.
        gc.freeze()
        _GC_FROZEN = True
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


_RUNNERS: dict[tuple, CellRunner] = {}


def run_cell_job(sweep: SweepSpec, run_dir: str, cell: Cell, force: bool, parent_pid: int,
                 threads: int | None = None) -> CellOutcome:  # fmt: skip
    """Entry point of a worker process or a submitit job; datasets are kept between the cells of one process."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    key = (str(run_dir), config_hash(asdict(sweep)), force)
    runner = _RUNNERS.setdefault(key, CellRunner(sweep, run_dir, force=force))
    # A job run in the parent itself (submitit's debug executor) must not take over the console.
    return run_logged(runner, cell, capture_output=os.getpid() != parent_pid)


def _init_worker(threads: int, parent_pid: int) -> None:
    """Pool worker start: die with the parent (a SIGKILLed sweep leaves no orphans writing rows), set threads."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died while this worker was still importing
        os._exit(1)
    import torch

    torch.set_num_threads(threads)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _failed_outcome(runner: CellRunner, cell: Cell, reason: str) -> CellOutcome:
    """A cell whose process died before writing rows still gets a ``failed`` row, never a silent gap."""
    status = f"failed: {reason}"
    runner.store.append(runner.failed_rows(cell, status))
    return CellOutcome(cell, status)


def run_pool(runner: CellRunner, cells: list[Cell], jobs: int, display: SweepProgress) -> None:
    """N spawned worker processes, at most N cells in flight; each worker gets cores // N torch threads."""
    threads = max(1, usable_cores() // jobs)
    # Set before the workers import torch: OpenMP reads them once. PASSIVE: idle OpenMP threads sleep
    # instead of spinning, which otherwise slows two torch processes sharing cores about tenfold.
    env = dict(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE")
    queue = list(reversed(cells))
    with _environ(**env):
        while queue:  # one pool, or a fresh one after a worker died and broke the previous pool
            pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_init_worker,
                                       initargs=(threads, os.getpid()))  # fmt: skip
            try:
                _drain(pool, runner, queue, jobs, display)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown(wait=True)


def _drain(pool: ProcessPoolExecutor, runner: CellRunner, queue: list[Cell], jobs: int,
           display: SweepProgress) -> None:  # fmt: skip
    """Keep ``jobs`` cells in flight until the queue is empty or the pool breaks (a worker was killed)."""
    running: dict[Future, Cell] = {}
    while queue or running:
        preemption.check()  # SIGTERM: stop handing out cells; run_pool shuts the pool down
        while queue and len(running) < jobs:
            cell = queue.pop()
            future = pool.submit(run_cell_job, runner.sweep, str(runner.run_dir), cell, runner.force, os.getpid())
            running[future] = cell
            display.started(cell)
        done, _ = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
        for future in done:
            cell = running.pop(future)
            try:
                display.finished(future.result())
            except BrokenProcessPool:
                # Which worker died is unknown: this cell gets the failed row, the others run again.
                display.finished(_failed_outcome(runner, cell, "worker process died (out of memory or killed)"))
                for other in running.values():
                    display.forget(other)
                    queue.append(other)
                return


def submitit_parameters(slurm: dict, jobs: int | None, name: str) -> dict:
    """AutoExecutor parameters from the spec's ``slurm`` dict merged with ``--slurm`` and ``--jobs``."""
    params = {SUBMITIT_PARAMETERS[k]: v for k, v in slurm.items() if k in SUBMITIT_PARAMETERS}
    if jobs and jobs > 1:
        params.setdefault("slurm_array_parallelism", jobs)
    if isinstance(params.get("slurm_setup"), str):
        params["slurm_setup"] = [params["slurm_setup"]]
    return {"name": f"rsbench-{name}", "nodes": 1, "tasks_per_node": 1, **params}


def run_submitit(runner: CellRunner, cells: list[Cell], slurm: dict, jobs: int | None,
                 display: SweepProgress, poll_s: float = 2.0) -> None:  # fmt: skip
    """One submitit job per cell, submitted as one job array; waits for them and shows their progress.

    ``slurm["cluster"]`` is submitit's executor: unset detects Slurm, ``local`` runs the jobs as local
    processes and ``debug`` in this process (both for trying a spec; the code path is the same).
    """
    import submitit

    class CellJob(submitit.helpers.Checkpointable):
        """One cell as a submitit job that Slurm may pre-empt: submitit's ``checkpoint`` resubmits the same cell
        (a cell that did not finish wrote no row, and runs again from its seeds with the same result)."""

        def __call__(self, *args):
            return run_cell_job(*args)

    executor = submitit.AutoExecutor(folder=runner.run.submitit, cluster=slurm.get("cluster"))
    executor.update_parameters(**submitit_parameters(slurm, jobs, runner.sweep.name))
    args = (runner.sweep, str(runner.run_dir))
    submitted = []
    with executor.batch():
        for cell in cells:
            submitted.append((executor.submit(CellJob(), *args, cell, runner.force, os.getpid(), slurm.get("cpus")),
                              cell))  # fmt: skip
    array_id = submitted[0][0].job_id.split("_")[0]
    display.note(f"submitted {len(submitted)} job(s) to {executor.cluster}: {array_id}")
    try:
        _wait_for_jobs(runner, submitted, display, poll_s)
    except KeyboardInterrupt:
        display.note(f"submitted jobs keep running and writing rows; to stop them: scancel {array_id}")
        raise


def _wait_for_jobs(runner: CellRunner, submitted: list, display: SweepProgress, poll_s: float,
                   queue: QueueWatch | None = None) -> None:  # fmt: skip
    running: set[Cell] = set()
    queue = queue or QueueWatch()
    while submitted:
        lost = queue.lost([job for job, _ in submitted if job.state == "UNKNOWN"])  # sacct failed (no accounting)
        for job, cell in list(submitted):
            if job.done():
                submitted.remove((job, cell))
                try:
                    display.finished(job.result())
                except Exception as exc:  # the job died (time limit, node failure, preemption)
                    display.finished(_failed_outcome(runner, cell, _job_failure(job, exc)))
            elif job.job_id in lost:
                submitted.remove((job, cell))
                reason = f"job {job.job_id} left Slurm's queue without a result (no state from sacct); its logs: "
                display.finished(_failed_outcome(runner, cell, f"{reason}{job.paths.folder}"))
            elif cell not in running and job.state == "RUNNING":
                running.add(cell)
                display.started(cell)
        if submitted:
            time.sleep(poll_s)


def _job_failure(job, exc: Exception) -> str:
    """One line for a job that ended without an outcome: its Slurm state and its log (the first line of submitit's
    own message only names the result file that is missing)."""
    from submitit.core.utils import UncompletedJobError

    if isinstance(exc, UncompletedJobError):
        return f"job {job.job_id} {job.state} without a result; its logs: {job.paths.folder}"
    return f"job {job.job_id} {job.state}: {exc}".splitlines()[0][:200]
