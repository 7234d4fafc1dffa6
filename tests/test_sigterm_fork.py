"""A process forked while rsbench's SIGTERM handler is installed still dies on SIGTERM.

``multiprocessing.Pool`` ends its forked workers with SIGTERM; a worker that kept the parent's graceful handler
ignored that and the parent hung in ``join`` for ever (seen with mmdet's ``eval_map`` in a one-cell detection
sweep under ``rsbench sweep``, before the detection metric stopped forking)."""

import multiprocessing
import signal
import time

from benchmark.running.preemption import handle_sigterm, stop_requested


def _sleep(ready) -> None:
    ready.set()  # running its target: a SIGTERM now is not lost in fork()'s own signal reset
    time.sleep(60)


def test_a_forked_child_dies_on_sigterm_while_the_parent_stops_gracefully():
    ctx = multiprocessing.get_context("fork")
    with handle_sigterm():
        ready = ctx.Event()
        child = ctx.Process(target=_sleep, args=(ready,))
        child.start()
        assert ready.wait(timeout=20)
        child.terminate()  # SIGTERM
        child.join(timeout=20)
        alive = child.is_alive()
        if alive:
            child.kill()
            child.join()
        assert not alive and child.exitcode == -signal.SIGTERM
        assert not stop_requested()  # the child's SIGTERM was the child's, not the run's
