"""What a finished sweep leaves behind: printed tables, a Markdown table and label-efficiency plots."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.table import Table

from tasks import get_task

from .plots import label_efficiency_plot
from .tables import failed_cells, seed_table, summary_table


def _rich_table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(title=title)
    flat = frame.reset_index()
    for col in flat.columns:
        table.add_column(str(col), justify="right")
    for row in flat.itertuples(index=False):
        table.add_row(*("" if pd.isna(v) else f"{v:g}" if isinstance(v, float) else str(v) for v in row))
    return table


def write_summary(frame: pd.DataFrame, spec, run_dir: str | Path, console) -> list[Path]:
    """Print per-seed and summary tables for each task's primary metric; write table.md and PNG curves."""
    run_dir = Path(run_dir)
    written, markdown = [], [f"# {spec.name}\n"]
    for task_name in spec.tasks:
        metric = get_task(task_name, **spec.task_kwargs.get(task_name, {})).primary_metric
        rows = frame[frame["task"] == task_name]
        per_seed = seed_table(rows, metric)
        if per_seed.empty:
            console.print(f"[red]{task_name}: no finished cells[/red]")
            continue
        console.print(_rich_table(per_seed, f"{task_name}: {metric} per label fraction and seed (test split)"))
        summary = summary_table(rows, metric)
        markdown += [
            f"## {task_name}: {metric} (mean ± std over seeds)\n",
            summary.reset_index().to_markdown(index=False),
            "",
            "### per seed\n",
            per_seed.reset_index().to_markdown(index=False),
            "",
        ]
        plot = label_efficiency_plot(rows, task_name, metric, run_dir / f"label_efficiency_{task_name}.png")
        written.append(plot)
        console.print(f"plot: {plot}")
    failures = failed_cells(frame)
    if not failures.empty:
        markdown += ["## failed cells\n", failures.to_markdown(index=False), ""]
    table_md = run_dir / "table.md"
    tmp = table_md.with_suffix(".md.tmp")
    tmp.write_text("\n".join(markdown))
    tmp.replace(table_md)
    console.print(f"results: {run_dir / 'results.parquet'} (+ .csv), table: {table_md}")
    return [*written, table_md]
