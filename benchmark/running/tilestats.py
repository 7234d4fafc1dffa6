"""A cell's per-tile statistics: ``RUN_DIR/cells/<config hash>/tile_stats.npz`` (``RunDir.tile_stats``).

What a cell measured on each test tile (``TiledMetric.tile_stats``), saved when the cell finishes: the
analysis computes every interval, paired difference and saving from these when it reads the run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .rundir import RunDir, atomic_write


def save_tile_stats(path: str | Path, stats: dict[str, np.ndarray], **meta) -> Path:
    """A cell's per-tile statistics at ``path`` (``RunDir.tile_stats(config_hash)``), atomically."""
    path = Path(path)
    with atomic_write(path) as tmp:
        np.savez(tmp, **stats, __meta__=np.array(json.dumps(meta)))
    return path


def load_tile_stats(run_dir: str | Path | RunDir, config_hash: str) -> dict[str, np.ndarray] | None:
    """The statistics a cell saved, or None (a failed cell, or a run from before they were saved)."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    path = run.tile_stats(config_hash)
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files if k != "__meta__"}
