"""Data layer: the embedded synthetic benchmark, real-dataset readers and label-fraction splits.

``build_dataset(name, split, **kwargs)`` is the one entry point the harness uses, so a
sweep names datasets by string and tasks never open files.
"""

from __future__ import annotations

from torch.utils.data import Dataset


def build_dataset(name: str, split: str, **kwargs) -> Dataset:
    """A dataset split by name; unknown names get one clear error."""
    if name == "synthetic":
        from .synthetic import SyntheticBenchmark

        return SyntheticBenchmark(split=split, **kwargs)
    raise KeyError(f"unknown dataset {name!r}; available: synthetic")
