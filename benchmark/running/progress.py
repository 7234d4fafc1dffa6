"""What a sweep shows: the ``--dry-run`` plan with time estimates, and the live progress of a running sweep."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from tasks import task_class

from .cells import Cell, corruption_plan, expand_cells
from .rundir import RunDir
from .spec import SweepSpec
from .store import ResultStore, is_corrupted


def estimate_seconds(spec: SweepSpec, cells: list[Cell], frame: pd.DataFrame) -> list[tuple[float, str]]:
    """Per cell (seconds, source): median wall time of finished cells of the same task and backbone in
    the store, else of the same task, else the budget's iterations times the task's ``seconds_per_iter_guess``."""
    if not frame.empty:  # a corrupted test pass is not a cell: its seconds are a test's, not a cell's
        frame = frame[~is_corrupted(frame)]
    ok = frame[frame["status"] == "ok"].drop_duplicates("config_hash") if not frame.empty else frame
    by_backbone = ok.groupby(["task", "backbone"])["wall_time_s"].median().to_dict() if not ok.empty else {}
    by_task = ok.groupby("task")["wall_time_s"].median().to_dict() if not ok.empty else {}
    out = []
    for c in cells:
        if (c.task, c.shown_backbone) in by_backbone:
            out.append((float(by_backbone[c.task, c.shown_backbone]), "store"))
        elif c.task in by_task:
            out.append((float(by_task[c.task]), "store (task)"))
        else:
            iters = c.budget.max_iters
            out.append((iters * task_class(c.task).seconds_per_iter_guess, "guess"))
    return out


def plan(spec: SweepSpec, run_dir: str | Path, force: bool = False) -> pd.DataFrame:
    """One row per cell: what it is, ``done`` / ``failed`` / ``todo`` in the store, and its estimated time."""
    frame = ResultStore(run_dir).load()
    ok = set(frame.loc[frame["status"] == "ok", "config_hash"]) if not frame.empty else set()
    seen = set(frame["config_hash"]) if not frame.empty else set()
    cells = expand_cells(spec)
    rows = []
    for cell, (seconds, source) in zip(cells, estimate_seconds(spec, cells, frame)):
        chash = cell.config_hash
        status = "todo" if force else "done" if chash in ok else "failed" if chash in seen else "todo"
        row = {k: getattr(cell, k) for k in ("task", "dataset", "fraction", "split_seed", "train_seed")}
        rows.append({"backbone": cell.shown_backbone, **row, "config_hash": chash, "status": status,
                     "estimate_s": seconds, "estimate_from": source, "passes": len(cell.passes)})  # fmt: skip
    return pd.DataFrame(rows)


def format_duration(seconds: float) -> str:
    """``42 s``, ``7 min``, ``3 h 05 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


STATUS_STYLE = {"done": "green", "failed": "red", "todo": "default"}


def print_plan(spec: SweepSpec, run_dir: str | Path, console: Console, force: bool = False, jobs: int = 1) -> None:
    """The ``--dry-run`` listing: cells grouped by (backbone, task, dataset, fraction), status, estimate, total."""
    cells = plan(spec, run_dir, force)
    console.print(f"sweep [bold]{spec.name}[/bold] -> {run_dir}")
    for entry in spec.pretrain:  # the first stage; its time is not estimated (see the config's own notes)
        state = "done" if RunDir(run_dir).encoder(entry["name"]).is_file() else "to run first (not in the estimate)"
        console.print(f"pretrain {entry['name']}: {entry['config']} - {state}", highlight=False)
    checkpoints = {b.get("label") or b["name"]: b.get("checkpoint") for b in spec.backbones}
    for backbone, rows in cells.groupby("backbone", sort=False):
        title = f"{backbone}" + (f" ({checkpoints[backbone]})" if checkpoints.get(backbone) else "")
        table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", title_style="bold")
        for col in ("task", "dataset", "fraction", "seeds", "status", "estimate"):
            table.add_column(col, no_wrap=col != "seeds", justify="right" if col == "fraction" else "left")
        for (task, dataset, fraction), group in rows.groupby(["task", "dataset", "fraction"], sort=False):
            counts = group["status"].value_counts()
            todo = group[group["status"] != "done"]
            sources = "/".join(sorted(set(todo["estimate_from"])))
            seeds = Text(" ").join(
                Text(f"{s}/{t}", style=STATUS_STYLE[st])
                for s, t, st in zip(group["split_seed"], group["train_seed"], group["status"])
            )
            status = ", ".join(f"{counts[s]} {s}" for s in STATUS_STYLE if s in counts)
            estimate = f"{format_duration(todo['estimate_s'].sum())} {sources}" if len(todo) else "-"
            table.add_row(task, dataset, f"{fraction:g}", seeds, status, estimate)
        console.print(table)
    console.print(
        "seeds are split/train seed pairs (green done, red failed); estimates: 'store' = median wall "
        "time of finished cells of the task (and backbone) in this run directory, 'guess' = budget "
        "iterations x a per-task default",
        style="dim",
        highlight=False,
    )
    todo = cells[cells["status"] != "done"]
    total = todo["estimate_s"].sum()
    if spec.corruptions:
        print_robustness(spec, cells, console)
    line = f"{len(cells)} cells: {len(cells) - len(todo)} done, {len(todo)} to run (failed ones run again); "
    line += f"estimated {format_duration(total)} of compute"
    if jobs > 1:
        line += f", about {format_duration(total / jobs)} with --jobs {jobs}"
    console.print(line + ". Nothing was run (--dry-run).", highlight=False)


