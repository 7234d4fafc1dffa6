"""What a finished run prints and writes: ``report_run`` (``rsbench report``) and ``write_summary`` (the end of a
sweep, handed to ``benchmark.running.sweep.run_sweep`` by the CLI), so both print the same tables and leave the
same files.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.table import Table
from rich.text import Text

from benchmark.running.rundir import RunDir, write_text_atomic
from benchmark.running.store import ResultStore

from . import rows
from .render import FORMATS, write_comparisons, write_report
from .report import Report, build_report
from .runinfo import load_results
from .tables import DisplayTable, comparison_table, method_task_table, plain_table, seed_table


def report_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    formats=FORMATS,
    console=None,
    frame: pd.DataFrame | None = None,
    title: str | None = None,
    task_kwargs: dict | None = None,
) -> list[Path]:
    """Load a run's results, print its method x task table, write figures and the report files."""
    run_dir = Path(run_dir)
    if frame is None:
        if run_dir.is_dir():
            ResultStore(run_dir).consolidate()  # cells appended by a stopped sweep join the table
        frame = load_results(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir
    report = build_report(frame, run_dir, out_dir, title, task_kwargs)
    written = [fig.path for fig in report.figures] + write_report(report, out_dir, formats)
    written += write_comparisons(report, out_dir)
    if console is not None:
        print_summary(report, console)
        console.print(f"report: {', '.join(str(p) for p in written if p.name.startswith('report.'))}")
    return written


def print_summary(report: Report, console) -> None:
    """The terminal's view: per task the means with their CIs and the paired differences (one narrow table per
    task and protocol, since all tasks side by side do not fit), then the verdict (the aggregate), the
    label-efficiency AUC, robustness, compute, and the savings and baseline check."""
    stats, paired = report.stats, report.paired
    for key, per_task in stats.groupby(["task", "dataset", "protocol"], sort=False):
        console.print(rich_table(method_task_table(per_task)))
        if not paired.empty:
            mine = paired[(paired["task"] == key[0]) & (paired["dataset"] == key[1]) & (paired["protocol"] == key[2])]
            if not mine.empty:
                console.print(rich_table(comparison_table(mine)))
    for anchor in ("aggregate", "auc", "auc-vs-random"):
        table = report.table(anchor)
        if table is not None and (not table.empty or table.note):
            console.print(rich_table(table))
    robustness = next((s for s in report.sections if s.anchor == "robustness"), None)
    for _, table in robustness.tables if robustness else ():
        console.print(rich_table(table))
    compute = report.table("compute")
    if compute is not None and not compute.empty:
        keep = [c for c in ("backbone", "pretraining FLOPs", "pretraining time", "adaptation time", "adaptation FLOPs",
                            "IQM") if c in compute.text]  # fmt: skip
        console.print(rich_table(DisplayTable(compute.title, compute.text[keep], None, "")))
    narrow = {"label-savings": ["task", "protocol", "backbone", "result", "caveat"],
              "monotone": ["task", "protocol", "means", "rise", "ci_low", "ci_high", "monotone"]}  # fmt: skip
    for name, keep in narrow.items():
        table = report.table(name)
        if table is None or (table.empty and "not resolved" not in table.note):
            continue
        cols = [c for c in keep if c in table.text and (c != "caveat" or (table.text[c] != "–").any())]
        console.print(rich_table(DisplayTable(table.title, table.text[cols], None, table.note)))


def rich_table(table: DisplayTable) -> Table:
    """A DisplayTable for the terminal (best cells bold)."""
    text = table.text.reset_index() if not isinstance(table.text.index, pd.RangeIndex) else table.text
    bold = table.bold_mask()
    n_index = len(text.columns) - len(bold.columns)
    # Text, not str: titles and notes hold "[...]" that rich would take for markup.
    out = Table(title=Text(table.title), caption=Text(table.note) if table.note else None)
    for col in text.columns:
        out.add_column(" ".join(str(p) for p in col if str(p)) if isinstance(col, tuple) else str(col), justify="right")
    for i, row in enumerate(text.itertuples(index=False)):
        out.add_row(*(Text(str(v), style="bold" if j >= n_index and bold.iat[i, j - n_index] else "")
                      for j, v in enumerate(row)))  # fmt: skip
    return out


def write_summary(frame: pd.DataFrame, spec, run_dir: str | Path, console) -> list[Path]:
    """End of a sweep: print each task's per-seed table, then the report (tables, figures, md/tex/html)."""
    run_dir = Path(run_dir)
    prepared = rows.clean_rows(rows.prepare(frame))  # a corrupted test pass is no seed of a clean cell
    keys = ["task", "dataset", "backbone", "fraction"]
    several_seeds = not prepared.empty and prepared.groupby(keys)["config_hash"].nunique().max() > 1
    # With one seed per cell the method x task tables below already show every value.
    for task, metric in rows.primary_metrics(prepared, spec.task_kwargs).items() if several_seeds else ():
        per_seed = seed_table(prepared[prepared["task"] == task], metric)
        if not per_seed.empty:
            console.print(
                rich_table(
                    plain_table(per_seed.reset_index(), f"{task}: {metric} per label fraction and seed (test split)")
                )
            )
    for task in spec.tasks:
        if frame.empty or not ((frame["task"] == task) & (frame["status"] == "ok")).any():
            console.print(f"[red]{task}: no finished cells[/red]")
    if frame.empty:
        return []
    written = report_run(run_dir, run_dir, FORMATS, console, frame=frame, title=spec.name, task_kwargs=spec.task_kwargs)
    run = RunDir(run_dir)
    written.append(write_text_atomic(run.legacy_table, run.report("md").read_text(encoding="utf-8")))
    console.print(f"results: {run.results_parquet} (+ .csv)")
    return written
