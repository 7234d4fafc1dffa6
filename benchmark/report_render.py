"""Markdown and LaTeX renderers of a ``Report`` (the HTML renderer is ``html_report``)."""

from __future__ import annotations

from .report_model import Report
from .tables import DisplayTable, to_latex, to_markdown


def render_markdown(report: Report) -> str:
    """The report as GitHub-flavoured Markdown; figures are linked PNG files next to it."""
    lines = [f"# rsbench report: {report.title}", "", *[f"- {line}" for line in report.headline],
             f"- generated: {report.generated}", ""]  # fmt: skip
    for _, table in report.summary:
        lines += _markdown_section(table)
    if report.figures:
        lines += ["## Figures", ""]
        lines += [f"![{fig.caption}]({fig.path.name})\n\n*{fig.caption}*\n" for fig in report.figures]
    for _, table in report.details + report.provenance:
        lines += _markdown_section(table)
    for name, text in report.configs:
        lines += [f"### config: {name}", "", "```", text, "```", ""]
    return "\n".join(lines)


def _markdown_section(table: DisplayTable) -> list[str]:
    lines = [f"## {table.title}", ""]
    if table.note:
        lines += [f"*{table.note}*", ""]
    if not table.empty:
        lines += [to_markdown(table), ""]
    return lines


def render_latex(report: Report) -> str:
    """The report's result tables as LaTeX floats (``\\usepackage{booktabs,graphicx}``), ready to ``\\input``."""
    parts = [f"% rsbench report: {report.title} ({report.generated}); needs \\usepackage{{booktabs,graphicx}}", ""]
    for anchor, table in report.summary:
        if not table.empty:
            parts += [to_latex(table, f"tab:rsbench-{anchor}"), ""]
    return "\n".join(parts)
