"""Runs that never hang or leak: no fork inside a cell, a stuck cell becomes a failed row, flat resources per cell."""

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from benchmark.running.cell_runner import CellRunner
from benchmark.running.cells import expand_cells
from benchmark.running.executors import run_logged
from benchmark.running.spec import SweepSpec
from benchmark.running.store import ResultStore
from benchmark.running.sweep import run_sweep
from rsbench.watchdog import EXIT_STALLED
from tasks.detection import voc_map

REPO = Path(__file__).resolve().parents[1]
VIT = dict(img_size=32, patch_size=8, depth=1)
BUDGET = dict(max_iters=2, batch_size=4, warmup_iters=0, eval_batch_size=16, val_checks=0)


def _spec(tmp_path, tasks=("segmentation",), **overrides) -> SweepSpec:
    fields = dict(
        name="tiny", backbones=[dict(name="random_init_vit_t16", checkpoint=None, kwargs=VIT)], tasks=list(tasks),
        dataset=dict(name="synthetic", root=str(tmp_path / "data"), seed=0, size=32, n=16), fractions=[1.0],
        protocols=["frozen"], budgets={t: BUDGET for t in tasks},
        task_kwargs=dict(segmentation=dict(head_channels=16), detection=dict(neck_channels=16)),
    )  # fmt: skip
    fields["task_kwargs"] = {k: v for k, v in fields["task_kwargs"].items() if k in tasks}
    return SweepSpec(**{**fields, **overrides})


# ---- 1. no fork inside a cell ----


def _random_detections(rng, n_images, n_classes):
    dets, anns = [], []
    for _ in range(n_images):
        per_class = []
        for _ in range(n_classes):
            k = rng.integers(0, 6)
            xy = rng.uniform(0, 50, (k, 2))
            wh = rng.uniform(2, 14, (k, 2))
            per_class.append(np.hstack([xy, xy + wh, rng.uniform(0, 1, (k, 1))]).astype(np.float32))
        g = rng.integers(0, 5)
        xy = rng.uniform(0, 50, (g, 2))
        anns.append({"bboxes": np.hstack([xy, xy + rng.uniform(2, 14, (g, 2))]).astype(np.float32),
                     "labels": rng.integers(0, n_classes, g)})  # fmt: skip
        dets.append(per_class)
    return dets, anns


class _SerialPool:
    """mmdet's eval_map with its Pool replaced by an in-process map: the reference, without forking the test."""

    def __init__(self, *args, **kwargs):
        pass

    def starmap(self, fn, args):
        return [fn(*a) for a in args]

    def close(self):
        pass


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voc_map_equals_mmdet_eval_map(seed, monkeypatch):
    import mmdet.evaluation.functional.mean_ap as mean_ap

    monkeypatch.setattr(mean_ap, "Pool", _SerialPool)
    dets, anns = _random_detections(np.random.default_rng(seed), n_images=12, n_classes=3)
    dets[0][2] = np.zeros((0, 5), np.float32)
    reference, per_class = mean_ap.eval_map(dets, anns, iou_thr=0.5, logger="silent", nproc=4)
    ours, ours_per_class = voc_map(dets, anns, iou_thr=0.5)
    assert ours == pytest.approx(reference, abs=1e-12)
    assert [(pytest.approx(r["ap"], abs=1e-12), r["num_gts"]) for r in per_class] == ours_per_class


def test_voc_map_of_no_detections_is_zero():
    dets = [[np.zeros((0, 5), np.float32)] for _ in range(3)]
    anns = [{"bboxes": np.array([[0, 0, 4, 4]], np.float32), "labels": np.array([0])} for _ in range(3)]
    assert voc_map(dets, anns) == (0.0, [(0.0, 3)])


def test_no_cell_forks(tmp_path, monkeypatch):
    """Detection, segmentation and change-detection cells run with every way to fork a Python process refused."""

    def refuse(*args, **kwargs):
        raise AssertionError("a cell tried to fork")

    spec = _spec(tmp_path, tasks=("detection", "segmentation", "change_detection"))
    runner = CellRunner(spec, tmp_path / "run")
    runner.prepare(expand_cells(spec))  # data generation is not a cell
    monkeypatch.setattr(os, "fork", refuse)
    monkeypatch.setattr(os, "forkpty", refuse)
    monkeypatch.setattr(multiprocessing.Process, "start", refuse)
    for cell in expand_cells(spec):
        rows = runner.run_cell(cell)
        assert rows[0]["status"] == "ok", (cell.task, rows[0]["status"])


# ---- 2. a stuck cell becomes a failed row ----


@pytest.mark.slow
def test_a_stuck_cell_becomes_a_failed_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    from tasks import engine

    stuck = threading.Event()
    original = engine.FiniteLossHook.after_train_iter

    def hang_in_the_first_cell(self, runner, batch_idx, data_batch=None, outputs=None):
        if not stuck.is_set() and runner.iter == 0:
            stuck.set()
            threading.Event().wait()  # waits forever, as a worker on a lock held at fork time did
        return original(self, runner, batch_idx, data_batch, outputs)

    monkeypatch.setattr(engine.FiniteLossHook, "after_train_iter", hang_in_the_first_cell)
    spec = _spec(tmp_path, fractions=[0.5, 1.0], stall_timeout_s=2.0)
    run_sweep(spec, tmp_path / "run")
    frame = ResultStore(tmp_path / "run").load()
    status = frame.groupby("config_hash")["status"].first().tolist()
    failed = [s for s in status if s != "ok"]
    assert len(status) == 2 and len(failed) == 1, status
    assert failed[0].startswith("failed: no progress for ") and "in train loop, iteration 1" in failed[0]
    log = next(p for p in (tmp_path / "run" / "logs").glob("*.log") if "failed: no progress" in p.read_text())
    text = log.read_text()
    assert "the stack of every thread" in text and "in hang_in_the_first_cell" in text and "in _watch" in text


WATCHDOG_IN_C = """
import signal, sys, time
from rsbench.watchdog import CellWatchdog
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])  # as a thread stuck in C code: the signal never lands
with CellWatchdog(None, floor_s=1.0, grace_s=1.0, poll_s=0.2,
                  on_abandon=lambda reason: open(sys.argv[1], "w").write(reason)):
    time.sleep(60)
"""


def test_a_cell_stuck_in_c_code_is_recorded_and_its_process_ends(tmp_path):
    marker = tmp_path / "row"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(WATCHDOG_IN_C), str(marker)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert proc.returncode == EXIT_STALLED, proc.stderr
    assert marker.read_text().startswith("no progress for ") and "cell set-up" in marker.read_text()
    assert "rerun the same command to continue" in proc.stderr and "Traceback" not in proc.stderr


# ---- 3. flat resources per cell ----


def _resources() -> tuple[int, int]:
    return len(os.listdir("/proc/self/fd")), threading.active_count()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files through /proc")
def test_open_files_and_threads_stay_flat_over_30_cells(tmp_path):
    spec = _spec(tmp_path, train_seeds=list(range(30)), budgets=dict(segmentation=dict(BUDGET, max_iters=1)))
    runner = CellRunner(spec, tmp_path / "run")
    cells = expand_cells(spec)
    runner.prepare(cells)
    seen = []
    for cell in cells:
        assert run_logged(runner, cell, capture_output=True).status == "ok"
        seen.append(_resources())
    assert seen[-1] == seen[0], f"open files / threads after cell 1: {seen[0]}, after cell 30: {seen[-1]}"
