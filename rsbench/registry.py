"""The project's registries: mmengine ``Registry`` objects with lazy ``locations``, duplicates refused.

This is the bottom of the import graph: it imports only mmengine, and every layer registers into
it. ``TASKS`` (downstream tasks, ``@register_task``) and ``BENCHMARK_DATASETS`` (dataset readers,
``@register_dataset``) are the harness's own; the children of mmengine's roots (scope ``rsbench``)
hold what configs name by string (``type="MSSDF"`` with ``default_scope="rsbench"``): pretraining
methods (``MODELS``), hooks, the optimiser constructor, pretraining pools, the runner. A registry
imports its ``locations`` the first time a name is looked up in it, so neither a config nor the
harness needs an import line; modules named in ``$RSBENCH_PLUGINS`` (comma separated) are imported
too (:func:`import_plugins`), so a plugin file adds a task, a dataset, a method or a backbone with no
edit to the project. The location strings name the modules that register here: that is how
mmengine finds them, not an import. Every mmengine root registry gets an ``rsbench`` child here, in
one place, because mmengine looks the scope up in each of them (and warns for each one that lacks it).
"""

import importlib
import os

import mmengine.registry as _mmengine_registry
from mmengine.registry import Registry

_ROOTS = {
    name: root
    for name, root in vars(_mmengine_registry).items()
    if isinstance(root, Registry) and root.parent is None and name.isupper()
}
#: Modules that register into each child when imported (mmengine imports them lazily, on first lookup).
_LOCATIONS = {
    "MODELS": ["backbones.mssdf.model", "backbones.mae.model", "backbones.cmid.model", "backbones.supervised.model"],
    "HOOKS": ["backbones.hooks", "backbones.cmid.hooks", "benchmark.pretrain"],
    "OPTIM_WRAPPER_CONSTRUCTORS": ["backbones.optim"],
    "RUNNERS": ["benchmark.pretrain"],
    "DATASETS": ["rsdatasets.pretrain_pool"],
}
_CHILDREN = {
    name: root.children.get("rsbench")
    or Registry(root.name, parent=root, scope="rsbench", locations=_LOCATIONS.get(name, []))
    for name, root in _ROOTS.items()
}
MODELS = _CHILDREN["MODELS"]
#: Downstream tasks by name (``tasks.base.register_task``).
TASKS = Registry("task", scope="rsbench", locations=[
    "tasks.segmentation", "tasks.classification", "tasks.detection", "tasks.change_detection", "tasks.depth",
])  # fmt: skip
#: Dataset readers by name (``rsdatasets.register_dataset``): the synthetic benchmark and the real datasets.
BENCHMARK_DATASETS = Registry("benchmark dataset", scope="rsbench", locations=[
    "rsdatasets.synthetic", "rsdatasets.isprs", "rsdatasets.us3d", "rsdatasets.scene_classification",
    "rsdatasets.change_detection", "rsdatasets.detection",
    "rsdatasets.image_folder", "rsdatasets.mmseg_segmentation", "rsdatasets.change_pairs", "rsdatasets.voc_detection",
])  # fmt: skip
def import_plugins() -> None:
    """Import the modules named in ``$RSBENCH_PLUGINS``; they register whatever they define (an imported module
    is not imported again: Python's module cache makes a second call a lookup)."""
    for module in filter(None, (m.strip() for m in os.environ.get("RSBENCH_PLUGINS", "").split(","))):
        importlib.import_module(module)


def registered(registry: Registry) -> dict:
    """name -> class of ``registry`` after importing its locations and the plugins."""
    import_plugins()
    registry.import_from_location()
    return dict(registry.module_dict)


def lookup(registry: Registry, name: str, kind: str, listing: str) -> type:
    """The class registered as ``name``; an unknown name is a ``KeyError`` with close matches and ``listing``
    (e.g. "Available") followed by every registered name."""
    import difflib

    known = registered(registry)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown {kind} {name!r}.{hint} {listing}: {', '.join(sorted(known))}")
    return known[name]

HOOKS = _CHILDREN["HOOKS"]
RUNNERS = _CHILDREN["RUNNERS"]
DATASETS = _CHILDREN["DATASETS"]
OPTIM_WRAPPER_CONSTRUCTORS = _CHILDREN["OPTIM_WRAPPER_CONSTRUCTORS"]

__all__ = ["BENCHMARK_DATASETS", "DATASETS", "HOOKS", "MODELS", "OPTIM_WRAPPER_CONSTRUCTORS", "RUNNERS", "TASKS",
           "import_plugins", "registered"]
