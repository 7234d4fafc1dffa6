"""``rsbench sweep --executor slurm`` on a real one-node Slurm cluster (tests/slurm_localhost.py): a job cancelled
with ``scancel`` in the middle of its cell becomes a failed row, a job pre-empted in the middle of its cell is
requeued and runs its cell again, the same command run again computes the failed cell alone, and the table ends
whole (``rsbench results verify``).

Needs Debian's slurm-wlm, slurmdbd, munge and mariadb-server, and root (slurmd starts jobs as their user). Without
them the test is skipped, unless ``RSBENCH_REQUIRE_SLURM`` is set (``.ci/run`` sets it): then it fails.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from slurm_localhost import INSTALL_HINT, LocalSlurm, missing_binaries

from benchmark.cli import main
from benchmark.running.cell_runner import CellRunner
from benchmark.running.cells import expand_cells
from benchmark.running.executors import _wait_for_jobs
from benchmark.running.slurm_queue import QueueWatch
from benchmark.running.spec import SweepSpec
from benchmark.running.store import ResultStore

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
FRACTIONS, SEEDS = (1.0,), (0, 1, 2)
#: Seconds each training sample takes to read: a cell lasts at least 16 iterations x 4 samples x PACE_S = 5 s on any
#: machine, so the cancelled cell is still running when Slurm's KillWait (2 s here) ends in SIGKILL (submitit's job
#: ignores the SIGTERM before it). Sleeping costs no core.
PACE_S = 0.08

PLUGIN = '''
import time

from rsdatasets import register_dataset
from rsdatasets.synthetic import SyntheticBenchmark


@register_dataset("synthetic_paced")
class PacedSynthetic(SyntheticBenchmark):
    """The synthetic benchmark whose training samples take ``pace_s`` seconds each to read."""

    def __init__(self, *args, pace_s=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.pace_s = pace_s if self.split == "train" else 0.0

    def __getitem__(self, i):
        time.sleep(self.pace_s)
        return super().__getitem__(i)
'''

SPEC = """name = "slurm_test"
dataset = dict(name="synthetic_paced", root={root!r}, seed=0, size=32, n=16, pace_s={pace})
tasks = ["segmentation"]
backbones = [dict(name="random_init_vit_t16", checkpoint=None, kwargs=dict(img_size=32, patch_size=8, depth=1))]
fractions = {fractions!r}
train_seeds = {seeds!r}
budgets = dict(segmentation=dict(max_iters=16, batch_size=4, warmup_iters=0, eval_batch_size=16, val_checks=0))
task_kwargs = dict(segmentation=dict(head_channels=16))
slurm = dict(time_min=5, cpus=1)
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = missing_binaries()
    problem = f"not installed: {', '.join(missing)}; {INSTALL_HINT}" if missing else None
    if not problem and os.geteuid() != 0:
        problem = "needs root: slurmd starts every job as the user who submitted it"
    if problem:
        if os.environ.get("RSBENCH_REQUIRE_SLURM"):
            pytest.fail(f"RSBENCH_REQUIRE_SLURM is set but the Slurm test cannot run: {problem}")
        pytest.skip(f"real Slurm cluster: {problem}")
    # stopped even if a test fails; a requeued job may start again after 10 s (not Slurm's 120)
    with LocalSlurm(tmp_path_factory.mktemp("slurm"), cpus=max(2, os.cpu_count() or 1), kill_wait_s=2,
                    requeue_delay_s=10) as running:  # fmt: skip
        yield running


def _sweep(cluster, spec, run_dir, out: Path) -> subprocess.Popen:
    env = {**cluster.env, "OMP_NUM_THREADS": "1", "RSBENCH_PLUGINS": "paced_synthetic",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(spec.parent), str(REPO), os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable, "-m", "benchmark.cli", "sweep", str(spec), "--run-dir", str(run_dir), "--executor", "slurm"]
    with open(out, "w") as fh:  # a file, not a pipe: a full pipe would block the sweep
        return subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=spec.parent)


