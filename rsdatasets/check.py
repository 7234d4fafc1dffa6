"""``check_dataset``: is a real dataset on disk complete and readable, before hours of training find out?

Opens every split the way training will (same file lookup, same header checks), then reads every file
block by block: truncated data, wrong band counts or sizes, label colours outside the legend and
nodata heights are each reported against the file that has them. ``rsbench data check`` prints it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetFileError, DatasetNotFoundError
from .geotiff import TiledRasterDataset, label_codes, raster_info, read_window

BLOCK = 1024  # pixels per side read at a time: bounded memory on 6000x6000 tiles
HEIGHT_ROLES = ("dsm", "ndsm", "agl")


@dataclass
class FileStat:
    """What one file holds: role, bands, dtype, size and (for heights) the share of nodata pixels."""

    path: Path
    role: str
    bands: int
    dtype: str
    width: int
    height: int
    nodata_fraction: float | None = None


@dataclass
class CheckReport:
    """Outcome of :func:`check_dataset`; ``ok`` is False when any split is missing or any file is bad."""

    dataset: str
    root: Path
    crops: dict[str, int] = field(default_factory=dict)  # split -> number of samples
    tiles: dict[str, int] = field(default_factory=dict)  # split -> number of tiles/images
    files: list[FileStat] = field(default_factory=list)
    label_colours: Counter = field(default_factory=Counter)  # label code -> pixels, over all label files
    unknown_colours: Counter = field(default_factory=Counter)  # codes outside legend and ignore codes
    legend: dict[int, str] = field(default_factory=dict)  # label code -> class name (or "ignore")
    bad_files: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[tuple[Path, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # splits that could not be opened (also in bad_files)
    # Filled by the generic readers' check (their scan): split protocol, counts per class, file shapes.
    protocols: dict[str, str] = field(default_factory=dict)  # split -> how it was made
    class_counts: dict[str, Counter] = field(default_factory=dict)  # split -> class -> images/pixels/boxes
    count_unit: str = ""
    shapes: Counter = field(default_factory=Counter)  # (split, role, bands, dtype, "WxH") -> files

    @property
    def ok(self) -> bool:
        return not self.errors and not self.bad_files

    def code_name(self, code: int) -> str:
        """A label code as text: ``(r,g,b)`` for colour labels, the value for 1-band ones."""
        if any(c > 255 for c in self.legend) or code > 255:
            return f"({code >> 16},{(code >> 8) & 255},{code & 255})"
        return str(code)

    def summary(self) -> str:
        """A few plain-text lines: verdict, samples per split, label colours, bad files."""
        lines = [f"{self.dataset} at {self.root}: {'OK' if self.ok else 'PROBLEMS'}"]
        lines.append("samples: " + ", ".join(f"{s}={n} ({self.tiles[s]} tiles)" for s, n in self.crops.items()))
        if self.files or not self.shapes:
            lines.append(f"files read: {len(self.files)}")
        lines += [f"{split}: {how}" for split, how in self.protocols.items()]
        for split, counts in self.class_counts.items():
            lines.append(f"{split} {self.count_unit} per class: " + ", ".join(f"{c}={n}" for c, n in counts.items()))
        lines += [f"{split}: {n} {r} file(s), {b} band(s), {d}, {size}"
                  for (split, r, b, d, size), n in sorted(self.shapes.items())]  # fmt: skip
        total = sum(self.label_colours.values())
        if total:
            unknown = sum(self.unknown_colours.values())
            top = ", ".join(f"{self.code_name(c)} x{n}" for c, n in self.unknown_colours.most_common(5))
            lines.append(f"label pixels: {total}, outside the legend: {unknown} ({100 * unknown / total:.3g}%)"
                         + (f": {top}" if top else ""))  # fmt: skip
        lines += [f"bad: {p}: {r}" for p, r in self.bad_files]
        lines += [f"warning: {p}: {r}" for p, r in self.warnings]
        return "\n".join(lines)


def _scan(report: CheckReport, ds: TiledRasterDataset, role: str, path: Path, unknown_tolerance: float) -> None:
    """Read one file fully in blocks; record its stats, label colours, nodata share or why it is bad."""
    info = raster_info(path)
    stat = FileStat(path, role, info.count, info.dtype, info.width, info.height)
    codes: Counter = Counter()
    invalid = 0
    blocks = [(r, c, min(BLOCK, info.height - r), min(BLOCK, info.width - c))  # disjoint: every pixel counted once
              for r in range(0, info.height, BLOCK) for c in range(0, info.width, BLOCK)]  # fmt: skip
    for window in blocks:
        block = read_window(path, window)
        if role == "label":
            values, counts = np.unique(label_codes(block), return_counts=True)
            codes.update(dict(zip(values.tolist(), counts.tolist())))
        elif role in HEIGHT_ROLES:
            bad = ~np.isfinite(block[0].astype(np.float32))
            if info.nodata is not None and np.isfinite(info.nodata):
                bad |= block[0] == info.nodata
            invalid += int(bad.sum())
    report.files.append(stat)
    pixels = info.width * info.height
    if role in HEIGHT_ROLES:
        stat.nodata_fraction = invalid / pixels
        if invalid == pixels:
            report.bad_files.append((path, "every height is nodata/NaN"))
        elif invalid:
            share = f"{100 * stat.nodata_fraction:.3g}%"
            report.warnings.append((path, f"{share} nodata/NaN heights (dsm_valid is False there)"))
    if role == "label":
        report.label_colours.update(codes)
        unknown = {c: n for c, n in codes.items() if c not in ds.label_table and c not in ds.ignore_codes}
        report.unknown_colours.update(unknown)
        if unknown:
            share = sum(unknown.values()) / pixels
            top = ", ".join(f"{report.code_name(c)} x{n}" for c, n in Counter(unknown).most_common(3))
            text = f"{100 * share:.3g}% of pixels have colours outside the legend ({top}); read as 255 (ignore)"
            (report.bad_files if share > unknown_tolerance else report.warnings).append((path, text))


def check_dataset(name: str, root: str | Path, full: bool = True, unknown_tolerance: float = 0.01,
                  **kwargs: Any) -> CheckReport:  # fmt: skip
    """Check dataset ``name`` under ``root``: every split, every file; never raises for bad data.

    ``kwargs`` go to the dataset class (e.g. ``image="IRRG"``, ``labels="no_boundary"``). With
    ``full=False`` only headers are checked (seconds instead of minutes). A label file whose share of
    colours outside the legend exceeds ``unknown_tolerance`` is bad; a smaller share is a warning.
    """
    from . import dataset_class
    from .generic import CheckedReader

    cls = dataset_class(name)
    if name == "synthetic":
        raise ValueError("dataset 'synthetic' is generated, not read from files; nothing to check")
    if issubclass(cls, CheckedReader):  # the generic readers scan themselves (rsdatasets/generic.py)
        return _check_scanned(name, cls, Path(root), kwargs, full)
    if not issubclass(cls, TiledRasterDataset):
        return _check_by_reading(name, cls, Path(root), kwargs)
    report = CheckReport(name, Path(root))
    seen: set[Path] = set()
    for split in cls.split_names:
        try:
            ds = cls(root=root, split=split, validate=False, **kwargs)
        except DatasetNotFoundError as err:
            report.errors.append(f"{split}: {err}")
            report.bad_files.append((Path(root), f"{split} split: {err}"))  # callers that only list bad files
            continue
        report.crops[split], report.tiles[split] = len(ds), len(ds.tiles)
        report.legend = {**{c: ds.classes[i] for c, i in ds.label_table.items()},
                         **dict.fromkeys(ds.ignore_codes, "ignore")}  # fmt: skip
        report.bad_files += [p for p in ds.problems if p not in report.bad_files]
        header_bad = {p for p, _ in ds.problems}
        for tile in ds.tiles:
            for role, path in tile.files.items():
                if path in seen or path in header_bad or not full:
                    continue
                seen.add(path)
                try:
                    _scan(report, ds, role, path, unknown_tolerance)
                except DatasetFileError as err:
                    report.bad_files.append((path, err.problem))
    return report


def _check_by_reading(name: str, cls: type, root: Path, kwargs: dict) -> CheckReport:
    """Image datasets (scene, change, detection): open each split and read every sample once;
    the readers validate content on load, so each unusable file becomes a bad-file entry."""
    report = CheckReport(name, root)
    for split in getattr(cls, "split_names", ("train", "val", "test")):
        try:
            ds = cls(root=root, split=split, **kwargs)
        except DatasetNotFoundError as err:
            report.errors.append(f"{split}: {err}")
            report.bad_files.append((root, f"{split} split: {err}"))
            continue
        except ValueError as err:  # e.g. a split this dataset does not have
            report.warnings.append((root, f"{split} split not checked: {err}"))
            continue
        report.crops[split] = report.tiles[split] = len(ds)
        for index in range(len(ds)):
            try:
                ds[index]
            except DatasetFileError as err:
                if (err.path, err.problem) not in report.bad_files:
                    report.bad_files.append((err.path, err.problem))
    return report


def _check_scanned(name: str, cls: type, root: Path, kwargs: dict, full: bool) -> CheckReport:
    """Generic readers: each split is built with ``validate=False``, so its scan collects every problem
    (sizes, label values, boxes) instead of stopping at the first; counts per class, file shapes and label
    values come from the same scan. With ``full`` every sample is then decoded once more, which finds
    truncated files that a header does not."""
    report = CheckReport(name, root)
    counted: set[str] = set()  # label values of a folder two splits read (test reading val/) count once
    for split in cls.split_names:
        try:
            ds = cls(root=root, split=split, validate=False, **kwargs)
        except (DatasetNotFoundError, DatasetFileError, ValueError) as err:  # layout, classes.json, options
            report.errors.append(f"{split}: {err}")
            path, reason = (err.path, err.problem) if isinstance(err, DatasetFileError) else (root, str(err))
            report.bad_files.append((path, f"{split} split: {reason}"))
            continue
        summary = ds.scan_summary()
        report.crops[split], report.tiles[split], report.protocols[split] = len(ds), len(ds.records), ds.split_protocol
        report.class_counts[split], report.count_unit = summary.class_counts, summary.count_unit
        report.shapes.update({(split, *key): n for key, n in summary.shapes.items()})
        if ds.source not in counted:
            counted.add(ds.source)
            report.label_colours.update(summary.label_values)
        report.legend.update(summary.legend)
        report.warnings += [(root, f"{split}: {note}") for note in summary.notes]
        if split != "train" and not len(ds):
            report.warnings.append((root, f"{split} split is empty ({ds.split_protocol})"))
        report.bad_files += [p for p in ds.problems if p not in report.bad_files]
        for index in range(len(ds)) if full else ():
            try:
                ds[index]
            except DatasetFileError as err:
                if err.path not in {p for p, _ in report.bad_files}:
                    report.bad_files.append((err.path, err.problem))
    return report


def print_report(report: CheckReport, console: Any = None) -> None:
    """Print a report with rich: splits, files, label colours, then problems."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    verdict = "[green]OK[/green]" if report.ok else "[red]PROBLEMS[/red]"
    console.print(f"[bold]{report.dataset}[/bold] at {report.root}: {verdict}")
    splits = Table("split", "tiles", "samples", title="splits")
    for split, n in report.crops.items():
        splits.add_row(split, str(report.tiles[split]), str(n))
    console.print(splits)
    for split, how in report.protocols.items():
        console.print(f"{split}: {how}", highlight=False)
    if report.class_counts:
        classes = Table("class", *report.class_counts, title=f"{report.count_unit} per class")
        names = dict.fromkeys(c for counts in report.class_counts.values() for c in counts)
        for c in names:
            classes.add_row(c, *(str(counts.get(c, 0)) for counts in report.class_counts.values()))
        console.print(classes)
    if report.shapes:
        shapes = Table("split", "role", "bands", "dtype", "size", "files", title="files")
        for (split, role, bands, dtype, size), n in sorted(report.shapes.items()):
            shapes.add_row(split, role, str(bands), dtype, size, str(n))
        console.print(shapes)
    if report.files:
        files = Table("role", "bands", "dtype", "size", "nodata", "file", title="files")
        for f in report.files:
            nodata = "" if f.nodata_fraction is None else f"{f.nodata_fraction:.2%}"
            files.add_row(f.role, str(f.bands), f.dtype, f"{f.width}x{f.height}", nodata, f.path.name)
        console.print(files)
    if report.label_colours:
        colours = Table("code", "class", "pixels", title="label colours")
        for code, n in report.label_colours.most_common(20):
            colours.add_row(report.code_name(code), report.legend.get(code, "[red]unknown -> 255[/red]"), str(n))
        console.print(colours)
    for path, reason in report.bad_files:  # one line each, however long: logs are grepped
        console.print(f"[red]bad[/red] {path}: {reason}", soft_wrap=True, highlight=False)
    for path, reason in report.warnings:
        console.print(f"[yellow]warning[/yellow] {path}: {reason}", soft_wrap=True, highlight=False)
