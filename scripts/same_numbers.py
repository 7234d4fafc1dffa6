"""Do two runs of the same spec hold the same numbers, bit for bit? ``python scripts/same_numbers.py RUN_A RUN_B``

For a refactor that must not change a number (docs/layout.md): run one spec with the code before and after
(``rsbench sweep SPEC --run-dir RUN_A`` / ``RUN_B``) and compare. Cells are matched by what they are (backbone,
task, dataset, protocol, fraction, seeds), not by hash, since moved code changes the code fingerprint and a
re-exported encoder its checkpoint hash. Compares every metric value and every cell's per-tile statistics;
the last line says ``same numbers`` or what differs (exit 1). Corrupted test passes are matched by their corruption
and severity too; a run made before they existed reads as clean rows only (``--clean`` compares clean rows alone).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

KEYS = ["backbone", "task", "dataset", "protocol", "fraction", "split_seed", "train_seed", "metric", "corruption",
        "severity"]  # fmt: skip


def _read(run: str, clean: bool) -> pd.DataFrame:
    rows = pd.read_parquet(Path(run) / "results.parquet")
    rows["corruption"] = rows["corruption"].fillna("none") if "corruption" in rows else "none"
    rows["severity"] = rows["severity"].fillna(0).astype(int) if "severity" in rows else 0
    return rows[rows["corruption"] == "none"] if clean else rows


def main(a: str, b: str, clean: bool = False) -> int:
    rows = [_read(run, clean) for run in (a, b)]
    merged = rows[0].merge(rows[1], on=KEYS, how="outer", suffixes=("_a", "_b"), indicator=True)
    problems = [f"{len(merged[merged['_merge'] != 'both'])} row(s) in one run only"] if (
        merged["_merge"] != "both").any() else []  # fmt: skip
    both = merged[merged["_merge"] == "both"]
    values = both["value_a"].to_numpy(float), both["value_b"].to_numpy(float)
    differ = ~((values[0] == values[1]) | (np.isnan(values[0]) & np.isnan(values[1])))
    if differ.any():
        problems.append(f"{int(differ.sum())} of {len(both)} value(s) differ")
    cells = both.drop_duplicates(["config_hash_a", "config_hash_b"])
    for ha, hb in zip(cells["config_hash_a"], cells["config_hash_b"]):
        files = [Path(run) / "cells" / h / "tile_stats.npz" for run, h in ((a, ha), (b, hb))]
        if files[0].is_file() != files[1].is_file():
            problems.append(f"tile statistics of {ha} / {hb} in one run only")
        elif files[0].is_file():
            with np.load(files[0]) as x, np.load(files[1]) as y:
                same = set(x.files) == set(y.files) and all(
                    np.array_equal(x[k], y[k], equal_nan=True) for k in x.files if k != "__meta__")  # fmt: skip
            if not same:
                problems.append(f"tile statistics of {ha} / {hb} differ")
    print(f"{len(both)} rows, {len(cells)} cells compared")
    print("; ".join(problems) if problems else "same numbers")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3], clean="--clean" in sys.argv[3:]))
