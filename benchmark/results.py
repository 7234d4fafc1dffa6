"""The result store: long-format rows (one per cell and metric) in parquet + CSV, written atomically."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

#: Columns every row has, in this order; extra keys are kept after them.
COLUMNS = [
    "method", "backbone", "checkpoint_hash", "task", "dataset", "modalities", "fraction", "n_train",
    "split_seed", "train_seed", "metric", "value", "status", "config_hash", "code_version", "device",
    "wall_time_s", "created",
]  # fmt: skip


class ResultStore:
    """``results.parquet`` (+ ``results.csv``) under a run directory.

    Appends take an exclusive file lock (``flock``: several processes of one machine, or Slurm
    jobs on a file system with working locks such as NFSv4 or Lustre) and replace the files by
    rename, so a writer killed at any point leaves the previous or the new table, never half of
    one, and concurrent writers do not lose rows. The parquet file is the reference; the CSV is
    rewritten from the same frame on every append.
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.parquet = self.run_dir / "results.parquet"
        self.csv = self.run_dir / "results.csv"

    @contextmanager
    def _locked(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / ".results.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def load(self) -> pd.DataFrame:
        """All rows so far (an empty frame with the standard columns when there are none)."""
        if not self.parquet.exists():
            return pd.DataFrame(columns=COLUMNS)
        try:
            return pd.read_parquet(self.parquet)
        except Exception as exc:  # pyarrow raises several types for a truncated or foreign file
            hint = f"; {self.csv.name} next to it may still be readable" if self.csv.exists() else ""
            raise ValueError(f"results store {self.parquet} is corrupt ({exc.__class__.__name__}: "
                             f"{str(exc).splitlines()[0][:120]}); move it away to start a new store{hint}") from exc

    def append(self, rows: Iterable[dict]) -> None:
        """Add the rows of one or more cells; they replace every earlier row of the same config_hash (or of the
        same cell computed by other code: the same ``cell_key``).

        A cell's rows are written together, so replacing by cell (not by cell and metric) keeps a
        forced re-run that fails from leaving the old run's other metrics marked ``ok``.
        """
        new = pd.DataFrame(list(rows))
        if new.empty:
            return
        missing = [c for c in ("config_hash", "metric", "value", "status") if c not in new]
        if missing:
            raise ValueError(f"result rows lack required columns {missing}")
        with self._locked():
            old = self.load()
            if not old.empty:
                replaced = old["config_hash"].isin(new["config_hash"])
                if "cell_key" in old and "cell_key" in new:  # the same cell computed by other (older) code
                    replaced |= old["cell_key"].isin(new["cell_key"].dropna())
                old = old[~replaced]
            frame = pd.concat([old, new], ignore_index=True) if not old.empty else new
            ordered = [c for c in COLUMNS if c in frame] + [c for c in frame if c not in COLUMNS]
            self._write(frame[ordered])

    def _write(self, frame: pd.DataFrame) -> None:
        """Both files to temporaries (synced to disk), then one rename each; call with the lock held."""
        for stale in self.run_dir.glob("results.*.tmp"):  # left by a writer killed before its rename
            stale.unlink(missing_ok=True)
        targets = ((self.parquet, frame.to_parquet), (self.csv, frame.to_csv))
        try:
            for path, write in targets:
                tmp = path.with_suffix(path.suffix + ".tmp")
                write(tmp, index=False)
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
        except BaseException:  # a full disk (ENOSPC), a kill: the old files stay as they were, no temporary left
            for path, _ in targets:
                path.with_suffix(path.suffix + ".tmp").unlink(missing_ok=True)
            raise
        for path, _ in targets:
            os.replace(path.with_suffix(path.suffix + ".tmp"), path)

    def sync_csv(self) -> bool:
        """Rewrite the CSV from the parquet file if a writer was killed between the two renames."""
        with self._locked():
            if not self.parquet.exists():
                return False
            frame = self.load()
            if self.csv.exists() and self.csv.stat().st_mtime_ns >= self.parquet.stat().st_mtime_ns:
                return False
            self._write(frame)
            return True

    def done_cell_keys(self) -> set[str]:
        """Cell keys (config without the code version) that have an ``ok`` row, from any code."""
        frame = self.load()
        if frame.empty or "cell_key" not in frame:
            return set()
        return set(frame.loc[frame["status"] == "ok", "cell_key"].dropna())

    def done_config_hashes(self) -> set[str]:
        """Config hashes that already have an ``ok`` row (cells a re-run can skip)."""
        frame = self.load()
        return set(frame.loc[frame["status"] == "ok", "config_hash"]) if not frame.empty else set()
