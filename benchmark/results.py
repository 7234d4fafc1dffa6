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

    Appends take an exclusive file lock and replace the files atomically, so a killed
    writer never leaves a half-written table and several writers do not lose rows.
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.parquet = self.run_dir / "results.parquet"
        self.csv = self.run_dir / "results.csv"

    @contextmanager
    def _locked(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / ".results.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def load(self) -> pd.DataFrame:
        """All rows so far (an empty frame with the standard columns when there are none)."""
        if not self.parquet.exists():
            return pd.DataFrame(columns=COLUMNS)
        return pd.read_parquet(self.parquet)

    def append(self, rows: Iterable[dict]) -> None:
        """Add rows; replaces rows of the same config_hash and metric (a forced re-run)."""
        new = pd.DataFrame(list(rows))
        if new.empty:
            return
        missing = [c for c in ("config_hash", "metric", "value", "status") if c not in new]
        if missing:
            raise ValueError(f"result rows lack required columns {missing}")
        with self._locked():
            old = self.load()
            if not old.empty:
                keep = ~old.set_index(["config_hash", "metric"]).index.isin(
                    new.set_index(["config_hash", "metric"]).index
                )
                old = old[keep]
            frame = pd.concat([old, new], ignore_index=True) if not old.empty else new
            ordered = [c for c in COLUMNS if c in frame] + [c for c in frame if c not in COLUMNS]
            frame = frame[ordered]
            for path, write in ((self.parquet, frame.to_parquet), (self.csv, frame.to_csv)):
                tmp = path.with_suffix(path.suffix + ".tmp")
                write(tmp, index=False)
                os.replace(tmp, path)

    def done_config_hashes(self) -> set[str]:
        """Config hashes that already have an ``ok`` row (cells a re-run can skip)."""
        frame = self.load()
        return set(frame.loc[frame["status"] == "ok", "config_hash"]) if not frame.empty else set()
