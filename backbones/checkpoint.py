"""The project's encoder-only checkpoint format: save, load with a strict key report, hash."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

FORMAT = "rsbench-encoder"
#: Parameters that belong to the task-side adapter, not to the pretrained encoder.
NON_ENCODER_PREFIXES = ("pyramid.",)
#: Per-modality input layers (``<prefix>.<modality>.*``): ViT patch embeddings, CNN stems.
MODALITY_MODULES = ("patch_embeds", "stems")


class CheckpointError(ValueError):
    """A checkpoint that does not fit the backbone it is loaded into."""


@dataclass
class LoadReport:
    """Keys the checkpoint lacked (left at their init) and keys it had that the model does not use."""

    missing: list[str]
    unexpected: list[str]
    #: Input layers of modalities this run does not feed (an RGB+DSM encoder on an RGB-only task).
    unused_modalities: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        missing, unexpected = len(self.missing), len(self.unexpected)
        return f"missing {missing} keys {self.missing[:5]}, unexpected {unexpected} {self.unexpected[:5]}"


def encoder_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The encoder's parameters and buffers, without the task-side pyramid."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith(NON_ENCODER_PREFIXES)}


def encoder_parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters of the encoder (the task-side pyramid left out): ``total``, ``shared`` (used by every
    modality) and, per modality, its own input layers (``MODALITY_MODULES``: a ViT's patch embedding, a CNN's
    stem), so an RGB-only and an RGB+DSM encoder of one architecture differ exactly by the DSM's entry."""
    counts = {"total": 0, "shared": 0}
    for name, param in model.named_parameters():
        if name.startswith(NON_ENCODER_PREFIXES):
            continue
        parts = name.split(".")
        owner = next((parts[i + 1] for i, part in enumerate(parts[:-2]) if part in MODALITY_MODULES), "shared")
        counts["total"] += param.numel()
        counts[owner] = counts.get(owner, 0) + param.numel()
    return counts


def save_encoder_checkpoint(model: nn.Module, path: str | os.PathLike, **meta) -> Path:
    """Write ``{"meta": ..., "state_dict": encoder}`` atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = encoder_state_dict(model)
    meta = {"format": FORMAT, "version": 1, "modalities": list(getattr(model, "modalities", ())),
            "parameters": int(sum(v.numel() for v in state.values())), **meta}  # fmt: skip
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"meta": meta, "state_dict": state}, tmp)
    os.replace(tmp, path)
    return path


def _read(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    st = path.stat()
    return _read_version(str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=2)
def _read_version(name: str, mtime_ns: int, size: int) -> dict:
    """One read per file version: ``backbones.build`` asks for the geometry first, then loads the weights."""
    path = Path(name)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise CheckpointError(f"checkpoint {path} could not be read ({exc.__class__.__name__}: {first}); "
                              "it is truncated or not a torch file") from exc  # fmt: skip
    if not isinstance(blob, dict) or blob.get("meta", {}).get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an rsbench encoder checkpoint; convert official weights first (see docs/checkpoints.md)"
        )
    return blob


def read_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` of an rsbench encoder checkpoint (method, arch, img_size, patch_size, ...)."""
    return dict(_read(Path(path))["meta"])


def shape_mismatches(state: dict, own: dict) -> list[str]:
    """``"key: (shape in file) vs (shape in model)"`` for every shared key whose shapes differ."""
    return [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]


def load_encoder_checkpoint(
    model: nn.Module, path: str | os.PathLike, allow_missing: tuple[str, ...] = ()
) -> LoadReport:
    """Load an rsbench encoder checkpoint into ``model``, refusing anything that does not fit.

    Shape mismatches, encoder keys the checkpoint lacks (unless they start with one of
    ``allow_missing``, e.g. the embedding of a modality the pretraining never saw) and
    keys the model does not have raise CheckpointError naming them.
    """
    path = Path(path)
    blob = _read(path)
    own = encoder_state_dict(model)
    state, unused = _drop_unused_modalities(blob["state_dict"], own, getattr(model, "modalities", None))
    wrong_shape = shape_mismatches(state, own)
    if wrong_shape:
        raise CheckpointError(f"{path}: shape mismatch for {len(wrong_shape)} keys, e.g. {wrong_shape[:3]}")
    report = LoadReport(
        missing=sorted(k for k in own if k not in state),
        unexpected=sorted(k for k in state if k not in own),
        unused_modalities=unused,
    )
    blocking = [k for k in report.missing if not k.startswith(allow_missing)]
    if blocking or report.unexpected:
        raise CheckpointError(f"{path} does not fit {getattr(model, 'backbone_name', 'the backbone')}: {report}")
    model.load_state_dict(state, strict=False)
    return report


def _drop_unused_modalities(state: dict, own: dict, modalities) -> tuple[dict, list[str]]:
    """Set aside the input layers of modalities the model was built without; only those, nothing else."""
    if modalities is None:
        return state, []
    keep, unused = {}, set()
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) > 2 and parts[0] in MODALITY_MODULES and parts[1] not in modalities and key not in own:
            unused.add(parts[1])
        else:
            keep[key] = value
    return keep, sorted(unused)


def file_hash(path: str | os.PathLike | None, length: int = 12) -> str:
    """Short sha256 of a file, used to tell checkpoints apart in result rows ("none" for no file)."""
    if path is None:
        return "none"
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]
