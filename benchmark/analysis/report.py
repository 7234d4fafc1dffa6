"""A run's report, independent of its format: the tables, figures and provenance it holds, and how they are built.

A report is a list of sections in reading order: the verdict first (the aggregate across tasks and a backbone x
task heatmap of paired differences to random init), then the label-efficiency curves, one narrow table per task,
robustness, frozen vs fine-tuning (when a run holds both protocols), compute, every other table, the per-seed
details and provenance. ``render`` writes a :class:`Report` as Markdown, LaTeX and HTML; ``summary`` is what
``rsbench report`` and the end of a sweep call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from benchmark.running.provenance import hardware, library_versions
from benchmark.running.rundir import RunDir

from . import comparisons, rows
from .intervals import CONFIDENCE_TEXT
from .plots import label_efficiency_plot, label_savings_plot
from .protocols import compare_protocols, has_both_protocols, protocol_tables
from .reference import load_reference, published_vs_ours
from .runinfo import cells_table, config_files, counts, logged_environment, pretraining_table, wall_times
from .summary_plots import aggregate_plot, difference_heatmap, pareto_plot, performance_profile_plot
from .summary_tables import aggregate_table, auc_tables, compute_table, fold_savings, robustness_tables, task_tables
from .tables import DisplayTable, comparison_table, method_task_table, plain_table, rank_table, seed_table
from .verdict import Summaries, equal_compute_note, summarise


@dataclass
class Figure:
    caption: str
    path: Path


@dataclass
class Section:
    """One part of the report: a heading, a few lines of text, its tables and its figures."""

    anchor: str
    title: str
    tables: list[tuple[str, DisplayTable]] = field(default_factory=list)  # (anchor, table)
    figures: list[Figure] = field(default_factory=list)
    #: a paper's tables (LaTeX) come from the result sections, not from per-seed details or provenance
    results: bool = True
    #: figures before the tables (the verdict's heatmap, the label-efficiency curves) or after them
    figures_first: bool = False


@dataclass
class Report:
    """Everything one report shows, independent of the output format."""

    title: str
    run_dir: Path
    generated: str
    sections: list[Section] = field(default_factory=list)  # in reading order, the verdict first
    configs: list[tuple[str, str]] = field(default_factory=list)  # (name, text) of spec / cell config files
    headline: list[str] = field(default_factory=list)  # one-line facts shown under the title
    stats: pd.DataFrame = field(default_factory=pd.DataFrame)  # analysis frames behind the tables
    paired: pd.DataFrame = field(default_factory=pd.DataFrame)
    savings: pd.DataFrame = field(default_factory=pd.DataFrame)
    monotone: pd.DataFrame = field(default_factory=pd.DataFrame)
    summaries: Summaries = field(default_factory=Summaries)

    @property
    def figures(self) -> list[Figure]:
        return [f for s in self.sections for f in s.figures]

    def table(self, anchor: str) -> DisplayTable | None:
        """The table with this anchor, in whichever section it is."""
        return next((t for s in self.sections for a, t in s.tables if a == anchor), None)


def build_report(
    frame: pd.DataFrame,
    run_dir: str | Path,
    out_dir: str | Path,
    title: str | None = None,
    task_kwargs: dict | None = None,
) -> Report:
    """Compute every table and write every figure (PNG, into ``out_dir``) of a run's report."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    everything = rows.prepare(frame)
    frame = rows.clean_rows(everything)  # every table but robustness counts clean test passes only
    metrics = rows.primary_metrics(frame, task_kwargs)
    stats = comparisons.with_ranks(comparisons.seed_stats(frame, metrics, run_dir=run_dir))
    report = Report(
        title=title or run_dir.resolve().name,
        run_dir=run_dir,
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    report.headline = _headline(frame, everything, metrics)
    paired = comparisons.paired_comparisons(frame, run_dir, metrics)
    savings = comparisons.label_savings(frame, run_dir, metrics)
    monotone = comparisons.baseline_monotonicity(frame, run_dir, metrics)
    report.stats, report.paired, report.savings, report.monotone = stats, paired, savings, monotone
    report.summaries = summaries = summarise(everything, metrics, run_dir)
    figure = RunDir(out_dir).figure
    curves, seed_tables = _curves_and_seed_tables(frame, stats, out_dir)
    robustness = robustness_tables(summaries.robustness, summaries.least, summaries.skipped)
    report.sections = [
        _verdict_section(summaries, paired, figure),
        Section("label-efficiency", "Label efficiency", auc_tables(summaries.auc), curves, figures_first=True),
        Section("tasks", "Per task", task_tables(stats, paired, summaries.auc)),
        *([Section("robustness", "Robustness to corruptions", robustness)] if robustness else []),
        *([_protocols_section(frame, metrics, paired)] if has_both_protocols(frame) else []),
        _compute_section(summaries, run_dir, figure),
        Section("all-tables", "All tables", _summary_tables(stats, paired, savings, monotone),
                _more_figures(savings, summaries, figure)),
        Section("details", "Per-seed values, wall times, failed cells", seed_tables + _run_tables(frame, run_dir),
                results=False),
        Section("provenance", "Provenance", _provenance_tables(frame, run_dir, report.generated), results=False),
    ]  # fmt: skip
    report.configs = config_files(run_dir)
    return report


def _headline(frame: pd.DataFrame, everything: pd.DataFrame, metrics: dict) -> list[str]:
    n_cells = frame["config_hash"].nunique()
    n_failed = frame.loc[frame["status"] != "ok", "config_hash"].nunique()
    passes = rows.corrupted_rows(everything)["config_hash"].nunique()
    tasks = ", ".join(f"{t} ({m})" for t, m in metrics.items()) or "none finished"
    lines = [
        f"{n_cells} cells ({n_failed} failed), tasks: {tasks}" + (f"; {passes} corrupted test passes" if passes
                                                                  else ""),
        f"code version: {', '.join(counts(frame, 'code_version')['code_version'].astype(str))}",
        f"hardware: {', '.join(counts(frame, 'device')['device'].astype(str))}",
    ]  # fmt: skip
    fingerprints = counts(frame[frame["status"] == "ok"], "code_fingerprint")
    if len(fingerprints) > 1:  # a store that mixes results of different code says so, first
        pairs = zip(fingerprints["code_fingerprint"], fingerprints["cells"])
        versions = ", ".join(f"{f} ({n} cells)" for f, n in pairs)
        lines.insert(0, f"WARNING: these results come from {len(fingerprints)} versions of the result code: "
                        f"{versions}; `rsbench sweep SPEC` recomputes the stale cells")  # fmt: skip
    return lines


def _verdict_section(summaries: Summaries, paired: pd.DataFrame, figure) -> Section:
    """The aggregate and the backbone x task heatmap of paired differences to random init: the first screen."""
    section = Section("verdict", "Verdict", [("aggregate", aggregate_table(summaries.aggregate, summaries.anchors))],
                      figures_first=False)  # fmt: skip
    auc = summaries.auc
    if not auc.empty and auc["diff"].notna().any():
        diffs, what = auc, "label-efficiency AUC"
    else:  # one label fraction: no curve, so the difference at the largest fraction
        diffs = paired[paired["diff"].notna()].rename(columns={"ci_low": "diff_low", "ci_high": "diff_high"})
        diffs, what = (diffs[diffs["fraction"] == diffs["fraction"].max()] if not diffs.empty else diffs), "score"
    if not diffs.empty:
        path = difference_heatmap(diffs, figure("verdict_heatmap"))
        section.figures.append(Figure(f"Paired difference of the {what} to random init per backbone and task "
                                      f"[{CONFIDENCE_TEXT} CI], coloured only where the CI excludes 0 (blue: better)",
                                      path))  # fmt: skip
    if not summaries.aggregate.empty and summaries.aggregate["iqm"].notna().any():
        path = aggregate_plot(summaries.aggregate, figure("aggregate"))
        section.figures.append(Figure("The aggregate: IQM of normalised scores and P(better than random init), "
                                      f"{CONFIDENCE_TEXT} stratified bootstrap CIs", path))  # fmt: skip
    return section


def _protocols_section(frame: pd.DataFrame, metrics: dict, paired: pd.DataFrame) -> Section:
    """Frozen vs fine-tuning on the cells both ran: rank agreement and the cells whose gains disagree."""
    gains = paired.dropna(subset=["diff"])  # without tile statistics: gains bootstrapped over paired seeds instead
    agreement = compare_protocols(frame, metrics, comparisons=gains if len(gains) else None)
    return Section("protocols", "Frozen vs fine-tuning", protocol_tables(agreement))


def _compute_section(summaries: Summaries, run_dir: Path, figure) -> Section:
    """Compute per backbone, the fairness table with its equal-compute reading, and the Pareto plot."""
    compute = summaries.compute
    section = Section("compute", "Compute", [("compute", compute_table(compute))])
    section.tables += _pretraining_tables(run_dir, compute)
    placed = (compute["iqm"].notna() & compute["pretrain_flops"].notna()).sum() if "iqm" in compute else 0
    if placed >= 2:  # one encoder of known cost is no trade-off to plot
        path = pareto_plot(compute, figure("pareto"), x="pretrain_flops", y="iqm", lower_y=False)
        section.figures.append(Figure("Aggregate IQM against pretraining FLOPs; blue: no cheaper encoder has a "
                                      "higher IQM (the Pareto front)", path))  # fmt: skip
    return section


def _more_figures(savings: pd.DataFrame, summaries: Summaries, figure) -> list[Figure]:
    figures = []
    if savings["fraction_needed"].notna().any():
        path = label_savings_plot(savings, figure("label_savings"))
        figures.append(Figure("Label savings (claimed only where the paired CI supports them)", path))
    if not summaries.scores.empty and summaries.scores["score"].notna().any():
        path = performance_profile_plot(summaries.scores, figure("performance_profile"))
        figures.append(Figure("Performance profile: the share of runs whose normalised score exceeds tau", path))
    return figures


def _summary_tables(stats, paired, savings, monotone) -> list[tuple[str, DisplayTable]]:
    """Method x task (every task side by side), paired differences vs random init, does random init rise with
    labels, ranks, label savings (the unresolved ones folded into one line), published vs ours."""
    resolved, unresolved = fold_savings(savings)
    savings_table = plain_table(
        resolved[["task", "dataset", "protocol", "metric", "backbone", "baseline", "diff", "ci_low", "ci_high",
                  "result", "caveat"]].rename(columns={"diff": "diff at that fraction"}),  # fmt: skip
        "Label savings: labels a backbone needs to beat random init with 100 % of them",
        "smallest label fraction whose paired difference to random init at 100 % (same seeds and test tiles) has "
        f"its whole {CONFIDENCE_TEXT} CI on the better side of 0" + (f"; {unresolved}" if unresolved else ""),
    )
    monotone_table = plain_table(
        monotone, "Does random init improve with labels?",
        "means by fraction (smallest first); rise = largest minus smallest fraction (lower is better for an "
        f"error metric, so an improving RMSE has a negative rise), paired by seed, [{CONFIDENCE_TEXT} CI]; "
        "monotone = every step improves and the CI of the rise is on the better side of 0",
    )  # fmt: skip
    reference = load_reference()
    published = published_vs_ours(stats, reference)
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


def _pretraining_tables(run_dir: Path, compute: pd.DataFrame) -> list[tuple[str, DisplayTable]]:
    """The encoders the sweep's pretraining stage produced: what each method got, as run, and how much compute
    (the fairness check, with its equal-compute reading)."""
    table = pretraining_table(run_dir)
    if table.empty:
        return []
    note = ("from each encoder.pth's metadata; wall time of the last (possibly resumed) training segment; FLOPs: one "
            "step's matmul/conv FLOPs x iterations x processes, 'x least' relative to the cheapest counted encoder")
    if not compute.empty and (reading := equal_compute_note(compute)):
        note += f"; {reading}"
    return [("pretraining", plain_table(table, "Pretraining as run: data, budget and compute of every method", note))]


def _curves_and_seed_tables(frame, stats, out_dir: Path):
    """Label-efficiency curve and per-seed table of each task (and protocol)."""
    figures, tables = [], []
    for (task, dataset, protocol, metric), lines in stats.groupby(["task", "dataset", "protocol", "metric"]):
        parts = [task, *([dataset] if stats["dataset"].nunique() > 1 else []),
                 *([protocol] if stats["protocol"].nunique() > 1 else [])]  # fmt: skip
        name = re.sub(r"[^A-Za-z0-9.-]+", "_", "_".join(parts))
        path = label_efficiency_plot(lines, task, metric, RunDir(out_dir).figure(f"label_efficiency_{name}"))
        caption = (f"{task} on {dataset} ({protocol}): {metric} against the label fraction (mean, {CONFIDENCE_TEXT} "
                   "CI band)")
        figures.append(Figure(caption, path))
        mine = frame[(frame["task"] == task) & (frame["dataset"] == dataset) & (frame["protocol"] == protocol)]
        title = f"{task} on {dataset} ({protocol}): {metric} per seed"
        tables.append((f"seeds-{name}", plain_table(seed_table(mine, metric).reset_index(), title)))
    return figures, tables


def _run_tables(frame: pd.DataFrame, run_dir: Path) -> list[tuple[str, DisplayTable]]:
    """Wall times and failed cells (with the first line of the exception and where its traceback is)."""
    times = wall_times(frame)
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
        ("code", plain_table(counts(frame, "code_version"), "Code version (git describe)")),
        ("hardware", plain_table(counts(frame, "device"), "Hardware the cells ran on")),
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
