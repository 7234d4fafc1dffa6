"""Backbone registry: ``backbones.build(name, modalities, checkpoint)`` and ``list_backbones()``.

Importing this package registers the built-in backbones; third-party modules named in
``$RSBENCH_PLUGINS`` are imported on first use of the registry.
"""

from . import cnn as _cnn  # noqa: F401  (registers random_init_resnet50, random_init_swin_b)
from . import random_init  # noqa: F401  (registers random_init_*)
from . import timm_convert as _timm_convert  # noqa: F401  (registers timm_vit_*)
from .checkpoint import CheckpointError, file_hash, load_encoder_checkpoint, save_encoder_checkpoint
from .cmid import backbone as _cmid_backbone  # noqa: F401  (registers cmid_*)
from .mae import backbone as _mae_backbone  # noqa: F401  (registers mae_*)
from .mssdf import backbone as _mssdf_backbone  # noqa: F401  (registers mssdf_*)
from .registry import BackboneSpec, UnknownBackboneError, build, get_spec, list_backbones, register_backbone

__all__ = [
    "BackboneSpec",
    "CheckpointError",
    "UnknownBackboneError",
    "build",
    "file_hash",
    "get_spec",
    "list_backbones",
    "load_encoder_checkpoint",
    "register_backbone",
    "save_encoder_checkpoint",
]
