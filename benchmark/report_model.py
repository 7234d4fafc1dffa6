"""What a report holds, independent of its format: tables, figures, provenance (rendered by ``report_render``
and ``html_report``, built by ``report``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .tables import DisplayTable


@dataclass
class Figure:
    caption: str
    path: Path


@dataclass
class Report:
    """Everything one report shows, independent of the output format."""

    title: str
    run_dir: Path
    generated: str
    summary: list[tuple[str, DisplayTable]] = field(default_factory=list)  # (anchor, table) in reading order
    figures: list[Figure] = field(default_factory=list)
    details: list[tuple[str, DisplayTable]] = field(default_factory=list)  # per-seed tables, wall times, failures
    provenance: list[tuple[str, DisplayTable]] = field(default_factory=list)
    configs: list[tuple[str, str]] = field(default_factory=list)  # (name, text) of spec / cell config files
    headline: list[str] = field(default_factory=list)  # one-line facts shown under the title
    stats: pd.DataFrame = field(default_factory=pd.DataFrame)  # analysis frames behind the tables
    paired: pd.DataFrame = field(default_factory=pd.DataFrame)
    savings: pd.DataFrame = field(default_factory=pd.DataFrame)
    monotone: pd.DataFrame = field(default_factory=pd.DataFrame)
