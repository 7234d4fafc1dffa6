"""Where a cell's per-tile statistics live: ``RUN_DIR/cells/<config hash>/tile_stats.npz`` (written atomically)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

TILE_STATS = "tile_stats.npz"


def tile_stats_path(run_dir: str | Path, config_hash: str) -> Path:
    return Path(run_dir) / "cells" / config_hash / TILE_STATS


def save_tile_stats(work_dir: str | Path, stats: dict[str, np.ndarray], **meta) -> Path:
    """A cell's per-tile statistics (for CIs and paired comparisons), next to its work files; temp file + rename."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / TILE_STATS
    tmp = work_dir / f".{TILE_STATS}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **stats, __meta__=np.array(json.dumps(meta)))
    os.replace(tmp, path)
    return path


def load_tile_stats(run_dir: str | Path, config_hash: str) -> dict[str, np.ndarray] | None:
    """The statistics a cell saved, or None (a failed cell, or a run from before they were saved)."""
    path = tile_stats_path(run_dir, config_hash)
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files if k != "__meta__"}
