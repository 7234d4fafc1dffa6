"""A run's report: builds the ``Report`` (tables, figures, provenance) and writes its files (Markdown, LaTeX, HTML).

``rsbench report RUN_DIR`` and the end of every sweep (``write_summary``) go through ``report_run``,
so a sweep prints the same table and leaves the same files as a later ``rsbench report``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from rich.table import Table
from rich.text import Text

from . import analysis
from .html_report import render_html
from .plots import label_efficiency_plot, label_savings_plot
from .pretrain_stage import pretraining_table
from .provenance import PROVENANCE_FILE, hardware, library_versions
from .report_model import Figure, Report
from .report_render import render_latex, render_markdown
from .results import ResultStore
from .tables import (
    DisplayTable,
    comparison_table,
    method_task_table,
    plain_table,
    rank_table,
    seed_table,
)

FORMATS = ("md", "tex", "html")
#: Files a run directory may hold its sweep spec in (written next to the results, if the sweep saved it).
SPEC_GLOBS = ("*.py", "*.json", "*.yaml", "*.yml", "*.toml")


def load_results(run_dir: str | Path) -> pd.DataFrame:
    """The run's rows; a missing folder or an empty store is one clear error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist; give the folder a sweep wrote into")
    frame = ResultStore(run_dir).load()
    if frame.empty:
        raise FileNotFoundError(
            f"{run_dir} has no results (no rows in results.parquet); run `rsbench sweep SPEC --run-dir {run_dir}` first"
        )
    return frame


def logged_environment(run_dir: Path, max_cells: int = 2000) -> pd.DataFrame:
    """The environment and library versions each cell recorded when it ran (``cells/*/provenance.json``),
    every distinct value listed. This is what the cells actually ran with (the report may be made later,
    elsewhere)."""
    seen: dict[str, set[str]] = {}
    for path in sorted(run_dir.glob(f"cells/*/{PROVENANCE_FILE}"))[:max_cells]:
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
    for path in [p for g in SPEC_GLOBS for p in sorted(run_dir.glob(g))][:limit]:
        text = path.read_text(errors="replace").strip()
        if text:
            found.append((str(path.relative_to(run_dir)), text))
    for path in sorted(run_dir.glob(f"cells/*/{PROVENANCE_FILE}"))[:limit]:
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
    cells["logs"] = [", ".join(_cell_logs(run_dir, str(h))) for h in cells["config_hash"]]
    return cells.sort_values(["task", "backbone", "fraction", "split_seed", "train_seed"]).reset_index(drop=True)


def _cell_logs(run_dir: Path, chash: str) -> list[str]:
    """The cell's traceback (``cells/<hash>/error.log``) and its sweep log (``logs/*_<hash>.log``), if present."""
    found = [run_dir / "cells" / chash / "error.log", *sorted(run_dir.glob(f"logs/*_{chash}.log"))]
    return [str(p.relative_to(run_dir)) for p in found if p.is_file()]


