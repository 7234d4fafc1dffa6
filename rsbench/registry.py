"""Imported by mmengine for ``default_scope="rsbench"``: the project's registries and everything they hold."""

from backbones.mmregistry import DATASETS, HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS, RUNNERS

__all__ = ["DATASETS", "HOOKS", "MODELS", "OPTIM_WRAPPER_CONSTRUCTORS", "RUNNERS"]
