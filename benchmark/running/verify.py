"""``rsbench results verify RUN_DIR``: is a run's result store whole, consistent and current?

Checks, each a list of problems (empty = fine):

* ``duplicates``: a (config hash, metric) with more than one row;
* ``missing``: cells of the run's spec (``RUN_DIR/sweep_spec.json``, written by every sweep) without an ``ok`` row,
  and corrupted test passes of finished cells without one;
* ``non-finite``: ``ok`` rows whose value is NaN or infinite;
* ``csv``: ``results.csv`` that does not hold the same rows as ``results.parquet``, or cells appended since the
  last consolidation (part files not yet folded into the table; ``--fix`` folds them in);
* ``stale``: rows whose config hash is no cell (nor corrupted test pass of one) of the spec under this checkout's
  code (another code version, or a spec that changed since);
* ``mixed``: ``ok`` rows from more than one code fingerprint.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .cells import expand_cells
from .rundir import RunDir
from .spec import SweepSpec
from .store import ResultStore


@dataclass
class Verification:
    run_dir: Path
    problems: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())


def verify(run_dir: str | Path, fix: bool = False) -> Verification:
    """The checks of the module docstring; ``fix`` first folds appended parts into the table and resyncs the CSV."""
    run = RunDir(run_dir)
    run_dir = run.root
    store = ResultStore(run)
    if not store.exists():
        raise FileNotFoundError(f"{run_dir} has no results; give the folder a sweep wrote into")
    if fix:
        store.consolidate()
        store.sync_csv()
    try:
        frame = store.load()
    except Exception as exc:  # a truncated or foreign file
        raise ValueError(f"{store.parquet} could not be read ({exc.__class__.__name__}: {exc})") from exc
    out = Verification(run_dir)
    dup = frame[frame.duplicated(["config_hash", "metric"], keep=False)]
    counts = dup.groupby(["config_hash", "metric"]).size()
    out.problems["duplicates"] = [f"{h} {m}: {n} rows" for (h, m), n in counts.items()]
    ok = frame[frame["status"] == "ok"]
    bad = ok[~ok["value"].map(lambda v: isinstance(v, (int, float)) and math.isfinite(v))]
    out.problems["non-finite"] = [f"{r.config_hash} {r.metric} = {r.value}" for r in bad.itertuples()]
    out.problems["csv"] = _csv_problems(store, frame)
    fingerprints = sorted(ok["code_fingerprint"].dropna().unique()) if "code_fingerprint" in ok else []
    out.problems["mixed"] = [f"ok rows from {len(fingerprints)} code versions: {', '.join(fingerprints)}"] if len(
        fingerprints) > 1 else []  # fmt: skip
    spec_path = run.spec_file
    if not spec_path.is_file():
        out.problems["missing"] = [f"no {spec_path.name}: cannot compare with the spec (a run older than this check)"]
        out.problems["stale"] = []
        return out
    spec = SweepSpec(**json.loads(spec_path.read_text()))
    spec = spec.with_pretrained(run_dir)
    expected = {c.config_hash: c for c in expand_cells(spec)}
    passes = {p.config_hash: (c, p) for c in expected.values() for p in c.passes}
    done = set(ok["config_hash"])
    out.problems["missing"] = [expected[h].label() for h in expected if h not in done]
    out.problems["missing"] += [f"{c.label()}: test pass {p.name}" for h, (c, p) in passes.items()
                                if c.config_hash in done and h not in done]  # fmt: skip
    stale = sorted(set(frame["config_hash"]) - set(expected) - set(passes))
    out.problems["stale"] = [f"{h}: no cell of the spec under this code" for h in stale]
    return out


def _csv_problems(store: ResultStore, frame: pd.DataFrame) -> list[str]:
    pending = len(store._part_files())
    if pending:
        return [f"{pending} cell(s) appended since the last consolidation are not in {store.parquet.name} / "
                f"{store.csv.name} yet (a sweep still running, or one that was stopped): --fix folds them in"]
    if not store.csv.is_file():
        return [f"{store.csv} is missing"]
    csv = pd.read_csv(store.csv, dtype={"config_hash": str})
    if len(csv) != len(frame):
        return [f"{len(csv)} rows in the CSV, {len(frame)} in the parquet file"]
    key = ["config_hash", "metric"]
    a = frame.set_index(key)["value"].astype(float).sort_index()
    b = csv.set_index(key)["value"].astype(float).sort_index()
    if not a.index.equals(b.index):
        return ["the CSV and the parquet file hold different cells"]
    differ = ~((a == b) | (a.isna() & b.isna()) | ((a - b).abs() <= 1e-9 * b.abs().clip(lower=1)))
    return [f"{h} {m}: parquet {a[(h, m)]} vs csv {b[(h, m)]}" for h, m in a.index[differ]]
