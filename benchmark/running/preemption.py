"""Pre-emption: SIGTERM (what Slurm sends before it stops or requeues a job) ends a run cleanly, so the next run
resumes where it stopped and reaches the same numbers.

* Pretraining (``rsbench pretrain``, a sweep's pretraining stage): every epoch checkpoint also stores the RNG
  states (torch, numpy, Python), and on SIGTERM the run stops after the current iteration with exit code
  ``EXIT_PREEMPTED``. ``--resume`` (always on in a sweep's pretraining stage) goes on from the last epoch
  checkpoint with the RNG state it had, so the epoch that was cut short is replayed identically: masks,
  augmentations and the sampler's order (seeded per epoch) are the same, and so is the encoder it exports.
  The run loses at most one epoch of work.
* Fine-tuning cells: a cell cut short writes no row; the sweep stops with ``EXIT_PREEMPTED`` and the next
  ``rsbench sweep`` (or the requeued Slurm job) skips the finished cells and runs that cell again from the
  start with its seeds, so the same numbers (cells are minutes, not days).
* Checkpoints are written to a temporary file and renamed, and a ``last_checkpoint`` that is empty or
  names an unreadable file falls back to the newest readable epoch checkpoint: a second SIGTERM or a
  SIGKILL while a checkpoint is being written never leaves a corrupt latest checkpoint.

Written here because mmengine's runner has no pre-emption handling, and its epoch checkpoints carry no
RNG state.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from mmengine.hooks import Hook

from rsbench.registry import HOOKS
from tasks.runtime import Interrupted

#: Exit status of a run stopped by SIGTERM: EX_TEMPFAIL, "try again" (a requeue or `--resume` continues it).
EXIT_PREEMPTED = 75
_REQUESTED = {"stop": False, "pid": -1}


#: Raised at an iteration boundary after SIGTERM (the engine's own stop signal, so cells and runners share it).
Preempted = Interrupted


def _on_sigterm(signum, frame) -> None:
    if os.getpid() != _REQUESTED["pid"]:
        # A forked helper (mmdet's eval_map Pool worker) inherited this handler. Its parent ends it with SIGTERM and
        # joins it: ignoring the signal would hang the parent for ever, so the helper dies as SIGTERM asks.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    _REQUESTED["stop"] = True  # a second SIGTERM changes nothing: the run is already on its way out


@contextmanager
def handle_sigterm() -> Iterator[None]:
    """While inside, SIGTERM asks the run to stop at the next iteration boundary instead of killing it."""
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:  # nested: the outer one is in charge
        yield
        return
    _REQUESTED["pid"] = os.getpid()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_requested() -> bool:
    return _REQUESTED["stop"]


def check() -> None:
    """Raise ``Preempted`` if SIGTERM arrived (called between iterations)."""
    if _REQUESTED["stop"]:
        raise Preempted("stopped by SIGTERM")


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Stores the RNG states in every checkpoint (restored on resume) and stops the run after SIGTERM."""

    priority = "LOWEST"  # after the checkpoint hook: an epoch that just ended is saved before stopping

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["rng_states"] = rng_states()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if "rng_states" in checkpoint:
            restore_rng_states(checkpoint["rng_states"])

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if stop_requested():
            runner.logger.warning(f"SIGTERM: stopping after iteration {runner.iter + 1}; resume with --resume "
                                  "(the last epoch checkpoint holds the RNG state to replay from)")  # fmt: skip
            raise Preempted(f"stopped by SIGTERM after iteration {runner.iter + 1}")
