"""Every path of a run directory, and the one atomic writer.

A run directory (``results/runs/<name>`` by default) holds::

    sweep_spec.json              the spec the sweep ran (``rsbench results verify`` compares the store with it)
    timing.json                  wall time of the sweep's stages (``perf/harness.py --run`` reads it)
    results.parquet, results.csv the result store (``benchmark.running.store``), with results.parts/ and its lock
    cells/<config hash>/         a cell's work dir: provenance.json, tile_stats.npz, error.log, mmengine's logs
    cells/<pass hash>/           tile_stats.npz of a corrupted test pass of a cell (its rows carry that hash)
    logs/<cell>_<hash>.log       a cell's log as the sweep saw it (its output, mmengine's log, the traceback)
    pretrain/<name>/             a pretraining stage's work dir; encoder.pth is the encoder it exported
    submitit/<job id>/           what submitit keeps of each Slurm job
    tracking/                    the cells' training curves for TensorBoard / W&B / MLflow (tasks/tracking.py)
    report.{md,tex,html}, table.md, *.png, stats.csv, comparisons.csv, ...   the report (``benchmark.analysis``)

Only this module spells these names; everything else asks a :class:`RunDir`. Every file the harness writes
there goes through :func:`atomic_write` (a temporary file, then a rename), so a reader never sees half of one;
the store's part files follow the same rule with a protocol of their own (``benchmark.running.store``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Files at the top of a run directory that may hold the sweep's spec or config (the report shows them).
SPEC_GLOBS = ("*.py", "*.json", "*.yaml", "*.yml", "*.toml")


class RunDir:
    """The paths of one run directory (nothing is created until something is written)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    # -- the sweep -------------------------------------------------------------------------------------------
    @property
    def spec_file(self) -> Path:
        return self.root / "sweep_spec.json"

    @property
    def timing(self) -> Path:
        return self.root / "timing.json"

    @property
    def submitit(self) -> Path:
        return self.root / "submitit" / "%j"

    @property
    def tracking(self) -> Path:
        return self.root / "tracking"

    def top_level_configs(self) -> list[Path]:
        """Files at the top of the run directory that may hold the spec (``SPEC_GLOBS``)."""
        return [p for g in SPEC_GLOBS for p in sorted(self.root.glob(g))]

    # -- the result store ------------------------------------------------------------------------------------
    @property
    def results_parquet(self) -> Path:
        return self.root / "results.parquet"

    @property
    def results_csv(self) -> Path:
        return self.root / "results.csv"

    @property
    def results_parts(self) -> Path:
        return self.root / "results.parts"

    @property
    def results_lock(self) -> Path:
        return self.root / ".results.lock"

    # -- cells -----------------------------------------------------------------------------------------------
    def cell(self, config_hash: str) -> Path:
        """A cell's work dir (its mmengine work dir too)."""
        return self.root / "cells" / config_hash

    def provenance(self, config_hash: str) -> Path:
        return self.cell(config_hash) / "provenance.json"

    def tile_stats(self, config_hash: str) -> Path:
        return self.cell(config_hash) / "tile_stats.npz"

    def error_log(self, config_hash: str) -> Path:
        return self.cell(config_hash) / "error.log"

    def mmengine_logs(self, config_hash: str) -> list[Path]:
        """The logs mmengine wrote into the cell's work dir (one folder per run of the cell), oldest first."""
        return sorted(self.cell(config_hash).glob("*/*.log"), key=lambda p: p.stat().st_mtime)

    def all_provenance(self) -> list[Path]:
        return sorted(self.root.glob("cells/*/provenance.json"))

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def cell_log(self, name: str, config_hash: str) -> Path:
        """``logs/<name>_<hash>.log``, ``name`` made safe for a file name."""
        return self.logs / f"{re.sub(r'[^A-Za-z0-9.=-]+', '_', name)}_{config_hash}.log"

    def cell_logs(self, config_hash: str) -> list[Path]:
        return sorted(self.logs.glob(f"*_{config_hash}.log"))

    # -- pretraining -----------------------------------------------------------------------------------------
    def pretrain(self, name: str) -> Path:
        """The work dir of the pretraining entry ``name``."""
        return self.root / "pretrain" / name

    def encoder(self, name: str) -> Path:
        """The encoder the pretraining entry ``name`` exported."""
        return self.pretrain(name) / "encoder.pth"

    def encoders(self) -> list[Path]:
        return sorted(self.root.glob("pretrain/*/encoder.pth"))

    # -- the report ------------------------------------------------------------------------------------------
    def report(self, fmt: str) -> Path:
        return self.root / f"report.{fmt}"

    @property
    def legacy_table(self) -> Path:
        """``table.md``: the name README and older scripts use for a sweep's Markdown (same as report.md)."""
        return self.root / "table.md"

    def table_csv(self, name: str) -> Path:
        return self.root / f"{name}.csv"

    def figure(self, name: str) -> Path:
        return self.root / f"{name}.png"


@contextmanager
def atomic_write(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it replaces ``path`` in one rename.

    The temporary file keeps ``path``'s suffix (writers such as ``np.savez`` and ``savefig`` read the format
    from it) and the writer's pid (two processes never share one). On an exception nothing is left behind.
    ``fsync`` flushes the file to disk before the rename (for files that must survive a power cut).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """``text`` (UTF-8) at ``path``, atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """``obj`` as JSON at ``path``, atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True, default=str))
