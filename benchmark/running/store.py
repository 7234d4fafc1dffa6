"""The result store: long-format rows (one per cell and metric), one immutable part file per cell, one table to read.

Layout of a run directory's store::

    results.parquet, results.csv       the consolidated table (what pandas, reports and users read)
    results.parts/<key>/<ns>-<pid>.parquet
                                       rows appended since the last consolidation, one file per cell;
                                       <key> is the cell's ``cell_key`` (its identity without the code
                                       version), or its ``config_hash`` for rows that have none

An append writes its part to a temporary file, syncs it and renames it into place: no lock, and its cost
does not depend on how many rows the store holds (the single-file store this replaces read and rewrote the
whole table on every append, 0.9 s per cell at 20k cells, under a global lock). A killed writer leaves
either no part or a whole one. :meth:`ResultStore.load` reads the consolidated table and applies the parts
on top, newest last, with the rule appends always had: a cell's rows replace every earlier row of the same
``config_hash`` or of the same ``cell_key`` (the same cell computed by other code), so a forced re-run that
fails leaves no stale ``ok`` row behind. :meth:`ResultStore.consolidate` (the end of a sweep, ``rsbench
report``, ``rsbench results verify --fix``) folds the parts into ``results.parquet`` / ``.csv`` under a file
lock and removes the parts it folded; parts written meanwhile stay and still apply. A store of the older
single-file kind is simply a consolidated table with no parts: it reads as it is.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .rundir import RunDir, atomic_write

#: Columns every row has, in this order; extra keys are kept after them.
COLUMNS = [
    "method", "backbone", "checkpoint_hash", "task", "dataset", "modalities", "fraction", "n_train",
    "split_seed", "train_seed", "metric", "value", "status", "config_hash", "code_version", "device",
    "wall_time_s", "created",
]  # fmt: skip
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())
#: Values of a row's ``corruption`` that mean a clean test pass (a missing column or NaN means clean too).
CLEAN = ("", "none", "clean")


def is_corrupted(frame: pd.DataFrame):
    """Per row (a boolean array): is it a corrupted test pass of a cell rather than the cell's clean test?

    A corrupted pass (``corruption`` and ``severity`` set, its own ``config_hash``) is the trained cell tested
    again; it is never a cell of its own, so anything that counts cells or clean scores leaves it out.
    """
    import numpy as np

    if "corruption" not in frame:
        return np.zeros(len(frame), dtype=bool)
    names = frame["corruption"]
    return (names.notna() & ~names.astype(str).str.strip().str.lower().isin(CLEAN)).to_numpy()


def _key_of(frame: pd.DataFrame) -> pd.Series:
    """The part key of each row: its cell key, or its config hash where it has none."""
    if "cell_key" not in frame:
        return frame["config_hash"].astype(str)
    return frame["cell_key"].where(frame["cell_key"].notna() & (frame["cell_key"] != ""), frame["config_hash"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ResultStore:
    """The store of one run directory; see the module docstring."""

    def __init__(self, run_dir: str | os.PathLike | RunDir) -> None:
        self.run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.run_dir = self.run.root
        self.parquet = self.run.results_parquet
        self.csv = self.run.results_csv
        self.parts_dir = self.run.results_parts
        self._base_cache: tuple[tuple, pd.DataFrame] | None = None

    # -- writing -------------------------------------------------------------------------------------------
    def append(self, rows: Iterable[dict]) -> None:
        """Add the rows of one or more cells: one part file per cell, each replacing the cell's earlier rows."""
        new = pd.DataFrame(list(rows))
        if new.empty:
            return
        missing = [c for c in ("config_hash", "metric", "value", "status") if c not in new]
        if missing:
            raise ValueError(f"result rows lack required columns {missing}")
        for key, part in new.groupby(_key_of(new), sort=False):
            self._write_part(str(key), part.reset_index(drop=True))

    def _write_part(self, key: str, part: pd.DataFrame) -> Path:
        folder = self.parts_dir / key
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}.parquet"
        # Beside the cell folders (a consolidation never removes those); host and pid say whose it is.
        tmp = self.parts_dir / f".{key}-{name}.{_HOST}.{os.getpid()}.tmp"
        try:
            part.to_parquet(tmp, index=False)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            for attempt in range(10):
                folder.mkdir(exist_ok=True)
                try:
                    os.replace(tmp, folder / name)
                    break
                except FileNotFoundError:  # a consolidation removed the (then empty) folder in between
                    if attempt == 9:
                        raise
        except BaseException:  # a full disk (ENOSPC), a kill: no part, nothing half-written
            tmp.unlink(missing_ok=True)
            raise
        try:
            _fsync_dir(folder)
        except FileNotFoundError:  # already consolidated and its folder removed: the table holds it
            pass
        for older in sorted(folder.glob("*.parquet"))[:-1]:  # superseded by this one; a reader takes the newest
            older.unlink(missing_ok=True)
        return folder / name

    @contextmanager
    def _locked(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run.results_lock, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def consolidate(self) -> bool:
        """Fold the parts into ``results.parquet`` / ``.csv``; True if there were any. Safe beside writers."""
        with self._locked():
            frame, parts = self._read_all()
            if not parts:
                return False
            self._write(frame)
            self._remove_orphaned_temporaries()
            for files in parts.values():
                for path in files:
                    path.unlink(missing_ok=True)
            for folder in {p.parent for files in parts.values() for p in files}:
                try:
                    folder.rmdir()  # not if a writer added a newer part meanwhile
                except OSError:
                    pass
            return True

    def _write(self, frame: pd.DataFrame) -> None:
        """Both files to temporaries (synced to disk), then one rename each; call with the lock held."""
        for stale in [*self.run_dir.glob("results.*.tmp"), *self.run_dir.glob(".results.*.tmp.*")]:
            stale.unlink(missing_ok=True)  # left by a consolidation killed before its rename
        ordered = [c for c in COLUMNS if c in frame] + [c for c in frame if c not in COLUMNS]
        frame = frame[ordered]
        # Both written before either is renamed; the parquet file (what loads read) is renamed first.
        with atomic_write(self.csv, fsync=True) as csv, atomic_write(self.parquet, fsync=True) as parquet:
            frame.to_parquet(parquet, index=False)
            frame.to_csv(csv, index=False)

    def _remove_orphaned_temporaries(self, max_age_s: float = 3600.0) -> None:
        """Temporaries of appends killed before their rename: their process is gone (or, from another host, old)."""
        for tmp in self.parts_dir.glob(".*.tmp"):
            host, pid = (tmp.name.rsplit(".", 3) + ["", ""])[1:3]
            try:
                if host == _HOST and pid.isdigit():
                    try:
                        os.kill(int(pid), 0)
                        continue  # its writer is alive
                    except ProcessLookupError:
                        pass
                elif time.time() - tmp.stat().st_mtime < max_age_s:
                    continue
                tmp.unlink(missing_ok=True)
            except (FileNotFoundError, PermissionError):
                continue

    def sync_csv(self) -> bool:
        """Rewrite the CSV from the parquet file if a consolidation was killed between its two renames."""
        with self._locked():
            if not self.parquet.exists():
                return False
            if self.csv.exists() and self.csv.stat().st_mtime_ns >= self.parquet.stat().st_mtime_ns:
                return False
            self._write(self._read_base())
            return True

    # -- reading -------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether any row was ever written here (a consolidated table or a part)."""
        return self.parquet.is_file() or bool(self._part_files())

    def load(self) -> pd.DataFrame:
        """All rows so far, as one table (an empty frame with the standard columns when there are none)."""
        frame, _ = self._read_all()
        if frame.empty and not len(frame.columns):
            return pd.DataFrame(columns=COLUMNS)
        ordered = [c for c in COLUMNS if c in frame] + [c for c in frame if c not in COLUMNS]
        return frame[ordered].reset_index(drop=True)

    def cell_status(self, config_hash: str, cell_key: str | None = None) -> str | None:
        """The status of the cell's current rows (``ok``, ``failed: ...``) if they are of ``config_hash``, else None.

        Reads the cell's own part (or the consolidated table, cached while it does not change): the check a
        worker makes before each cell costs the same in a store of 100 cells or of 20k.
        """
        for key in filter(None, (cell_key, config_hash)):
            files = sorted((self.parts_dir / key).glob("*.parquet"))
            if files:
                try:
                    part = _read_part(files[-1])
                except _PartGone:
                    break  # just consolidated: the table has it
                part = part.to_pandas()
                rows = part[part["config_hash"] == config_hash]
                return None if rows.empty else str(rows["status"].iloc[0])
        base = self._read_base(cached=True)
        if base.empty:
            return None
        rows = base[base["config_hash"] == config_hash]
        return None if rows.empty else str(rows["status"].iloc[0])

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

    def _read_all(self) -> tuple[pd.DataFrame, dict[str, list[Path]]]:
        """The merged table and the parts it applied; read again when a part vanished in between (consolidated by
        another process, or superseded by a newer part of the same cell)."""
        for _ in range(20):
            parts = self._part_files()
            try:
                return self._merge(self._read_base(), parts), parts
            except _PartGone:
                continue
        raise RuntimeError(f"{self.run_dir}: the store kept changing while it was read; try again")

    def _read_base(self, cached: bool = False) -> pd.DataFrame:
        if not self.parquet.exists():
            return pd.DataFrame()
        stat = self.parquet.stat()
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if cached and self._base_cache is not None and self._base_cache[0] == stamp:
            return self._base_cache[1]
        try:
            frame = pd.read_parquet(self.parquet)
        except Exception as exc:  # pyarrow raises several types for a truncated or foreign file
            hint = f"; {self.csv.name} next to it may still be readable" if self.csv.exists() else ""
            raise ValueError(f"results store {self.parquet} is corrupt ({exc.__class__.__name__}: "
                             f"{str(exc).splitlines()[0][:120]}); move it away to start a new store{hint}") from exc
        self._base_cache = (stamp, frame)
        return frame

    def _part_files(self) -> dict[str, list[Path]]:
        """key -> its part files, oldest first (the last one is the cell's current rows)."""
        if not self.parts_dir.is_dir():
            return {}
        out = {}
        with os.scandir(self.parts_dir) as folders:  # scandir: 20k cell folders listed without a stat each
            for folder in folders:
                if folder.is_dir() and not folder.name.startswith("."):
                    with os.scandir(folder.path) as entries:
                        files = sorted(Path(e.path) for e in entries if e.name.endswith(".parquet"))
                    if files:
                        out[folder.name] = files
        return out

    @staticmethod
    def _merge(base: pd.DataFrame, parts: dict[str, list[Path]]) -> pd.DataFrame:
        """``base`` with each key's newest part applied, oldest part first: the append rule, computed at read."""
        newest = sorted((files[-1] for files in parts.values()), key=lambda p: p.name)
        tables = [t for t in map(_read_part, newest) if t.num_rows]
        if not tables:
            return base
        # One concatenation in Arrow, then one conversion: 20k small frames through pandas took minutes.
        new = pa.concat_tables(tables, promote_options="permissive").to_pandas()
        if not base.empty:
            replaced = base["config_hash"].isin(new["config_hash"])
            if "cell_key" in base and "cell_key" in new:  # the same cell computed by other (older) code
                replaced |= base["cell_key"].isin(new["cell_key"].dropna())
            base = base[~replaced]
        return pd.concat([base, new], ignore_index=True) if not base.empty else new


class _PartGone(Exception):
    """A part was consolidated and removed between listing it and reading it."""


def _read_part(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except FileNotFoundError as exc:
        raise _PartGone(str(path)) from exc
