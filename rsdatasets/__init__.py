"""Data layer: the embedded synthetic benchmark, real-dataset readers and label-fraction splits.

``build_dataset(name, split, **kwargs)`` is the one entry point the harness uses, so a
sweep names datasets by string and tasks never open files. A dataset module registers its
class with ``@register_dataset("name")``; modules listed in ``_MODULES`` are imported on
first use, so importing the data layer stays cheap.
"""

from __future__ import annotations

import importlib

from torch.utils.data import Dataset

_DATASETS: dict[str, type] = {}
#: Modules that register datasets when imported (one file per dataset, TorchGeo style).
_MODULES = [
    "rsdatasets.synthetic",
    "rsdatasets.isprs",
    "rsdatasets.us3d",
    "rsdatasets.scene_classification",
    "rsdatasets.change_detection",
    "rsdatasets.detection",
]


def register_dataset(name: str):
    """Class decorator: make a dataset available to ``build_dataset`` and sweep specs by name."""

    def decorator(cls: type) -> type:
        _DATASETS[name] = cls
        return cls

    return decorator


def list_datasets() -> list[str]:
    """Names of the registered datasets."""
    for module in _MODULES:
        importlib.import_module(module)
    return sorted(_DATASETS)


def build_dataset(name: str, split: str, **kwargs) -> Dataset:
    """A dataset split by name; unknown names get one clear error."""
    available = list_datasets()
    if name not in _DATASETS:
        raise KeyError(f"unknown dataset {name!r}; available: {', '.join(available)}")
    return _DATASETS[name](split=split, **kwargs)
