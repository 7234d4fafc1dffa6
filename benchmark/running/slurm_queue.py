"""Jobs that Slurm no longer lists: how a sweep learns that a job ended when ``sacct`` cannot tell it.

submitit reads job states from ``sacct`` alone. On a cluster without accounting (``AccountingStorageType=none``),
or while slurmdbd is down, ``sacct`` fails; submitit then logs "Bypassing sacct error" and calls every job's state
UNKNOWN, which it counts as not done. A job that ends without writing its result (``scancel``, killed for memory,
a failed node) would keep the sweep waiting for ever. ``squeue`` asks slurmctld, which lists every job that is
pending, running or completing: a job missing from it for ``grace_s`` (time for a result file written at the end
of the job to show on a shared file system) and still without a result has ended without one.
"""

from __future__ import annotations

import subprocess
import time


class QueueWatch:
    """Which jobs of state UNKNOWN have left Slurm's queue without a result (``squeue`` every ``every_s``)."""

    def __init__(self, grace_s: float = 60.0, every_s: float = 10.0) -> None:
        self.grace_s, self.every_s = grace_s, every_s
        self._checked = float("-inf")
        self._missing_since: dict[str, float] = {}

    def lost(self, jobs: list) -> set[str]:
        """Ids of ``jobs`` (submitit jobs whose state is UNKNOWN) that squeue has not listed for ``grace_s``."""
        now = time.monotonic()
        if jobs and now - self._checked >= self.every_s:
            self._checked = now
            listed = queued_ids({job.job_id.split("_")[0] for job in jobs})
            for job in jobs if listed is not None else ():  # squeue failed: nothing can be said, wait
                if job.job_id in listed:
                    self._missing_since.pop(job.job_id, None)
                else:
                    self._missing_since.setdefault(job.job_id, now)
        since = self._missing_since
        return {job.job_id for job in jobs if job.job_id in since and now - since[job.job_id] >= self.grace_s}


def queued_ids(job_ids: set[str]) -> set[str] | None:
    """The jobs and array tasks (``12``, ``12_3``) of ``job_ids`` that Slurm lists as pending, running or completing;
    None when squeue fails (the controller cannot be reached)."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(sorted(job_ids))],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        # Jobs that ended long enough ago are purged: squeue then rejects their ids rather than listing nothing.
        return set() if "Invalid job id" in out.stderr else None
    return set(out.stdout.split())
