"""The project's mmengine registries (scope ``rsbench``), children of mmengine's own.

This is the bottom of the import graph: it imports only mmengine, and every layer registers
into it (``backbones`` its pretraining methods, hooks and optimiser constructor, ``rsdatasets``
its pretraining pools, ``benchmark`` its runner). Configs name project classes by string
(``type="MSSDF"``) with ``default_scope="rsbench"``; mmengine imports this module for that scope,
and imports the ``locations`` of a registry the first time a name is looked up in it, so a
config needs no import line. Every mmengine root registry gets an ``rsbench`` child here, in one
place, because mmengine looks the scope up in each of them (and warns for each one that lacks it).
"""

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
HOOKS = _CHILDREN["HOOKS"]
RUNNERS = _CHILDREN["RUNNERS"]
DATASETS = _CHILDREN["DATASETS"]
OPTIM_WRAPPER_CONSTRUCTORS = _CHILDREN["OPTIM_WRAPPER_CONSTRUCTORS"]

__all__ = ["DATASETS", "HOOKS", "MODELS", "OPTIM_WRAPPER_CONSTRUCTORS", "RUNNERS"]