def print_robustness(spec: SweepSpec, cells: pd.DataFrame, console: Console) -> None:
    """What the ``corruptions`` add: corrupted test passes per task (test passes only, in the cells' estimates:
    no retraining) and, per task, the corruptions it skips and why."""
    passes = cells.groupby("task", sort=False)["passes"].agg(["first", "sum"])
    console.print(f"robustness: {int(passes['sum'].sum())} corrupted test passes after the cells' clean tests "
                  f"({', '.join(f'{t}: {int(n)} per cell' for t, n in passes['first'].items())})",
                  highlight=False)  # fmt: skip
    notes = {}
    for cell in expand_cells(spec):
        for note in corruption_plan(spec, cell)[1]:
            notes.setdefault(note, None)
    for note in notes:
        console.print(f"  skipped: {note}", highlight=False)


class EtaColumn(ProgressColumn):
    """Time left: from the rate of finished cells once there is one, before that from the estimates."""

    def render(self, task) -> Text:
        if task.total is None or "estimate_s" not in task.fields:
            return Text("")
        left = task.total - task.completed
        elapsed = task.elapsed or 0.0
        if task.completed:
            seconds = elapsed / task.completed * left
        else:
            seconds = max(task.fields["estimate_s"] - elapsed, 0.0)
        return Text(f"eta {format_duration(seconds)}" if left else "", style="progress.remaining")


class SweepProgress:
    """Rich display of a running sweep: one bar for all cells (done / failed / left, ETA) and a row per running cell."""

    def __init__(self, console: Console, cells: list[Cell], spec: SweepSpec, run_dir: str | Path,
                 parallel: int = 1) -> None:  # fmt: skip
        frame = ResultStore(run_dir).load()
        estimate = sum(s for s, _ in estimate_seconds(spec, cells, frame)) / max(parallel, 1)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), EtaColumn(),
                                 console=console)  # fmt: skip
        self.overall = self.progress.add_task("cells", total=len(cells), info="", estimate_s=estimate)
        self.total, self.done, self.failed = len(cells), 0, 0
        self.rows: dict[Cell, int] = {}
        self._update()

    def __enter__(self) -> SweepProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def _update(self) -> None:
        left = self.total - self.done - self.failed
        info = f"[green]{self.done} done[/green] [red]{self.failed} failed[/red] {left} left"
        self.progress.update(self.overall, info=info)

    def note(self, text: str) -> None:
        self.progress.console.print(text, highlight=False)

    def started(self, cell: Cell, total: int | None = None) -> None:
        self.rows[cell] = self.progress.add_task(f"  {cell.label()}", total=total, info="")

    def iteration_callback(self, cell: Cell) -> Callable[[int, int], None]:
        return lambda i, n: self.progress.update(self.rows[cell], completed=i, total=n)

    def finished(self, outcome) -> None:
        """Count a finished cell (a ``benchmark.running.executors.CellOutcome``) and print a failure at once."""
        if outcome.cell in self.rows:
            self.progress.remove_task(self.rows.pop(outcome.cell))
        if outcome.status in ("ok", "skipped"):  # skipped: the store had it by then (another sweep, a lost result)
            self.done += 1
        else:
            self.failed += 1
            where = f" (log: {outcome.log})" if outcome.log else ""
            self.note(f"[red]{outcome.cell.label()}: {outcome.status}[/red]{where}")
        self.progress.advance(self.overall)
        self._update()

    def forget(self, cell: Cell) -> None:
        """Drop a running cell's row without counting it (it goes back to the queue)."""
        if cell in self.rows:
            self.progress.remove_task(self.rows.pop(cell))