def _counts(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    cells = frame.drop_duplicates("config_hash") if "config_hash" in frame else frame
    if column not in cells:
        return pd.DataFrame(columns=[column, "cells"])
    return cells[column].fillna("unknown").value_counts().rename_axis(column).reset_index(name="cells")


def build_report(
    frame: pd.DataFrame,
    run_dir: str | Path,
    out_dir: str | Path,
    title: str | None = None,
    task_kwargs: dict | None = None,
) -> Report:
    """Compute every table and write every figure (PNG, into ``out_dir``) of a run's report."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    frame = analysis.prepare(frame)
    metrics = analysis.primary_metrics(frame, task_kwargs)
    stats = analysis.with_ranks(analysis.seed_stats(frame, metrics, run_dir=run_dir))
    report = Report(
        title=title or run_dir.resolve().name,
        run_dir=run_dir,
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    n_cells = frame["config_hash"].nunique()
    n_failed = frame.loc[frame["status"] != "ok", "config_hash"].nunique()
    tasks = ", ".join(f"{t} ({m})" for t, m in metrics.items()) or "none finished"
    report.headline = [
        f"{n_cells} cells ({n_failed} failed), tasks: {tasks}",
        f"code version: {', '.join(_counts(frame, 'code_version')['code_version'].astype(str))}",
        f"hardware: {', '.join(_counts(frame, 'device')['device'].astype(str))}",
    ]
    fingerprints = _counts(frame[frame["status"] == "ok"], "code_fingerprint")
    if len(fingerprints) > 1:  # a store that mixes results of different code says so, first
        pairs = zip(fingerprints["code_fingerprint"], fingerprints["cells"])
        versions = ", ".join(f"{f} ({n} cells)" for f, n in pairs)
        report.headline.insert(0, f"WARNING: these results come from {len(fingerprints)} versions of the result code: "
                                  f"{versions}; `rsbench sweep SPEC` recomputes the stale cells")  # fmt: skip
    paired = analysis.paired_comparisons(frame, run_dir, metrics)
    savings = analysis.label_savings(frame, run_dir, metrics)
    monotone = analysis.baseline_monotonicity(frame, run_dir, metrics)
    report.stats, report.paired, report.savings, report.monotone = stats, paired, savings, monotone
    report.summary = _summary_tables(stats, paired, savings, monotone) + _pretraining_tables(run_dir)
    report.figures, report.details = _figures_and_seed_tables(frame, stats, savings, out_dir)
    report.details += _run_tables(frame, run_dir)
    report.provenance = _provenance_tables(frame, run_dir, report.generated)
    report.configs = config_files(run_dir)
    return report


def _summary_tables(stats, paired, savings, monotone) -> list[tuple[str, DisplayTable]]:
    """Method x task, paired differences vs random init, does random init rise with labels, ranks, label
    savings, published vs ours."""
    savings_table = plain_table(
        savings[["task", "dataset", "protocol", "metric", "backbone", "baseline", "diff", "ci_low", "ci_high",
                 "result", "caveat"]].rename(columns={"diff": "diff at that fraction"}),  # fmt: skip
        "Label savings: labels a backbone needs to beat random init with 100 % of them",
        "smallest label fraction whose paired difference to random init at 100 % (same seeds and test tiles) has "
        "its whole 95 % CI on the better side of 0; 'not resolved at this budget' when no fraction's CI does",
    )
    monotone_table = plain_table(
        monotone, "Does random init improve with labels?",
        "means by fraction (smallest first); rise = largest minus smallest fraction (lower is better for an "
        "error metric, so an improving RMSE has a negative rise), paired by seed, [95 % CI]; "
        "monotone = every step improves and the CI of the rise is on the better side of 0",
    )  # fmt: skip
    reference = analysis.load_reference()
    published = analysis.published_vs_ours(stats, reference)
    note = (
        "published numbers from results/reference/ matched by method, task, dataset, label fraction and metric; "
        "delta = ours - published"
    )
    if published.empty:
        datasets = ", ".join(sorted(stats["dataset"].astype(str).unique()))
        covered = ", ".join(sorted(reference["dataset"].astype(str).unique())) if not reference.empty else "none"
        note = f"no published number matches this run (datasets: {datasets}); references cover: {covered}"
    return [
        ("method-task", method_task_table(stats)),
        ("paired", comparison_table(paired)),
        ("monotone", monotone_table),
        ("ranks", rank_table(stats)),
        ("label-savings", savings_table),
        ("published", plain_table(published, "Published vs ours", note)),
    ]


def _pretraining_tables(run_dir: Path) -> list[tuple[str, DisplayTable]]:
    """The encoders the sweep's pretraining stage produced: what each method got, as run (a fairness check)."""
    table = pretraining_table(run_dir)
    if table.empty:
        return []
    note = "from each encoder.pth's metadata; wall time of the last (possibly resumed) training segment"
    return [("pretraining", plain_table(table, "Pretraining as run (same data and budget for every method)", note))]


def _figures_and_seed_tables(frame, stats, savings, out_dir: Path):
    """Label-efficiency curve and per-seed table of each task (and protocol), and the label-savings figure."""
    figures, tables = [], []
    for (task, dataset, protocol, metric), lines in stats.groupby(["task", "dataset", "protocol", "metric"]):
        parts = [task, *([dataset] if stats["dataset"].nunique() > 1 else []),
                 *([protocol] if stats["protocol"].nunique() > 1 else [])]  # fmt: skip
        name = re.sub(r"[^A-Za-z0-9.-]+", "_", "_".join(parts))
        path = label_efficiency_plot(lines, task, metric, out_dir / f"label_efficiency_{name}.png")
        caption = f"{task} on {dataset} ({protocol}): {metric} against the label fraction (mean, 95 % CI band)"
        figures.append(Figure(caption, path))
        rows = frame[(frame["task"] == task) & (frame["dataset"] == dataset) & (frame["protocol"] == protocol)]
        title = f"{task} on {dataset} ({protocol}): {metric} per seed"
        tables.append((f"seeds-{name}", plain_table(seed_table(rows, metric).reset_index(), title)))
    if savings["fraction_needed"].notna().any():
        path = label_savings_plot(savings, out_dir / "label_savings.png")
        figures.append(Figure("Label savings (claimed only where the paired CI supports them)", path))
    return figures, tables


def _run_tables(frame: pd.DataFrame, run_dir: Path) -> list[tuple[str, DisplayTable]]:
    """Wall times and failed cells (with the first line of the exception and where its traceback is)."""
    times = analysis.wall_times(frame)
    total = times["total_s"].sum() if not times.empty else 0.0
    cells = cells_table(frame, run_dir)
    failed = cells[cells["status"] != "ok"]
    shown = ["backbone", "task", "dataset", "fraction", "split_seed", "train_seed", "config_hash", "status", "logs"]
    note = "none" if failed.empty else "reason = first line of the exception; full traceback in the log"
    return [
        ("wall-times", plain_table(times, "Wall time per task and backbone (s)", f"total {total:.0f} s", 1)),
        ("failed", plain_table(failed[shown], "Failed cells", note)),
    ]


def _provenance_tables(frame: pd.DataFrame, run_dir: Path, generated: str) -> list[tuple[str, DisplayTable]]:
    """Code version, hardware, the environment the cells logged, library versions now, and every cell."""
    env = logged_environment(run_dir)
    versions = pd.DataFrame(list(library_versions().items()), columns=["library", "version"])
    return [
        ("code", plain_table(_counts(frame, "code_version"), "Code version (git describe)")),
        ("hardware", plain_table(_counts(frame, "device"), "Hardware the cells ran on")),
        (
            "environment",
            plain_table(env, "Environment and libraries the cells recorded (cells/*/provenance.json)",
                        "" if len(env) else "none found (a run made before cells recorded their provenance)"),
        ),
        (
            "versions",
            plain_table(versions, "Library versions where this report was made", f"made on {hardware()}, {generated}"),
        ),
        ("cells", plain_table(cells_table(frame, run_dir), "Cells (one per config hash)", decimals=1)),
    ]


def write_report(report: Report, out_dir: str | Path, formats=FORMATS) -> list[Path]:
    """Write ``report.md`` / ``report.tex`` / ``report.html`` into ``out_dir`` (atomically); returns the paths."""
    renderers = {"md": render_markdown, "tex": render_latex, "html": render_html}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out_dir / f"report.{fmt}"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(renderers[fmt](report), encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written


def parse_formats(text: str | list[str]) -> list[str]:
    """``"md,tex"`` -> ["md", "tex"]; an unknown format is one clear error."""
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = [f.strip().lower() for f in items if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(f"unknown report format(s) {unknown or text!r}; choose from {','.join(FORMATS)}")
    return formats


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


def write_comparisons(report: Report, out_dir: str | Path) -> list[Path]:
    """The analysis behind the tables as CSV (stats with CIs, paired differences, savings, monotonicity)."""
    out_dir = Path(out_dir)
    written = []
    for name, table in (("stats", report.stats), ("comparisons", report.paired), ("label_savings", report.savings),
                        ("baseline_monotonicity", report.monotone)):  # fmt: skip
        path = out_dir / f"{name}.csv"
        tmp = path.with_name(path.name + ".tmp")
        table.to_csv(tmp, index=False)
        tmp.replace(path)
        written.append(path)
    return written


def print_summary(report: Report, console) -> None:
    """The terminal's view: per task the means with their CIs, the paired differences, then savings and
    the baseline check; one narrow table per task and protocol, since all tasks side by side do not fit."""
    stats, paired = report.stats, report.paired
    for key, per_task in stats.groupby(["task", "dataset", "protocol"], sort=False):
        console.print(rich_table(method_task_table(per_task)))
        if not paired.empty:
            mine = paired[(paired["task"] == key[0]) & (paired["dataset"] == key[1]) & (paired["protocol"] == key[2])]
            if not mine.empty:
                console.print(rich_table(comparison_table(mine)))
    summary = dict(report.summary)
    narrow = {"label-savings": ["task", "protocol", "backbone", "result", "caveat"],
              "monotone": ["task", "protocol", "means", "rise", "ci_low", "ci_high", "monotone"]}  # fmt: skip
    for name, keep in narrow.items():
        table = summary[name]
        if table.empty:
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
    prepared = analysis.prepare(frame)
    keys = ["task", "dataset", "backbone", "fraction"]
    several_seeds = not prepared.empty and prepared.groupby(keys)["config_hash"].nunique().max() > 1
    # With one seed per cell the method x task tables below already show every value.
    for task, metric in analysis.primary_metrics(prepared, spec.task_kwargs).items() if several_seeds else ():
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
    # table.md is the name README and older scripts use for a sweep's Markdown; same content as report.md.
    legacy = run_dir / "table.md"
    legacy.write_text((run_dir / "report.md").read_text(encoding="utf-8"), encoding="utf-8")
    written.append(legacy)
    console.print(f"results: {run_dir / 'results.parquet'} (+ .csv)")
    return written
