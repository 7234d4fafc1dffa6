"""Pretraining as the first stage of a sweep: a spec's ``pretrain`` entries become encoder checkpoints.

A sweep spec may declare ``pretrain = [dict(name="mssdf", config="configs/pretrain/....py"), ...]``
and refer to the exported encoders as ``checkpoint="pretrain:mssdf"``. Each entry runs once through
the same registered runner as ``rsbench pretrain`` into ``RUN_DIR/pretrain/NAME``; a finished entry
(its ``encoder.pth`` exists) is reused, an interrupted one resumes from its last epoch checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from tasks.runtime import ProgressHook, release_runner

from .provenance import REPO_ROOT
from .rundir import RunDir

PREFIX = "pretrain:"


@dataclass(frozen=True)
class PretrainEntry:
    """One pretraining run a sweep needs: a name the backbones refer to, a config and overrides."""

    name: str
    config: str
    cfg_options: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, entry: dict) -> PretrainEntry:
        unknown = sorted(set(entry) - {"name", "config", "cfg_options"})
        if unknown or "name" not in entry or "config" not in entry:
            raise ValueError(
                f"pretrain entry {entry} needs 'name' and 'config' (optional 'cfg_options'); unknown keys {unknown}"
            )
        return cls(str(entry["name"]), str(entry["config"]), dict(entry.get("cfg_options") or {}))


def pretrain_reference(checkpoint: str | None) -> str | None:
    """``"mssdf"`` for ``"pretrain:mssdf"``, else None."""
    if isinstance(checkpoint, str) and checkpoint.startswith(PREFIX):
        return checkpoint[len(PREFIX) :]
    return None


def check_entries(entries: Sequence[dict], referenced: Sequence[str | None]) -> list[PretrainEntry]:
    """Parse the entries and check that configs exist and every ``pretrain:NAME`` is declared."""
    parsed = [PretrainEntry.from_dict(e) for e in entries]
    names = [e.name for e in parsed]
    if len(set(names)) != len(names):
        raise ValueError(f"pretrain entry names must be unique, got {names}")
    parsed = [replace(e, config=_find_config(e.config)) for e in parsed]
    for e in parsed:
        if not Path(e.config).is_file():
            raise FileNotFoundError(
                f"pretraining config {e.config} (entry {e.name!r}) does not exist; see configs/pretrain/"
            )
    for ref in filter(None, map(pretrain_reference, referenced)):
        if ref not in names:
            raise ValueError(f"checkpoint 'pretrain:{ref}' names no pretrain entry; declared: {names}")
    return parsed


def _find_config(path: str) -> str:
    """A relative config path from the current directory, else from the repository (``rsbench demo`` anywhere)."""
    if Path(path).is_file() or Path(path).is_absolute():
        return path
    in_repo = REPO_ROOT / path
    return str(in_repo) if in_repo.is_file() else path


def encoder_path(run_dir: str | Path | RunDir, name: str) -> Path:
    """The encoder the entry ``name`` exports (``RunDir.encoder``)."""
    return (run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)).encoder(name)


def run_pretraining(
    entries: Sequence[PretrainEntry],
    run_dir: str | Path,
    progress: Callable[[str, int, int], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Run every entry whose encoder does not exist yet; return name -> encoder path."""
    from .pretrain import build_runner  # heavy (registers all methods); only when a stage runs

    paths = {}
    for e in entries:
        path = encoder_path(run_dir, e.name)
        paths[e.name] = path
        if path.is_file():
            log(f"pretrain {e.name}: reusing {path}")
            continue
        # resume=True picks up the newest epoch checkpoint in the work dir, or starts fresh when there is none.
        runner = build_runner(e.config, path.parent, resume=True, cfg_options=e.cfg_options, quiet=True)
        if progress is not None:
            runner.register_hook(ProgressHook(partial(progress, e.name)), priority="VERY_LOW")
        start = time.perf_counter()
        try:
            runner.train()
        finally:
            release_runner(runner)  # its log file stays open otherwise, for the rest of the sweep
        log(f"pretrain {e.name}: {e.config} done in {time.perf_counter() - start:.0f} s -> {path}")
    return paths


def run_spec_pretraining(entries: Sequence[dict], run_dir: str | Path | RunDir, console) -> dict[str, Path]:
    """The sweep's first stage with a progress bar per entry (``console``: a rich Console)."""
    from rich import progress as rp

    bars: dict[str, int] = {}
    columns = (rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(), rp.TimeElapsedColumn(),
               rp.TimeRemainingColumn())  # fmt: skip
    with rp.Progress(*columns, console=console) as progress:

        def update(name: str, iteration: int, total: int) -> None:
            if name not in bars:
                bars[name] = progress.add_task(f"pretrain {name}", total=total)
            progress.update(bars[name], completed=iteration)

        return run_pretraining(check_entries(entries, []), run_dir, progress=update, log=progress.console.print)
