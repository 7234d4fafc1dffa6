"""What a run directory records about how it ran: its cells, logs, configs, environment, wall times and the
encoders its pretraining stage exported (the report's provenance and fairness tables)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from benchmark.running.rundir import RunDir
from benchmark.running.store import ResultStore


def load_results(run_dir: str | Path) -> pd.DataFrame:
    """The run's rows; a missing folder or an empty store is one clear error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist; give the folder a sweep wrote into")
    frame = ResultStore(run_dir).load()
    if frame.empty:
        raise FileNotFoundError(
            f"{run_dir} has no results (no rows in {RunDir(run_dir).results_parquet.name}); run "
            f"`rsbench sweep SPEC --run-dir {run_dir}` first"
        )
    return frame


def logged_environment(run_dir: Path, max_cells: int = 2000) -> pd.DataFrame:
    """The environment and library versions each cell recorded when it ran (``cells/*/provenance.json``),
    every distinct value listed. This is what the cells actually ran with (the report may be made later,
    elsewhere)."""
    seen: dict[str, set[str]] = {}
    for path in RunDir(run_dir).all_provenance()[:max_cells]:
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for key, value in {**record.get("environment", {}), **record.get("libraries", {})}.items():
            seen.setdefault(key, set()).add(str(value))
    return pd.DataFrame([{"key": k, "value": " | ".join(sorted(v))} for k, v in seen.items()], columns=["key", "value"])


def config_files(run_dir: Path, limit: int = 200) -> list[tuple[str, str]]:
    """The sweep spec the run recorded (``sweep_spec.json``), spec files at the top of the run directory, and
    the config every cell recorded in its ``provenance.json`` (the first ``limit``)."""
    found = []
    run = RunDir(run_dir)
    for path in run.top_level_configs()[:limit]:
        text = path.read_text(errors="replace").strip()
        if text:
            found.append((str(path.relative_to(run_dir)), text))
    for path in run.all_provenance()[:limit]:
        try:
            config = json.loads(path.read_text()).get("config", {})
        except (OSError, json.JSONDecodeError):
            continue
        found.append((str(path.relative_to(run_dir)), json.dumps(config, indent=2, sort_keys=True)))
    return found


def cells_table(frame: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    """One row per cell (config hash): what it ran, how long it took, where, and how it ended."""
    cols = ["config_hash", "backbone", "task", "dataset", "fraction", "split_seed", "train_seed", "n_train",
            "wall_time_s", "device", "code_version", "status"]  # fmt: skip
    cells = frame.drop_duplicates("config_hash")[[c for c in cols if c in frame]].copy()
    cells["logs"] = [", ".join(cell_logs(run_dir, str(h))) for h in cells["config_hash"]]
    return cells.sort_values(["task", "backbone", "fraction", "split_seed", "train_seed"]).reset_index(drop=True)


def cell_logs(run_dir: Path, chash: str) -> list[str]:
    """The cell's traceback (``cells/<hash>/error.log``) and its sweep log (``logs/*_<hash>.log``), if present."""
    run = RunDir(run_dir)
    found = [run.error_log(chash), *run.cell_logs(chash)]
    return [str(p.relative_to(run_dir)) for p in found if p.is_file()]


def counts(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    cells = frame.drop_duplicates("config_hash") if "config_hash" in frame else frame
    if column not in cells:
        return pd.DataFrame(columns=[column, "cells"])
    return cells[column].fillna("unknown").value_counts().rename_axis(column).reset_index(name="cells")


def wall_times(frame: pd.DataFrame) -> pd.DataFrame:
    """Wall time per (task, backbone): cells, total and median seconds per cell (each cell counted once)."""
    cells = frame.drop_duplicates("config_hash") if "config_hash" in frame else frame
    if "wall_time_s" not in cells or cells.empty:
        return pd.DataFrame(columns=["task", "backbone", "cells", "total_s", "median_s"])
    grouped = cells.groupby(["task", "backbone"])["wall_time_s"]
    return grouped.agg(cells="size", total_s="sum", median_s="median").reset_index()


def pretraining_table(run_dir: str | Path) -> pd.DataFrame:
    """One row per encoder pretrained in ``run_dir`` (the fairness table: what each method got, as run)."""
    import torch

    from backbones.checkpoint import read_meta

    from .aggregates import format_flops

    rows = []
    for path in RunDir(run_dir).encoders():
        meta = read_meta(path)
        if "parameters" in meta:  # written at export since it exists; older files are counted (memory-mapped)
            parameters = int(meta["parameters"])
        else:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
            parameters = sum(v.numel() for v in state.values())
        rows.append({
            "entry": path.parent.name, "method": meta.get("method", ""), "encoder": meta.get("arch", ""),
            "params (M)": round(parameters / 1e6, 2),
            "input": f"{meta.get('img_size', '?')} px / patch {meta.get('patch_size', '?')}",
            "modalities": "+".join(meta.get("modalities", [])), "data": meta.get("train_data", ""),
            "samples": meta.get("train_samples"), "batch": meta.get("batch_size"), "epochs": meta.get("epochs"),
            "iterations": meta.get("iters"), "wall time (s)": _round(meta.get("wall_time_s"), 1),
            "step FLOPs": format_flops(meta.get("step_flops")), "FLOPs": format_flops(meta.get("flops")),
            "_flops": meta.get("flops"), "config": Path(str(meta.get("config", ""))).name,
        })  # fmt: skip
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    # The equal-compute reading: how many times the cheapest counted encoder's FLOPs each method got.
    flops = pd.to_numeric(table.pop("_flops"), errors="coerce")
    least = flops[flops > 0].min()
    table.insert(table.columns.get_loc("FLOPs") + 1, "x least",
                 [f"{f / least:.2f}x" if f == f and least == least else "–" for f in flops])  # fmt: skip
    return table


def _round(value, digits: int):
    """Display rounding of a stored (unrounded) time; ``None`` stays ``None``."""
    return None if value is None else round(float(value), digits)
