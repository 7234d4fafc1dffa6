"""Data layer: the embedded synthetic benchmark and readers of the real datasets in their original layouts.

One file per dataset (TorchGeo style), registered with ``@register_dataset("name")`` in the project's
``BENCHMARK_DATASETS`` registry (``rsbench.registry``: every module of this package registers itself on the first
lookup, duplicates refused, plugins from ``$RSBENCH_PLUGINS``), so a new dataset is one file here.
``build_dataset(name, split, **kwargs)`` is the one entry point the harness uses, so a sweep names datasets
by string and tasks never open files; what tasks may rely on beyond dict samples is ``rsdatasets.protocol``.
May import ``rsbench`` only (not ``backbones``, ``tasks`` or ``benchmark``).
"""

from __future__ import annotations

import inspect

from torch.utils.data import Dataset

from rsbench.registry import BENCHMARK_DATASETS, DATASETS, lookup, registered, scan_package

scan_package(__name__, BENCHMARK_DATASETS, DATASETS)


def register_dataset(name: str):
    """Class decorator: make a dataset available to ``build_dataset`` and sweep specs by name (once)."""

    def decorator(cls: type) -> type:
        BENCHMARK_DATASETS.register_module(name=name, module=cls)
        return cls

    return decorator


def dataset_class(name: str) -> type:
    """The registered class of ``name``; unknown names get one clear error with close matches."""
    return lookup(BENCHMARK_DATASETS, name, "dataset", "Available: " + ", ".join(list_datasets()))


def list_datasets() -> list[str]:
    """Names of the registered datasets (built-in and plugins)."""
    return sorted(registered(BENCHMARK_DATASETS))


def build_dataset(name: str, split: str, **kwargs) -> Dataset:
    """A dataset split by name; an unknown name or option gets one clear error naming what exists."""
    cls = dataset_class(name)
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            known = sorted(k for k in params if k not in ("self", "split"))
            raise ValueError(f"unknown option(s) {unknown} for dataset {name!r}; it takes {known}")
    return cls(split=split, **kwargs)
