"""A timm-style decorator registry for backbones: adding one is a single decorated builder.

The entries live in ``rsbench.registry.BACKBONES`` (an mmengine ``Registry``, filled by the project's one
discovery rule: every module of this package, and the modules named in ``$RSBENCH_PLUGINS``, register
themselves on the first lookup). Each entry is a :class:`BackboneEntry`, a callable that builds the encoder
and carries what the registration declared (method, arch, default config), so callers ask the registry.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch import nn

from rsbench.registry import BACKBONES, lookup, registered


class UnknownBackboneError(KeyError):
    """Raised for a backbone name that is not registered."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


@dataclass(frozen=True)
class BackboneEntry:
    """What the registry knows about a backbone before building it; calling it builds the encoder."""

    name: str
    builder: Callable[..., nn.Module]
    method: str  # pretraining method: random_init, mssdf, cmid, mae, ...
    arch: str  # encoder architecture, e.g. vit_t16
    default_cfg: dict = field(default_factory=dict)
    description: str = ""

    def __call__(self, *args, **kwargs) -> nn.Module:
        return self.builder(*args, **kwargs)


#: The entry's former name (it is not a sweep spec).
BackboneSpec = BackboneEntry
#: Builder arguments a checkpoint records (``checkpoint_geometry()``) and ``build`` passes back.
GEOMETRY_KEYS = ("img_size", "patch_size", "depth", "fusion")


def register_backbone(name: str, *, method: str, arch: str, **default_cfg) -> Callable:
    """Register ``builder(modalities=..., **kw) -> nn.Module`` under ``name``.

    ``default_cfg`` travels with the registration (input size, patch size, ...) so callers
    ask the registry instead of keeping their own tables.
    """

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        existing = BACKBONES.module_dict.get(name)
        if existing is not None:
            if existing.builder is builder:
                return builder
            raise ValueError(f"backbone {name!r} is already registered by {existing.builder.__module__}")
        doc = (builder.__doc__ or "").strip().splitlines()
        entry = BackboneEntry(name, builder, method, arch, dict(default_cfg), doc[0] if doc else "")
        BACKBONES.register_module(name=name, module=entry)
        return builder

    return decorator


def list_backbones(pattern: str = "*") -> list[str]:
    """Sorted registered names matching a shell-style ``pattern``."""
    return sorted(n for n in registered(BACKBONES) if fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> BackboneEntry:
    """The registration of ``name``; an UnknownBackboneError names close matches."""
    return lookup(BACKBONES, name, "backbone", "Run `rsbench backbones` to list the registered ones.",
                  UnknownBackboneError)  # fmt: skip


#: The former name of :func:`get_entry`.
get_spec = get_entry


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
    entry = get_entry(name)
    meta = {}
    if checkpoint is not None:
        from .checkpoint import read_meta

        meta = {k: v for k, v in read_meta(checkpoint).items() if k in GEOMETRY_KEYS}
    # Geometry recorded in the checkpoint beats the registration default; explicit kwargs beat both.
    cfg = {**entry.default_cfg, **meta, **kwargs}
    model = entry.builder(modalities=tuple(modalities), **cfg)
    model.backbone_name = name
    model.method = entry.method
    # The arch a row records says what was built: a ViT-Ti run at patch 8 is vit_t8, not the registered vit_t16.
    patch = cfg.get("patch_size")
    vit = patch and re.match(r"vit_\w\d+$", entry.arch)
    model.arch = re.sub(r"\d+$", str(patch), entry.arch) if vit else entry.arch
    if checkpoint is not None:
        from .checkpoint import load_encoder_checkpoint

        model.load_report = load_encoder_checkpoint(model, checkpoint)
    return model
