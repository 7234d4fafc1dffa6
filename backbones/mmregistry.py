"""mmengine registries of the project (scope ``rsbench``), children of mmengine's own.

Configs name project classes by string (``type="MSSDF"``) with ``default_scope="rsbench"``;
the parents let the same configs use every mmengine, mmseg and mmdet class too. Every
mmengine root registry gets an ``rsbench`` child here, in one place, because mmengine looks
the scope up in each of them (and warns for each one that lacks it).
"""

import mmengine.registry as _mmengine_registry
from mmengine.registry import Registry

_ROOTS = {
    name: root
    for name, root in vars(_mmengine_registry).items()
    if isinstance(root, Registry) and root.parent is None and name.isupper()
}
_LOCATIONS = {
    "MODELS": ["backbones.mssdf.model", "backbones.mae.model"],
    "HOOKS": ["backbones.hooks"],
    "OPTIM_WRAPPER_CONSTRUCTORS": ["backbones.optim"],
    "RUNNERS": ["benchmark.pretrain"],
    "DATASETS": ["benchmark.data.pretrain_pool"],
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
