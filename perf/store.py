"""The result store's append cost against its size: one 10-row cell appended to a store of 100 cells and of 20k.

Grows a store in a temporary directory through ``ResultStore.append`` (the path every cell takes), times
appends around 100 cells and around the target size, then consolidates once and times a full read.
The last line is the ratio of the median append at the target size to the median at 100 cells (target:
at most 1.5x; the single-file store it replaced measured 15 ms at 100 cells and 945 ms at 20k, 63x).

    python perf/store.py            # 20000 cells (about a minute on 2 cores)
    python perf/store.py --cells 5000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.running.store import ResultStore  # noqa: E402

METRICS = ("mIoU", "mAcc", "aAcc") + tuple(f"IoU.class{i}" for i in range(7))  # 10 rows, as a segmentation cell


def cell_rows(i: int) -> list[dict]:
    base = dict(method="random_init", backbone="random_init_vit_t16", checkpoint_hash="none", task="segmentation",
                dataset="synthetic", modalities="rgb+dsm", fraction=0.05, n_train=20, split_seed=i % 3,
                train_seed=i, status="ok", config_hash=f"{i:012x}", cell_key=f"k{i:011x}", code_version="perf",
                device="cpu", wall_time_s=1.0, created="2026-12-04T00:00:00+00:00", protocol="frozen")  # fmt: skip
    return [dict(base, metric=m, value=float(i % 97)) for m in METRICS]


def timed_appends(store: ResultStore, start: int, n: int) -> list[float]:
    out = []
    for i in range(start, start + n):
        t = time.perf_counter()
        store.append(cell_rows(i))
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=20000)
    parser.add_argument("--sample", type=int, default=50, help="appends timed at each size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(tmp)
        timed_appends(store, 0, 100 - args.sample // 2)
        small = timed_appends(store, 100 - args.sample // 2, args.sample)
        start = time.perf_counter()
        filler = timed_appends(store, 100 + args.sample // 2, args.cells - 100 - args.sample)
        grow_s = time.perf_counter() - start
        large = timed_appends(store, args.cells - args.sample // 2, args.sample)
        print(f"grew the store to {args.cells} cells ({10 * args.cells} rows) in {grow_s + sum(small) + sum(large):.1f}"
              f" s of appends; median append {1e3 * statistics.median(filler):.2f} ms while growing")
        start = time.perf_counter()
        store.consolidate()
        consolidate_s = time.perf_counter() - start
        start = time.perf_counter()
        rows = len(store.load())
        load_s = time.perf_counter() - start
        print(f"consolidate: {consolidate_s:.1f} s; load of the consolidated table: {load_s:.2f} s ({rows} rows)")
        after = timed_appends(store, args.cells, args.sample)
        a, b = statistics.median(small), statistics.median(large)
        print(f"one append: {1e3 * a:.2f} ms at 100 cells, {1e3 * b:.2f} ms at {args.cells} cells, "
              f"{1e3 * statistics.median(after):.2f} ms after consolidating {args.cells}")
    print(f"append at {args.cells} / append at 100: {b / a:.2f}x")


if __name__ == "__main__":
    main()
