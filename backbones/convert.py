"""One framework for the converters of official weights: a registry by name, shared helpers, one report.

``rsbench convert NAME SRC DST`` looks NAME up in ``rsbench.registry.CONVERTERS``; each converter module
(``backbones/<method>/convert.py``, ``backbones/timm_convert.py``, or a plugin in ``$RSBENCH_PLUGINS``: the
registries' one discovery rule finds it) registers a function with :func:`register_converter` that reads SRC, converts
it, loads it strictly into the matching encoder, saves an rsbench encoder checkpoint to DST and returns a
:class:`ConversionReport`, which the CLI prints the same way for every converter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from rsbench.registry import CONVERTERS, lookup, registered

from .checkpoint import CheckpointError

#: The rsbench ViT size of each embedding width (timm / MAE / MSSDF widths).
ARCH_BY_WIDTH = {192: "vit_t16", 384: "vit_s16", 768: "vit_b16", 1024: "vit_l16"}


@dataclass
class ConversionReport:
    """What a conversion did: where from, into which encoder, and every key it derived, dropped or initialised."""

    method: str
    source: str
    destination: str
    layout: str = ""
    arch: str = ""
    depth: int | None = None
    backbone: str = ""
    derived: list[str] = field(default_factory=list)  # keys computed from others (e.g. a DSM embedding)
    dropped: list[str] = field(default_factory=list)  # source keys that are not the encoder (decoders, heads)
    initialised: list[str] = field(default_factory=list)  # encoder keys the source lacks, left at their init
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        parts = [f"{self.layout} layout" if self.layout else "", self.arch]
        head = f"{self.source} ({', '.join(p for p in parts if p)}"
        head += f", depth {self.depth})" if self.depth else ")"
        lines = [f"{head} -> {self.destination}"]
        lines += [f"  derived: {line}" for line in self.derived]
        lines += [f"  initialised, not loaded: {line}" for line in self.initialised]
        if self.dropped:
            lines.append(f"  dropped source keys (not encoder): {len(self.dropped)}, e.g. {self.dropped[:4]}")
        lines.append(f"  missing {len(self.missing)}, unexpected {len(self.unexpected)}; "
                     f"build it as --backbone {self.backbone}:{self.destination}")  # fmt: skip
        return lines


def register_converter(name: str) -> Callable:
    """Decorator: ``fn(src, dst, img_size=None, patch_size=None, dsm_init="rgb_sum", teacher=False)`` under ``name``."""

    def decorator(fn: Callable[..., ConversionReport]) -> Callable[..., ConversionReport]:
        existing = CONVERTERS.module_dict.get(name)
        if existing is not None and existing is not fn:
            raise ValueError(f"converter {name!r} is already registered by {existing.__module__}")
        if existing is None:
            CONVERTERS.register_module(name=name, module=fn)
        return fn

    return decorator


def list_converters() -> list[str]:
    """Names of the registered converters (built-in and plugins)."""
    return sorted(registered(CONVERTERS))


def convert(name: str, src, dst, **options) -> ConversionReport:
    """Run the converter ``name``; an unknown name is one clear error with close matches and the known ones."""
    return lookup(CONVERTERS, name, "converter")(src, dst, **options)


def read_official(src: str | os.PathLike) -> object:
    """``torch.load`` of an official file (they pickle their arguments, so not weights-only); one clear error."""
    try:
        return torch.load(src, map_location="cpu", weights_only=False)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise CheckpointError(f"{src} could not be read ({exc.__class__.__name__}: {first})") from exc


def unwrap_state_dict(blob: Mapping) -> dict[str, Tensor]:
    """The state dict inside a checkpoint (``model`` / ``state_dict`` / ``module`` wrappers, DDP's ``module.``)."""
    if not isinstance(blob, Mapping):
        raise CheckpointError(f"expected a state dict, found a {type(blob).__name__}; save model.state_dict() instead")
    for key in ("model", "state_dict", "module"):
        if key in blob and isinstance(blob[key], Mapping):
            blob = blob[key]
            break
    if not all(isinstance(v, Tensor) for v in blob.values()):
        raise CheckpointError(
            "no state dict found: expected tensors, or a dict holding them under 'model'/'state_dict'"
        )
    if blob and all(k.startswith("module.") for k in blob):
        blob = {k.removeprefix("module."): v for k, v in blob.items()}
    return dict(blob)


def arch_of_width(width: int, src) -> str:
    if width not in ARCH_BY_WIDTH:
        raise CheckpointError(f"{src}: embed dim {width} matches no rsbench ViT size ({sorted(ARCH_BY_WIDTH)})")
    return ARCH_BY_WIDTH[width]
