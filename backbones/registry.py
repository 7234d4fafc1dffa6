"""A timm-style decorator registry for backbones: adding one is a single decorated builder."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import os
import pkgutil
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from rsbench.registry import import_plugins


class UnknownBackboneError(KeyError):
    """Raised for a backbone name that is not registered."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


@dataclass(frozen=True)
class BackboneSpec:
    """What the registry knows about a backbone before building it."""

    name: str
    builder: Callable[..., nn.Module]
    method: str  # pretraining method: random_init, mssdf, cmid, mae, ...
    arch: str  # encoder architecture, e.g. vit_t16
    default_cfg: dict = field(default_factory=dict)
    description: str = ""


_REGISTRY: dict[str, BackboneSpec] = {}
#: Builder arguments a checkpoint records (``checkpoint_geometry()``) and ``build`` passes back.
GEOMETRY_KEYS = ("img_size", "patch_size", "depth", "fusion")
_PLUGINS_LOADED = False


def register_backbone(name: str, *, method: str, arch: str, **default_cfg) -> Callable:
    """Register ``builder(modalities=..., **kw) -> nn.Module`` under ``name``.

    ``default_cfg`` travels with the registration (input size, patch size, ...) so callers
    ask the registry instead of keeping their own tables.
    """

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"backbone {name!r} is already registered by {_REGISTRY[name].builder.__module__}")
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = BackboneSpec(name, builder, method, arch, dict(default_cfg), doc[0] if doc else "")
        return builder

    return decorator


def load_plugins() -> None:
    """Import, once, every backbone module under backbones/ and the modules named in ``$RSBENCH_PLUGINS``.

    A module that calls ``register_backbone`` on import adds its backbones with no change
    to the harness: a new ``backbones/<name>.py`` (or ``backbones/<name>/backbone.py``) file, or
    a module anywhere on the path named in ``$RSBENCH_PLUGINS`` (comma separated).
    """
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for module in _builtin_backbone_modules():
        importlib.import_module(module)
    import_plugins()


def _builtin_backbone_modules() -> list[str]:
    """Every module of this package, and ``<subpackage>.backbone``: a new file under backbones/ registers
    itself with no import line elsewhere (the explicit imports in ``__init__`` are only the built-in set)."""
    package = __name__.rpartition(".")[0]
    root = Path(__file__).parent
    found = []
    for info in pkgutil.iter_modules([str(root)]):
        if info.ispkg:
            if (root / info.name / "backbone.py").is_file():
                found.append(f"{package}.{info.name}.backbone")
        elif not info.name.startswith("_"):
            found.append(f"{package}.{info.name}")
    return found


def list_backbones(pattern: str = "*") -> list[str]:
    """Sorted registered names matching a shell-style ``pattern``."""
    load_plugins()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_spec(name: str) -> BackboneSpec:
    """The registration of ``name``; an UnknownBackboneError names close matches."""
    load_plugins()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownBackboneError(
            f"unknown backbone {name!r}.{hint} Run `rsbench backbones` to list the registered ones."
        )
    return _REGISTRY[name]


def build(
    name: str,
    modalities: Sequence[str] = ("rgb", "dsm"),
    checkpoint: str | os.PathLike | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered backbone, optionally loading an encoder checkpoint.

    The module maps ``{modality: B x C x H x W}`` to a list of four feature maps at
    strides 4, 8, 16 and 32, and exposes ``out_channels``, ``modalities`` and, where it
    applies, ``patch_size``.
    """
    spec = get_spec(name)
    meta = {}
    if checkpoint is not None:
        from .checkpoint import read_meta

        meta = {k: v for k, v in read_meta(checkpoint).items() if k in GEOMETRY_KEYS}
    # Geometry recorded in the checkpoint beats the registration default; explicit kwargs beat both.
    cfg = {**spec.default_cfg, **meta, **kwargs}
    model = spec.builder(modalities=tuple(modalities), **cfg)
    model.backbone_name = name
    model.method = spec.method
    # The arch a row records says what was built: a ViT-Ti run at patch 8 is vit_t8, not the registered vit_t16.
    patch = cfg.get("patch_size")
    model.arch = re.sub(r"\d+$", str(patch), spec.arch) if patch and re.match(r"vit_\w\d+$", spec.arch) else spec.arch
    if checkpoint is not None:
        from .checkpoint import load_encoder_checkpoint

        model.load_report = load_encoder_checkpoint(model, checkpoint)
    return model
