"""Errors of the real-dataset readers: one line each, naming the dataset or file and what to do."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder or some of its files are missing.

    Subclasses :class:`FileNotFoundError` so callers that already handle missing files keep
    working; the message says which dataset, where it looked, what it expected and what to do.
    """

    def __init__(self, dataset: str, root: str | Path, expected: str | Sequence[str | Path], hint: str = "") -> None:
        if isinstance(expected, str):
            what = expected
        else:  # a list of missing files: show a few, count the rest, keep it one line
            items = [str(p) for p in expected]
            what = ", ".join(items[:3]) + (f" (and {len(items) - 3} more)" if len(items) > 3 else "")
        self.dataset, self.root, self.expected = dataset, Path(root), expected
        hint = hint or "see docs/datasets.md for where to get it and the folder tree"
        super().__init__(f"{dataset} dataset not found under '{root}': expected {what}; {hint}")


class DatasetFileError(ValueError):
    """A dataset file exists but its content is unusable (unreadable, wrong bands, wrong size, ...)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")
