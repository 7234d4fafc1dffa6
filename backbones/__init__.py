"""Backbone registry: ``backbones.build(name, modalities, checkpoint)`` and ``list_backbones()``.

Every module of this package registers what it defines (backbones, converters, pretraining methods, hooks,
the optimiser constructor) when a registry of ``rsbench.registry`` is first looked up; third-party modules
named in ``$RSBENCH_PLUGINS`` too. A new file here is found with no import line anywhere.
May import ``rsbench`` only (not ``rsdatasets``, ``tasks`` or ``benchmark``).
"""

from rsbench.registry import BACKBONES, CONVERTERS, HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS, scan_package

from .checkpoint import CheckpointError, file_hash, load_encoder_checkpoint, save_encoder_checkpoint
from .registry import (
    BackboneEntry,
    BackboneSpec,
    UnknownBackboneError,
    build,
    get_entry,
    get_spec,
    list_backbones,
    register_backbone,
)

scan_package(__name__, BACKBONES, CONVERTERS, MODELS, HOOKS, OPTIM_WRAPPER_CONSTRUCTORS)

__all__ = [
    "BackboneEntry",
    "BackboneSpec",
    "CheckpointError",
    "UnknownBackboneError",
    "build",
    "file_hash",
    "get_entry",
    "get_spec",
    "list_backbones",
    "load_encoder_checkpoint",
    "register_backbone",
    "save_encoder_checkpoint",
]
