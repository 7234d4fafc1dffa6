"""Acceptance tests of the result store under abuse: SIGKILLed sweeps that resume, and concurrent writers."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from benchmark.running.store import ResultStore

SPEC = """name = "kill_test"
dataset = dict(name="synthetic", root={root!r}, seed=0, size=32, n=16)
tasks = ["segmentation"]
backbones = [dict(name="random_init_vit_t16", checkpoint=None, kwargs=dict(img_size=32, patch_size=8, depth=1))]
fractions = [0.25, 0.5, 1.0]
train_seeds = [0, 1, 2, 3]
budgets = dict(segmentation=dict(max_iters=2, batch_size=4, warmup_iters=0, eval_batch_size=16))
task_kwargs = dict(segmentation=dict(head_channels=16))
"""
N_CELLS = 12


def _sweep(spec, run_dir, *extra) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count in every run: identical numbers
    argv = [sys.executable, "-m", "benchmark.cli", "sweep", str(spec), "--run-dir", str(run_dir), *extra]
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _done(run_dir) -> int:
    try:
        return len(ResultStore(run_dir).done_config_hashes())
    except Exception:  # never expected (renames are atomic), but a read error must not hide the real assertion
        return -1


def _session_ends(sid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while subprocess.run(["pgrep", "-s", str(sid)], capture_output=True).returncode == 0:
        if time.monotonic() > deadline:
            subprocess.run(["pkill", "-KILL", "-s", str(sid)])  # the test's own session: leave nothing running
            return False
        time.sleep(0.2)
    return True


def _check_store(run_dir, finished: bool = True) -> pd.DataFrame:
    """No duplicated (cell, metric) row and no half-written part; after a finished run the consolidated parquet and
    CSV hold every row (a killed run leaves parts, which the next run folds in) and no temporary file is left."""
    store = ResultStore(run_dir)
    frame = store.load()
    assert not frame.duplicated(["config_hash", "metric"]).any()
    if not finished:
        return frame
    assert not list(run_dir.glob("results.parts/*/*.parquet")), "a finished sweep leaves its rows consolidated"
    csv = pd.read_csv(run_dir / "results.csv", dtype={"config_hash": str})
    assert len(csv) == len(frame) and csv["value"].tolist() == frame["value"].tolist()
    assert list(csv["config_hash"]) == list(frame["config_hash"])
    assert not list(run_dir.rglob("*.tmp"))
    return frame


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_table(tmp_path):
    spec = tmp_path / "spec.py"
    spec.write_text(SPEC.format(root=str(tmp_path / "data")))
    reference = _sweep(spec, tmp_path / "reference")
    assert reference.wait(timeout=180) == 0, reference.stderr.read().decode()[-2000:]

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    run_dir, kills = tmp_path / "killed", 0
    for attempt, jobs in enumerate(("1", "2", "1")):
        before = max(_done(run_dir), 0)
        proc = _sweep(spec, run_dir, "--jobs", jobs)
        deadline = time.monotonic() + 120
        # Wait for progress, then kill at a random moment of the next cells (training, store write, log).
        while proc.poll() is None and _done(run_dir) <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
        # Workers of a --jobs run die with their parent (at once, or when their start-up imports end):
        # nothing of that session keeps writing rows.
        assert _session_ends(proc.pid, timeout=60), f"orphans after killing the sweep (attempt {attempt}, seed {seed})"
        _check_store(run_dir, finished=False)
    assert kills >= 2, f"the sweep finished before it could be killed (seed {seed})"

    resumed = _sweep(spec, run_dir, "--resume")
    assert resumed.wait(timeout=180) == 0, resumed.stderr.read().decode()[-2000:]
    expected, got = _check_store(tmp_path / "reference"), _check_store(run_dir)
    assert got["config_hash"].nunique() == N_CELLS and (got["status"] == "ok").all(), f"seed {seed}"
    key = ["config_hash", "metric"]
    pd.testing.assert_series_equal(
        got.set_index(key)["value"].sort_index(), expected.set_index(key)["value"].sort_index(), rtol=1e-6
    )
    assert len(list((run_dir / "logs").glob("*.log"))) >= N_CELLS


WRITER = textwrap.dedent(
    """
    import sys
    from benchmark.running.store import ResultStore

    store, name = ResultStore(sys.argv[1]), sys.argv[2]
    for i in range(40):
        for chash in (f"{name}-{i}", f"shared-{i % 10}"):  # shared: both writers write these cells
            store.append([dict(config_hash=chash, metric=m, value=float(i), status="ok", task="segmentation",
                               backbone=name) for m in ("mIoU", "OA", "mF1")])
    """
)


CONSOLIDATOR = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from benchmark.running.store import ResultStore

    store = ResultStore(sys.argv[1])
    while not Path(sys.argv[2]).exists():  # fold parts in while the writers append, until they are done
        store.consolidate()
    """
)


@pytest.mark.slow
def test_two_writers_and_a_consolidation_at_once_leave_a_consistent_store(tmp_path):
    done = tmp_path / "writers-done"
    folding = subprocess.Popen([sys.executable, "-c", CONSOLIDATOR, str(tmp_path), str(done)], stderr=subprocess.PIPE)
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name], stderr=subprocess.PIPE)
        for name in ("a", "b")
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()[-2000:]
    done.touch()
    assert folding.wait(timeout=120) == 0, folding.stderr.read().decode()[-2000:]
    ResultStore(tmp_path).consolidate()  # what the end of a sweep does
    frame = _check_store(tmp_path)
    expected = {f"{w}-{i}" for w in "ab" for i in range(40)} | {f"shared-{i}" for i in range(10)}
    assert set(frame["config_hash"]) == expected
    assert len(frame) == 3 * len(expected)
    # A cell written twice is one writer's complete set of rows, not a mix.
    assert (frame.groupby("config_hash")["backbone"].nunique() == 1).all()
