"""The project's registries, all mmengine ``Registry`` objects, and the one rule by which they are filled.

This is the bottom of the import graph: it imports only mmengine, and every layer registers into it.

* ``BACKBONES`` (``@register_backbone``), ``CONVERTERS`` (``@register_converter``), ``TASKS``
  (``@register_task``) and ``BENCHMARK_DATASETS`` (``@register_dataset``) are the harness's own;
* the ``rsbench`` children of mmengine's roots hold what configs name by string (``type="MSSDF"`` with
  ``default_scope="rsbench"``): pretraining methods (``MODELS``), hooks, the optimiser constructor,
  pretraining pools, the pretraining runner. Every mmengine root gets its child here, in one place,
  because mmengine looks the scope up in each of them (and warns for each one that lacks it).

**Discovery, the same for every registry.** A package whose modules register declares it once, in its
``__init__``: ``scan_package(__name__, TASKS)``. The first lookup in a registry (``lookup``, ``registered``,
or mmengine's own ``get`` / ``build``) imports every module of the packages declared for it (names starting
with ``_`` excepted) and the modules named in ``$RSBENCH_PLUGINS`` (comma separated). So a new file in the
package, or a plugin file named there, registers itself with no edit anywhere else. Nothing here names a
package of an upper layer: packages declare themselves, and a layer that registers its own classes (the
pretraining runner) imports what it builds from before mmengine looks anything up.
"""

from __future__ import annotations

import difflib
import importlib
import os
import pkgutil

import mmengine.registry as _mmengine_registry
from mmengine.registry import Registry


class ProjectRegistry(Registry):
    """An mmengine ``Registry`` whose lookups first import what registers into it (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._packages: list[str] = []  # declared by scan_package
        self._scanned: set[str] = set()

    def import_from_location(self) -> None:
        super().import_from_location()
        for package in [p for p in self._packages if p not in self._scanned]:
            self._scanned.add(package)  # first: a module imported by the scan may look up this registry
            _import_package(package)
        import_plugins()


def _import_package(package: str) -> None:
    """Import every module of ``package`` and of its sub-packages, except private ones (``_name``)."""
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, f"{package}.", onerror=lambda name: None):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            importlib.import_module(info.name)


def scan_package(package: str, *registries: ProjectRegistry) -> None:
    """Declare that modules of ``package`` register into ``registries``: their first lookup imports them all."""
    for registry in registries:
        if package not in registry._packages:
            registry._packages.append(package)


def import_plugins() -> None:
    """Import the modules named in ``$RSBENCH_PLUGINS``; they register whatever they define (an imported module
    is not imported again: Python's module cache makes a second call a lookup)."""
    for module in filter(None, (m.strip() for m in os.environ.get("RSBENCH_PLUGINS", "").split(","))):
        importlib.import_module(module)


def registered(registry: Registry) -> dict:
    """name -> what ``registry`` holds, after discovery (the declared packages and the plugins)."""
    registry.import_from_location()
    return dict(registry.module_dict)


def lookup(registry: Registry, name: str, kind: str, hint: str | None = None, error: type = KeyError):
    """What ``registry`` holds under ``name``. An unknown name raises ``error`` (a ``KeyError`` by default) naming
    close matches, then ``hint`` (default: every registered name)."""
    known = registered(registry)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        near = f" Did you mean {', '.join(close)}?" if close else ""
        hint = hint or "Known: " + ", ".join(sorted(known))
        raise error(f"unknown {kind} {name!r}.{near} {hint}")
    return known[name]


_ROOTS = {
    name: root
    for name, root in vars(_mmengine_registry).items()
    if isinstance(root, Registry) and root.parent is None and name.isupper()
}
_CHILDREN = {
    name: root.children.get("rsbench") or ProjectRegistry(root.name, parent=root, scope="rsbench")
    for name, root in _ROOTS.items()
}
MODELS = _CHILDREN["MODELS"]
HOOKS = _CHILDREN["HOOKS"]
RUNNERS = _CHILDREN["RUNNERS"]
DATASETS = _CHILDREN["DATASETS"]
OPTIM_WRAPPER_CONSTRUCTORS = _CHILDREN["OPTIM_WRAPPER_CONSTRUCTORS"]
#: Downstream tasks by name (``tasks.register_task``).
TASKS = ProjectRegistry("task", scope="rsbench")
#: Dataset readers by name (``rsdatasets.register_dataset``): the synthetic benchmark and the real datasets.
BENCHMARK_DATASETS = ProjectRegistry("benchmark dataset", scope="rsbench")
#: Encoders by name (``backbones.register_backbone``); each entry carries its method, arch and default config.
BACKBONES = ProjectRegistry("backbone", scope="rsbench")
#: Converters of official weights by name (``backbones.convert.register_converter``).
CONVERTERS = ProjectRegistry("converter", scope="rsbench")

__all__ = ["BACKBONES", "BENCHMARK_DATASETS", "CONVERTERS", "DATASETS", "HOOKS", "MODELS", "OPTIM_WRAPPER_CONSTRUCTORS",
           "RUNNERS", "TASKS", "ProjectRegistry", "import_plugins", "lookup", "registered", "scan_package"]  # fmt: skip
