"""pandas views of the long-format result rows, and the display tables of reports (Markdown, LaTeX, HTML)."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .intervals import CONFIDENCE_TEXT


def ok_rows(frame: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Rows whose cell finished, optionally of one metric."""
    rows = frame[frame["status"] == "ok"]
    return rows if metric is None else rows[rows["metric"] == metric]


def seed_table(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (backbone, fraction, n_train), one column per seed, plus mean and std over seeds.

    Columns are named by training seed; the split seed is added when a sweep uses several.
    """
    rows = ok_rows(frame, metric).copy()
    if rows.empty:
        return pd.DataFrame()
    several_splits = rows["split_seed"].nunique() > 1
    rows["seed"] = [
        f"seed {t}" + (f" split {s}" if several_splits else "") for t, s in zip(rows["train_seed"], rows["split_seed"])
    ]
    table = rows.pivot_table(index=["backbone", "fraction", "n_train"], columns="seed", values="value", aggfunc="first")
    seeds = table.columns.tolist()
    table["mean"] = table[seeds].mean(axis=1)
    table["std"] = table[seeds].std(axis=1, ddof=1)
    table.columns.name = None
    return table.round(2)


def summary_table(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean +- std over seeds: backbones as rows, fractions as columns."""
    rows = ok_rows(frame, metric)
    if rows.empty:
        return pd.DataFrame()
    stats = rows.groupby(["task", "backbone", "fraction"])["value"].agg(["mean", "std", "count"])
    text = stats.apply(lambda r: f"{r['mean']:.2f} ± {r['std']:.2f}" if r["count"] > 1 else f"{r['mean']:.2f}", axis=1)
    return text.unstack("fraction")


def failed_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells that failed, with their reason."""
    cols = ["backbone", "task", "fraction", "split_seed", "train_seed", "status"]
    return frame.loc[frame["status"] != "ok", cols].drop_duplicates()


# ---- display tables: strings + which cells are best, rendered to Markdown, LaTeX (booktabs) and HTML ----

#: Unicode in labels and cells that LaTeX text mode needs spelled out.
#: "<" and ">" too: in LaTeX's default OT1 font encoding they print as inverted "¡" and "¿".
_LATEX_SYMBOLS = {"±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "–": "--", "≥": r"$\geq$", "≤": r"$\leq$",
                  "<": r"\textless{}", ">": r"\textgreater{}", "→": r"$\rightarrow$", "✓": r"$\surd$",
                  "✗": r"$\times$"}  # fmt: skip


@dataclass
class DisplayTable:
    """A table as shown to a reader: formatted strings, and a mask of cells to set in bold (best per column)."""

    title: str
    text: pd.DataFrame
    bold: pd.DataFrame | None = None
    note: str = ""

    @property
    def empty(self) -> bool:
        return self.text.empty

    def bold_mask(self) -> pd.DataFrame:
        return self.bold if self.bold is not None else self.text.map(lambda _: False)


def _latex(text) -> str:
    out = str(text)
    for symbol, spelled in _LATEX_SYMBOLS.items():
        out = out.replace(symbol, spelled)
    return out


def _escape_latex(text) -> str:
    """Escape LaTeX's special characters in free text (captions); Styler escapes the cells itself."""
    specials = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip
    return _latex("".join(specials.get(ch, ch) for ch in str(text)))


def decimals_for(values) -> int:
    """Two decimals for scores in %, three for small quantities such as RMSE in metres."""
    finite = [abs(v) for v in values if v == v]
    return 2 if finite and max(finite) >= 10 else 3


def mean_std_text(mean: float, std: float, decimals: int, low: float = math.nan, high: float = math.nan) -> str:
    """``55.00 ± 7.07 [50.00, 60.00]``; the std and CI are left out when there is a single seed."""
    text = f"{mean:.{decimals}f}"
    if std == std:
        text += f" ± {std:.{decimals}f}"
    if low == low and high == high:
        text += f" [{low:.{decimals}f}, {high:.{decimals}f}]"
    return text


def _best_per_column(means: pd.DataFrame, lower: dict) -> pd.DataFrame:
    """True at the best mean of each column (ties all bold); columns with fewer than two entries get none."""
    best = means.copy().astype(object)
    for col in means.columns:
        values = means[col]
        if values.notna().sum() < 2:
            best[col] = False
            continue
        target = values.min() if lower[col] else values.max()
        best[col] = np.isclose(values, target) & values.notna()
    return best.astype(bool)


def _task_labels(stats: pd.DataFrame, arrows: bool) -> list[str]:
    """``segmentation mIoU ↑``; with the dataset and protocol when a run has several of them."""
    several = stats["dataset"].nunique() > 1
    protocols = "protocol" in stats and stats["protocol"].nunique() > 1
    return [
        f"{t}{f' {d}' if several else ''}{f' ({p})' if protocols else ''} {m}"
        + ((" ↓" if low else " ↑") if arrows else "")
        for t, d, p, m, low in zip(stats["task"], stats["dataset"], stats.get("protocol", [""] * len(stats)),
                                   stats["metric"], stats["lower"])  # fmt: skip
    ]


def method_task_table(stats: pd.DataFrame, with_ci: bool = True) -> DisplayTable:
    """Methods x tasks: one column per (task metric, label fraction), mean ± std [CI] over seeds."""
    from .rows import method_label, percent

    if stats.empty:
        return DisplayTable("method x task", pd.DataFrame())
    stats = stats.copy()
    stats["method"] = stats["method"].map(method_label)
    stats["column"] = _task_labels(stats, arrows=True)
    decimals = {c: decimals_for(g["mean"]) for c, g in stats.groupby("column")}
    stats["text"] = [
        mean_std_text(r.mean, r.std, decimals[r.column], *((r.ci_low, r.ci_high) if with_ci else ()))
        for r in stats.itertuples()
    ]
    keys = ["method", "backbone"]
    text = stats.pivot_table(index=keys, columns=["column", "fraction"], values="text", aggfunc="first")
    means = stats.pivot_table(index=keys, columns=["column", "fraction"], values="mean", aggfunc="first")
    lower = {c: bool(stats.loc[stats["column"] == c[0], "lower"].iloc[0]) for c in means.columns}
    bold = _best_per_column(means, lower)
    rename = {f: percent(f) for f in stats["fraction"].unique()}
    text = text.rename(columns=rename, level=1).fillna("–")
    bold = bold.rename(columns=rename, level=1)
    text.columns.names = bold.columns.names = [None, None]
    seeds = sorted(stats["n_seeds"].unique())
    kinds = sorted(k for k in stats.get("ci_kind", pd.Series(dtype=str)).dropna().unique() if k)
    note = (
        f"mean ± std over {'/'.join(map(str, seeds))} seed(s)"
        + (f", [{CONFIDENCE_TEXT} CI, bootstrap over {' / '.join(kinds) or 'seeds'}]" if with_ci else "")
        + "; columns are label fractions; best mean per column in bold (a best mean is not a resolved difference: "
        "see the paired comparisons); ↑ higher is better, ↓ lower is better"
    )
    return DisplayTable("Method x task (test split)", text, bold, note)


def rank_table(ranked: pd.DataFrame) -> DisplayTable:
    """Rank of each backbone per (task, fraction) from ``analysis.with_ranks``, plus the mean rank over columns."""
    from .rows import percent

    if ranked.empty:
        return DisplayTable("ranks", pd.DataFrame())
    from .rows import method_label

    ranked = ranked.assign(column=_task_labels(ranked, arrows=False), method=ranked["method"].map(method_label))
    ranks = ranked.pivot_table(index=["method", "backbone"], columns=["column", "fraction"], values="rank")
    mean_rank = ranks.mean(axis=1)
    text = ranks.map(lambda r: "–" if r != r else f"{r:.0f}")
    bold = ranks.apply(lambda col: (col == 1) & (col.notna().sum() > 1))
    text = text.rename(columns={f: percent(f) for f in ranked["fraction"].unique()}, level=1)
    bold.columns = text.columns
    text[("mean rank", "")] = mean_rank.map(lambda r: f"{r:.2f}")
    bold[("mean rank", "")] = np.isclose(mean_rank, mean_rank.min()) & (len(mean_rank) > 1)
    text.columns.names = bold.columns.names = [None, None]
    note = "1 = best mean over seeds among the backbones of a column (ties share the better rank); direction-aware"
    return DisplayTable("Ranks per task and label fraction", text, bold.astype(bool), note)


def comparison_table(paired: pd.DataFrame) -> DisplayTable:
    """Paired differences against random init: rows backbones, columns (task, fraction), ``+1.23 [0.4, 2.1] ✓``."""
    from .rows import method_label, percent

    if paired.empty:
        return DisplayTable("Paired differences vs random init", pd.DataFrame())
    paired = paired.copy()
    paired["method"] = paired["method"].map(method_label)
    paired["column"] = _task_labels(paired.assign(lower=paired["lower"].astype(bool)), arrows=True)
    decimals = {c: decimals_for(g["diff"].dropna()) for c, g in paired.groupby("column")}
    marks = {"better": " ✓", "worse": " ✗", "not resolved": " ?"}

    def text(r) -> str:
        if r.diff != r.diff:
            return str(r.verdict)
        d = decimals[r.column]
        return f"{r.diff:+.{d}f} [{r.ci_low:.{d}f}, {r.ci_high:.{d}f}]{marks.get(r.verdict, '')}"

    paired["text"] = [text(r) for r in paired.itertuples()]
    keys = ["method", "backbone"]
    table = paired.pivot_table(index=keys, columns=["column", "fraction"], values="text", aggfunc="first")
    verdicts = paired.pivot_table(index=keys, columns=["column", "fraction"], values="verdict", aggfunc="first")
    rename = {f: percent(f) for f in paired["fraction"].unique()}
    table = table.rename(columns=rename, level=1).fillna("–")
    bold = (verdicts == "better").rename(columns=rename, level=1).reindex_like(table).fillna(False).astype(bool)
    table.columns.names = bold.columns.names = [None, None]
    seeds = sorted(int(n) for n in paired["n_seeds"].dropna().unique())
    note = (f"backbone minus random init of its arch, same split and training seeds ({'/'.join(map(str, seeds))}) "
            f"and the same test tiles; [{CONFIDENCE_TEXT} CI, seeds and test tiles resampled together]; ✓ better and "
            "✗ worse only where the CI excludes 0, ? not resolved at this budget")  # fmt: skip
    return DisplayTable("Paired differences vs random init (test split)", table, bold, note)


def plain_table(frame: pd.DataFrame, title: str, note: str = "", decimals: int = 2) -> DisplayTable:
    """Any frame as strings (floats rounded, label fractions as percentages, NaN as "–"), nothing bold."""
    from .rows import percent

    text = frame.copy()
    for col in text.columns:
        if col == "fraction":  # never rounded: 0.025 must not print as 0.03
            text[col] = text[col].map(lambda v: "–" if v != v else percent(float(v)))
        elif pd.api.types.is_float_dtype(text[col]):
            text[col] = text[col].map(lambda v: "–" if v != v else f"{v:.{decimals}f}")
        else:
            text[col] = text[col].map(
                lambda v: "–" if v is None or (pd.api.types.is_scalar(v) and pd.isna(v)) else str(v)
            )
    return DisplayTable(title, text.reset_index(drop=True), None, note)


def _flat_columns(frame: pd.DataFrame) -> list[str]:
    if isinstance(frame.columns, pd.MultiIndex):
        return [" ".join(str(p) for p in col if str(p)) for col in frame.columns]
    return [str(c) for c in frame.columns]


def to_markdown(table: DisplayTable) -> str:
    """A GitHub-flavoured Markdown table (best cells in **bold**), with the index as leading columns."""
    text = table.text.map(lambda v: str(v).replace("|", "\\|"))  # a "|" in a failure reason would split the cell
    text = text.where(~table.bold_mask(), "**" + text + "**")
    text.columns = _flat_columns(text)
    has_index = not isinstance(text.index, pd.RangeIndex)
    # disable_numparse: tabulate would reparse "34.00" as 34 and drop the decimals the table chose
    flat = text.reset_index() if has_index else text
    return flat.to_markdown(index=False, disable_numparse=True)


def to_latex(table: DisplayTable, label: str) -> str:
    """A ``table`` float with a booktabs tabular (\\toprule/\\midrule/\\bottomrule) and bold best cells.

    Needs ``\\usepackage{booktabs,graphicx}`` (graphicx for ``\\resizebox``); column groups use core ``\\multicolumn``.
    """
    text, bold = table.text, table.bold_mask()
    styler = text.style.format(escape="latex", formatter=_latex)
    styler = styler.format_index(escape="latex", axis=0, formatter=_latex)
    styler = styler.format_index(escape="latex", axis=1, formatter=_latex)
    styler = styler.apply(lambda _: bold.replace({True: "textbf:--rwrap;", False: ""}), axis=None)
    has_index = not isinstance(text.index, pd.RangeIndex)
    if not has_index:
        styler = styler.hide(axis="index")
    caption = _escape_latex(table.title + (f". {table.note}" if table.note else ""))
    n_index = text.index.nlevels if has_index else 0
    numeric = [text[c].str.fullmatch(r"[-+\d.,%± \[\]–]*").all() for c in text.columns]
    latex = styler.to_latex(
        column_format="l" * n_index + "".join("r" if n else "l" for n in numeric), hrules=True, multicol_align="c",
        multirow_align="naive-l", caption=caption, label=label, position_float="centering", environment="table",
    )  # fmt: skip
    if n_index + text.shape[1] <= 6:
        return latex
    # Wide sweeps (tasks x fractions) would run off the page: scale the tabular down to the line width.
    return latex.replace("\\begin{tabular}", "\\resizebox{\\linewidth}{!}{%\n\\begin{tabular}").replace(
        "\\end{tabular}", "\\end{tabular}}"
    )


def to_html(table: DisplayTable, table_id: str) -> str:
    """An HTML ``<table>`` (pandas Styler, escaped cells, best cells bold) under an ``<h3>`` title and note."""
    has_index = not isinstance(table.text.index, pd.RangeIndex)
    styler = table.text.style.set_uuid(table_id).format(escape="html").format_index(escape="html", axis=1)
    styler = styler.apply(lambda _: table.bold_mask().replace({True: "font-weight: bold", False: ""}), axis=None)
    styler = styler.set_table_attributes('class="results"')
    if not has_index:
        styler = styler.hide(axis="index")
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    body = "" if table.empty else styler.to_html()
    return f"<h3>{html.escape(table.title)}</h3>\n{note}\n{body}"
