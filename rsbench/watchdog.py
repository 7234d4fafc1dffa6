"""A stuck cell becomes a failed row, never a frozen sweep.

Training loops call :func:`beat` as they make progress (every iteration of every loop, every batch of a
feature pass). While a :class:`CellWatchdog` is active, a daemon thread watches those beats; when none
has come for longer than the limit it

1. writes every thread's stack into the cell's log (``faulthandler``: it works even when the stuck
   thread holds the GIL-free lock a forked child never releases),
2. raises :class:`CellStalled` in the main thread through a signal (Python lock waits, sleeps and
   joins are interruptible by signals on POSIX, so a cell stuck in ``Pool.join`` or a queue wait
   unwinds into the usual ``failed: reason`` row and the sweep goes on),
3. and if the main thread has not left the cell ``grace_s`` later (stuck inside C code that never
   returns to the interpreter), calls ``on_abandon(reason)`` (which writes the failed row) and ends
   the process with :data:`EXIT_STALLED`: a worker's parent then runs the next cells, and a rerun of
   the same command resumes an inline sweep.

The limit is generous and adapts to the cell: ``max(floor_s, factor x the longest gap between beats so
far)``, so a cell whose evaluation takes minutes per batch is not cut while one that stops entirely
is caught within ``floor_s``. Written here because neither mmengine nor the standard library has a
progress watchdog; it imports only the standard library so that every layer may call :func:`beat`.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

#: Exit status of a process whose cell stalled beyond recovery (EX_SOFTWARE).
EXIT_STALLED = 70
#: The signal that carries the stall into the main thread (SIGTERM is pre-emption's, SIGUSR2 submitit's).
STALL_SIGNAL = signal.SIGUSR1

_ACTIVE: CellWatchdog | None = None


class CellStalled(RuntimeError):
    """Raised in the main thread when a cell made no progress for longer than its limit."""


def beat(where: str) -> None:
    """Progress: ``where`` says which loop (e.g. ``train loop, iteration 12``). A no-op without a watchdog."""
    watchdog = _ACTIVE
    if watchdog is not None:
        watchdog.beat(where)


class CellWatchdog:
    """Context manager around one cell; see the module docstring."""

    def __init__(self, log_path: str | os.PathLike | None, floor_s: float = 600.0, factor: float = 20.0,
                 grace_s: float = 60.0, on_abandon: Callable[[str], None] | None = None,
                 poll_s: float | None = None) -> None:  # fmt: skip
        if floor_s <= 0:
            raise ValueError(f"the watchdog's floor must be positive, got {floor_s} s")
        self.log_path = log_path
        self.floor_s, self.factor, self.grace_s = float(floor_s), float(factor), float(grace_s)
        self.on_abandon = on_abandon
        self.poll_s = poll_s if poll_s is not None else min(5.0, self.floor_s / 10)
        self.where = "cell set-up"
        self.stalled: str | None = None
        self._raised = False
        self._last = self._started = time.monotonic()
        self._longest_gap = 0.0
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous_handler = None
        self._main = threading.main_thread().ident

    def limit_s(self) -> float:
        return max(self.floor_s, self.factor * self._longest_gap)

    def beat(self, where: str) -> None:
        now = time.monotonic()
        self._longest_gap = max(self._longest_gap, now - self._last)
        self._last, self.where = now, where

    def __enter__(self) -> CellWatchdog:
        global _ACTIVE
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
            self._previous_handler = signal.signal(STALL_SIGNAL, self._on_signal)
        self._last = time.monotonic()
        _ACTIVE = self
        self._thread = threading.Thread(target=self._watch, name="rsbench-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        global _ACTIVE
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        _ACTIVE = None
        if self._previous_handler is not None:
            signal.signal(STALL_SIGNAL, self._previous_handler)

    def _on_signal(self, signum, frame) -> None:
        if self.stalled and not self._raised and not self._done.is_set():
            self._raised = True  # once: the cell's own clean-up must not be interrupted again
            raise CellStalled(self.stalled)

    def _watch(self) -> None:
        while not self._done.wait(self.poll_s):
            idle = time.monotonic() - self._last
            if idle <= self.limit_s():
                continue
            self.stalled = f"no progress for {idle:.0f} s in {self.where}"
            self._dump_stacks()
            try:
                signal.pthread_kill(self._main, STALL_SIGNAL)
            except (ProcessLookupError, OSError):
                pass
            if self._done.wait(self.grace_s):
                return  # the main thread unwound: the cell's own error handling writes the row
            self._abandon()
            return

    def _dump_stacks(self) -> None:
        if self.log_path is None:
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            return
        with open(self.log_path, "a") as log:
            log.write(f"\n--- watchdog: {self.stalled}; the stack of every thread:\n")
            log.flush()
            faulthandler.dump_traceback(file=log, all_threads=True)
            log.write("--- end of stacks\n")

    def _abandon(self) -> None:
        reason = f"{self.stalled}; the cell did not stop within {self.grace_s:.0f} s, so its process was ended"
        try:
            if self.on_abandon is not None:
                self.on_abandon(reason)
        finally:
            os.write(2, f"rsbench: {reason}; rerun the same command to continue\n".encode())
            os._exit(EXIT_STALLED)
