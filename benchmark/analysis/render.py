"""A ``Report`` as files: Markdown (GitHub-flavoured), LaTeX floats (booktabs) and one self-contained HTML page
(figures inlined as base64 PNG, no external CSS, fonts or scripts: it opens from a mail attachment as it is).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from benchmark.running.rundir import RunDir, write_text_atomic

from .report import Report
from .tables import DisplayTable, to_html, to_latex, to_markdown

FORMATS = ("md", "tex", "html")


def render_markdown(report: Report) -> str:
    """The report as GitHub-flavoured Markdown, section by section; figures are linked PNG files next to it."""
    lines = [f"# rsbench report: {report.title}", "", *[f"- {line}" for line in report.headline],
             f"- generated: {report.generated}", ""]  # fmt: skip
    for section in report.sections:
        lines += [f"## {section.title}", ""]
        figures = [f"![{fig.caption}]({fig.path.name})\n\n*{fig.caption}*\n" for fig in section.figures]
        tables = [line for _, table in section.tables for line in _markdown_section(table)]
        lines += figures + tables if section.figures_first else tables + figures
    for name, text in report.configs:
        lines += [f"### config: {name}", "", "```", text, "```", ""]
    return "\n".join(lines)


def _markdown_section(table: DisplayTable) -> list[str]:
    lines = [f"### {table.title}", ""]
    if table.note:
        lines += [f"*{table.note}*", ""]
    if not table.empty:
        lines += [to_markdown(table), ""]
    return lines


def render_latex(report: Report) -> str:
    """The report's result tables as LaTeX floats (``\\usepackage{booktabs,graphicx}``), ready to ``\\input``."""
    parts = [f"% rsbench report: {report.title} ({report.generated}); needs \\usepackage{{booktabs,graphicx}}", ""]
    for anchor, table in (t for section in report.sections if section.results for t in section.tables):
        if not table.empty:
            parts += [to_latex(table, f"tab:rsbench-{anchor}"), ""]
    return "\n".join(parts)


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-bottom: .2em; }
ul.headline { color: #444; }
nav a { margin-right: 1em; }
table.results { border-collapse: collapse; margin: .5em 0 1.5em; font-size: .8em; }
table.results th, table.results td { border-bottom: 1px solid #ddd; padding: .25em .6em; text-align: right; }
table.results thead th { border-bottom: 2px solid #444; text-align: center; }
table.results th.row_heading { text-align: left; }
p.note { color: #555; font-size: .85em; margin: 0; }
div.figures { display: flex; flex-wrap: wrap; gap: .5em 1em; align-items: flex-start; }
figure { margin: .5em 0 1em; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #eee; }
#verdict figure { flex: 1 1 0; min-width: 0; }
#label-efficiency figure { flex: 0 1 48%; min-width: 0; }
figcaption { font-size: .85em; color: #444; }
details pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: .8em; }
.scroll { overflow-x: auto; }
"""


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{html.escape(title)}</h2>\n{body}\n</section>'


def _tables(tables) -> str:
    return "\n".join(f'<div class="scroll" id="table-{anchor}">{to_html(t, anchor)}</div>' for anchor, t in tables)


def _figure(caption: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    alt = html.escape(caption, quote=True)
    img = f'<img src="data:image/png;base64,{data}" alt="{alt}">'
    return f"<figure>{img}<figcaption>{html.escape(caption)}</figcaption></figure>"


def render_html(report: Report) -> str:
    """The whole page as a string (UTF-8): the verdict on the first screen, every section after it."""
    title = f"rsbench report: {report.title}"
    headline = "".join(f"<li>{html.escape(line)}</li>" for line in [*report.headline, f"generated: {report.generated}"])
    sections = []
    for section in report.sections:
        figures = "\n".join(_figure(f.caption, f.path.read_bytes()) for f in section.figures)
        figures = f'<div class="figures">{figures}</div>' if figures else ""
        tables = _tables(section.tables)
        body = f"{figures}\n{tables}" if section.figures_first else f"{tables}\n{figures}"
        if section.anchor == "provenance":
            body += "\n" + "\n".join(
                f"<details><summary>config: {html.escape(name)}</summary><pre>{html.escape(text)}</pre></details>"
                for name, text in report.configs
            )
        sections.append(_section(section.anchor, section.title, body))
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title.lower())}</a>' for s in report.sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<ul class="headline">{headline}</ul>
<nav>{nav}</nav>
{chr(10).join(sections)}
</body>
</html>
"""


def write_report(report: Report, out_dir: str | Path, formats=FORMATS) -> list[Path]:
    """Write ``report.md`` / ``report.tex`` / ``report.html`` into ``out_dir`` (atomically); returns the paths."""
    renderers = {"md": render_markdown, "tex": render_latex, "html": render_html}
    out = RunDir(out_dir)
    return [write_text_atomic(out.report(fmt), renderers[fmt](report)) for fmt in formats]


def parse_formats(text: str | list[str]) -> list[str]:
    """``"md,tex"`` -> ["md", "tex"]; an unknown format is one clear error."""
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = [f.strip().lower() for f in items if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(f"unknown report format(s) {unknown or text!r}; choose from {','.join(FORMATS)}")
    return formats


def write_comparisons(report: Report, out_dir: str | Path) -> list[Path]:
    """The analysis behind the tables as CSV: stats with CIs (and each line's label-efficiency AUC), paired
    differences, savings, monotonicity, the aggregate, compute and, for a run with corruptions, robustness."""
    out = RunDir(out_dir)
    summaries = report.summaries
    stats = report.stats
    if not summaries.auc.empty:
        keys = ["task", "dataset", "protocol", "metric", "backbone"]
        auc = summaries.auc[[*keys, "auc", "auc_low", "auc_high", "diff", "diff_low", "diff_high", "verdict"]]
        stats = stats.merge(auc.rename(columns={c: f"auc_{c}" for c in ("diff", "diff_low", "diff_high", "verdict")}),
                            on=keys, how="left")  # fmt: skip
    tables = [("stats", stats), ("comparisons", report.paired), ("label_savings", report.savings),
              ("baseline_monotonicity", report.monotone), ("aggregate", summaries.aggregate),
              ("compute", summaries.compute)]  # fmt: skip
    if not summaries.robustness.empty:
        tables.append(("robustness", summaries.robustness))
    return [write_text_atomic(out.table_csv(name), table.to_csv(index=False)) for name, table in tables]
