"""Registries the harness registers into (defined with the others in ``backbones.mmregistry``)."""

from backbones.mmregistry import DATASETS, RUNNERS

__all__ = ["DATASETS", "RUNNERS"]