def _finish(proc: subprocess.Popen, out: Path, cluster, timeout: float = 150) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    text = out.read_text()
    assert proc.returncode == 0, f"sweep exited with {proc.returncode}:\n{text[-3000:]}\n{cluster.tail('slurmctld')}"
    return text


def _running_cells(run_dir: Path) -> dict[str, Path]:
    """Slurm job id -> log of the cells that have started and not finished: a header, no status line yet."""
    running = {}
    for log in (run_dir / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        job = re.search(r"^slurm job: (\S+)$", text, re.M)
        if job and "\nstatus: " not in text:
            running[job.group(1)] = log
    return running


def _verify(run_dir: Path, capsys) -> tuple[int, str]:
    """``rsbench results verify RUN_DIR`` (in this process: a fresh one would spend seconds on imports)."""
    capsys.readouterr()
    code = main(["results", "verify", str(run_dir)])
    return code, capsys.readouterr().out


def test_a_cancelled_job_fails_its_cell_a_preempted_one_is_requeued_and_a_rerun_completes_the_table(
    cluster, tmp_path, capsys
):
    (tmp_path / "paced_synthetic.py").write_text(PLUGIN)
    spec = tmp_path / "spec.py"
    spec.write_text(SPEC.format(root=str(tmp_path / "data"), pace=PACE_S, fractions=list(FRACTIONS),
                                seeds=list(SEEDS)))  # fmt: skip
    run_dir, n_cells = tmp_path / "run", len(FRACTIONS) * len(SEEDS)

    first = _sweep(cluster, spec, run_dir, tmp_path / "first.out")
    deadline, running = time.monotonic() + 120, {}
    while len(running) < 2:  # the node has 2 CPUs or more and every job takes 1: two cells run at once
        ended = first.poll() is not None and (tmp_path / "first.out").read_text()
        assert not ended, f"the sweep ended before two cells were seen running:\n{ended}"
        assert time.monotonic() < deadline, f"two cells did not run within 120 s:\n{cluster.tail('slurmctld')}"
        running = _running_cells(run_dir)
        time.sleep(0.1)
    (cancelled, cancelled_log), (preempted, preempted_log) = sorted(running.items())[:2]
    cluster.run("scancel", cancelled)
    # USR2 is what Slurm sends a submitit job before its time limit (sbatch --signal=USR2@90): submitit's handler
    # checkpoints the job, requeues it (scontrol requeue) and the cell runs again from the start. Sent to the cell's
    # process (same host) rather than with `scancel --signal=USR2`, which in Slurm 22.05 answers "Job can not be
    # altered now" for a running task of an array and repeats the signal every 5 s until the job ends.
    os.kill(int(re.search(r"\(pid (\d+),", preempted_log.read_text())[1]), signal.SIGUSR2)
    out = _finish(first, tmp_path / "first.out", cluster)
    assert f"submitted {n_cells} job(s) to slurm" in out

    state = cluster.run("sacct", "-n", "-X", "-P", "-o", "State", "-j", cancelled).stdout.split()
    assert state and state[0].startswith("CANCELLED"), f"sacct says {state} for the cancelled job {cancelled}"
    assert preempted_log.read_text().count("\nstatus: ok") == 1 and preempted_log.read_text().count("started: ") == 2
    frame = ResultStore(run_dir).load()
    assert frame["config_hash"].nunique() == n_cells, frame[["config_hash", "status"]]
    failed = frame[frame["status"] != "ok"]
    assert failed["config_hash"].nunique() == 1 and len(failed) == 1, failed[["config_hash", "metric", "status"]]
    status = failed["status"].item()
    assert status.startswith(f"failed: job {cancelled} CANCELLED") and "without a result" in status, status
    assert list(Path(status.split("its logs: ")[1]).glob("*_log.err")), status  # the job's stdout and stderr
    assert cancelled_log.name.endswith(f"_{failed['config_hash'].item()}.log")  # the row is the cancelled cell's
    assert "\nstatus: " not in cancelled_log.read_text()  # killed before it could write its end
    code, report = _verify(run_dir, capsys)
    assert code == 1 and re.search(r"missing\s+1 problem", report), report

    second = _sweep(cluster, spec, run_dir, tmp_path / "second.out")
    out = _finish(second, tmp_path / "second.out", cluster)
    assert f"{n_cells} cells, {n_cells - 1} already done" in out and "submitted 1 job(s) to slurm" in out, out

    frame = ResultStore(run_dir).load()
    assert (frame["status"] == "ok").all(), frame[["config_hash", "metric", "status"]]
    assert not frame.duplicated(["config_hash", "metric"]).any()
    assert frame["config_hash"].nunique() == n_cells
    assert sorted(set(zip(frame["fraction"], frame["train_seed"]))) == [(f, s) for f in FRACTIONS for s in SEEDS]
    metrics = frame.groupby("config_hash")["metric"].apply(frozenset)
    assert metrics.nunique() == 1, metrics  # every cell has the same, complete set of metrics
    code, report = _verify(run_dir, capsys)
    assert code == 0, report
    # submitit calls a job done once its result file exists; the job's process then exits and Slurm's record of it
    # ends a few seconds later (the CI run that failed saw the last job still "R" at 0:14). Wait for that, bounded.
    deadline, queued = time.monotonic() + 60, "?"
    while time.monotonic() < deadline and (queued := cluster.run("squeue", "-h").stdout.strip()):
        time.sleep(1)
    assert not queued, f"still in Slurm's queue 60 s after the sweep ended: {queued}"  # nothing left running or queued


class _Outcomes:
    """The sweep display, reduced to what it is told."""

    def __init__(self) -> None:
        self.finished_with = []

    def started(self, cell) -> None:
        pass

    def finished(self, outcome) -> None:
        self.finished_with.append(outcome)


def test_without_sacct_a_job_that_ends_without_a_result_fails_its_cell_instead_of_a_wait_for_ever(
    cluster, tmp_path, monkeypatch
):
    import submitit

    # sacct as it answers on a cluster without accounting: submitit then calls every job's state UNKNOWN.
    sacct = tmp_path / "bin" / "sacct"
    sacct.parent.mkdir()
    sacct.write_text("#!/bin/sh\necho 'Slurm accounting storage is disabled' >&2\nexit 1\n")
    sacct.chmod(0o755)
    monkeypatch.setenv("PATH", f"{sacct.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_CONF", cluster.env["SLURM_CONF"])
    spec = SweepSpec(name="no_sacct", tasks=["segmentation"], fractions=[1.0], train_seeds=[0, 1],
                     backbones=[dict(name="random_init_vit_t16", checkpoint=None, kwargs=dict(img_size=32))],
                     dataset=dict(name="synthetic", root=str(tmp_path / "data"), size=32, n=16))  # fmt: skip
    runner, cells = CellRunner(spec, tmp_path / "run"), expand_cells(spec)
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit" / "%j", cluster="slurm")
    executor.update_parameters(timeout_min=5, cpus_per_task=1, slurm_array_parallelism=1)
    with executor.batch():  # jobs that only return a string: they start in a second, no harness to import
        jobs = [executor.submit(str, cell.label()) for cell in cells]
    cluster.run("scancel", jobs[1].job_id)  # pending behind the first (one at a time): it will never write a result
    display = _Outcomes()
    waiting = threading.Thread(target=_wait_for_jobs, daemon=True,
                               args=(runner, list(zip(jobs, cells)), display, 0.2, QueueWatch(grace_s=1, every_s=0.5)))
    waiting.start()
    waiting.join(timeout=90)
    assert not waiting.is_alive(), "the sweep still waits for a job that Slurm no longer lists"
    assert cells[0].label() in display.finished_with  # the first job's own result
    failed = next(o for o in display.finished_with if o != cells[0].label())
    assert failed.cell == cells[1] and failed.status.startswith(
        f"failed: job {jobs[1].job_id} left Slurm's queue without a result"), failed.status  # fmt: skip
    assert list(ResultStore(tmp_path / "run").load()["status"]) == [failed.status]
