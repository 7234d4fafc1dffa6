"""Convert the official CMID releases (ResNet-50, Swin-B; github.com/NJU-LHRS/official-CMID) to rsbench encoders.

Layouts accepted, as the official code writes them:

- "backbone only" files: a plain state dict of the encoder (the repository's ``extract.py``
  keeps the ``online_encoder.model.`` keys of a pretraining checkpoint and strips that prefix);
- full pretraining checkpoints: ``{"model": {"online_encoder.model.*", "branch_encoder.*", ...}}``
  (``teacher=True`` takes the momentum ``branch_encoder``);
- either of them with a ``module.`` (DDP), ``backbone.`` or ``encoder.`` prefix.

The ResNet-50 is timm's ``resnet50`` (``conv1``, ``bn1``, ``layer1.0.conv1`` ...), so only the
stem moves. The Swin-B is the mmcls-style ``SwinTransformer`` of the official code
(``stages.0.blocks.0.attn.w_msa.qkv``, ``ffn.layers.0.0``, ``stages.0.downsample.reduction``,
``norm3``); its patch merging concatenates the 2 x 2 neighbours in ``nn.Unfold`` order
(channel-major), timm's in the original Swin order, so the merging weights are permuted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from ..checkpoint import CheckpointError
from ..convert import ConversionReport, read_official, register_converter

_WRAPPERS = ("module.", "backbone.", "encoder.")
#: mmcls Swin block names -> timm names inside one block.
_SWIN_BLOCK = {
    "norm1": "norm1", "attn.w_msa.relative_position_bias_table": "attn.relative_position_bias_table",
    "attn.w_msa.qkv": "attn.qkv", "attn.w_msa.proj": "attn.proj", "norm2": "norm2",
    "ffn.layers.0.0": "mlp.fc1", "ffn.layers.1": "mlp.fc2",
}  # fmt: skip


def _state(blob: Mapping) -> dict[str, Tensor]:
    for key in ("model", "state_dict"):
        if key in blob and isinstance(blob[key], Mapping):
            return dict(blob[key])
    return dict(blob)


def encoder_keys(blob: Mapping, teacher: bool = False) -> tuple[dict[str, Tensor], str]:
    """The encoder's own keys (prefixes removed) and a word on where they came from."""
    state = _state(blob)
    for wrapper in _WRAPPERS:  # repeated wrappers, e.g. module.backbone.
        if state and all(k.startswith(wrapper) for k in state):
            state = {k[len(wrapper) :]: v for k, v in state.items()}
    prefix = "branch_encoder." if teacher else "online_encoder.model."
    if any(k.startswith("online_encoder.model.") for k in state):
        picked = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not picked:
            raise CheckpointError("teacher=True but the checkpoint has no 'branch_encoder.*' keys")
        return picked, f"pretraining checkpoint ({prefix}*)"
    if teacher:
        raise CheckpointError("teacher=True needs a full pretraining checkpoint; this is a backbone-only file")
    return state, "backbone only"


def detect_arch(state: Mapping[str, Tensor]) -> str:
    """``resnet50`` or ``swin_b`` from the keys, else a CheckpointError naming what was found."""
    if "layer1.0.conv1.weight" in state and "conv1.weight" in state:
        return "resnet50"
    if "patch_embed.projection.weight" in state and any(k.startswith("stages.") for k in state):
        return "swin_b"
    raise CheckpointError(
        "not an official CMID backbone: expected timm ResNet keys ('conv1.weight', 'layer1.*') or mmcls Swin keys "
        f"('patch_embed.projection.weight', 'stages.*'), found e.g. {sorted(state)[:5]}"
    )


def unfold_to_timm_order(x: Tensor, dim: int) -> Tensor:
    """Reorder a patch-merging axis of size 4C from ``nn.Unfold`` order (c, row, col) to timm's (col, row, c)."""
    c = x.shape[dim] // 4
    index = torch.arange(4 * c).view(c, 2, 2).permute(2, 1, 0).reshape(-1)  # timm position -> unfold position
    return x.index_select(dim, index)


def _convert_resnet(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], set[str]]:
    out = {"stems.rgb.weight": state["conv1.weight"]}
    used = {"conv1.weight"}
    for key, value in state.items():
        if key.startswith(("bn1.", "layer")):
            out[f"net.{key}"] = value
            used.add(key)
    return out, used


def _convert_swin(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], set[str]]:
    out, used = {}, set()

    def take(src: str, dst: str) -> None:
        out[dst] = state[src]
        used.add(src)

    take("patch_embed.projection.weight", "stems.rgb.weight")
    take("patch_embed.projection.bias", "stems.rgb.bias")
    for p in ("weight", "bias"):
        take(f"patch_embed.norm.{p}", f"net.patch_embed.norm.{p}")
        take(f"norm3.{p}", f"net.norm.{p}")
    for key in state:
        m = re.match(r"stages\.(\d+)\.blocks\.(\d+)\.(.+)\.(weight|bias|relative_position_bias_table)$", key)
        if m:
            stage, block, name, param = m.groups()
            name = name if param != "relative_position_bias_table" else f"{name}.{param}"
            if name in _SWIN_BLOCK:
                suffix = "" if param == "relative_position_bias_table" else f".{param}"
                take(key, f"net.layers.{stage}.blocks.{block}.{_SWIN_BLOCK[name]}{suffix}")
        elif key.endswith("relative_position_index"):
            used.add(key)  # a fixed table timm rebuilds (the same indexing)
        m = re.match(r"stages\.(\d+)\.downsample\.(norm\.weight|norm\.bias|reduction\.weight)$", key)
        if m:  # mmcls merges at the end of stage i, timm at the start of stage i + 1
            dst = f"net.layers.{int(m.group(1)) + 1}.downsample.{m.group(2)}"
            out[dst] = unfold_to_timm_order(state[key], 1 if m.group(2) == "reduction.weight" else 0)
            used.add(key)
    return out, used


def convert_official_cmid(blob: Mapping, dsm_init: str = "rgb_sum", teacher: bool = False) -> tuple[dict, dict]:
    """Map an official CMID ResNet-50 / Swin-B state dict onto ``MultiModalResNet`` / ``MultiModalSwin`` keys.

    Returns the converted state dict and a report: arch, source, what was derived rather than
    copied (the DSM stem) and which source keys were left unused (e.g. a classifier).
    ``dsm_init="rgb_sum"`` gives the 1-channel DSM stem the RGB filters summed over colour;
    ``"none"`` converts an RGB-only encoder.
    """
    state, source = encoder_keys(blob, teacher)
    arch = detect_arch(state)
    try:
        out, used = _convert_resnet(state) if arch == "resnet50" else _convert_swin(state)
    except KeyError as exc:
        raise CheckpointError(f"official CMID {arch} checkpoint lacks key {exc.args[0]!r}") from exc
    derived = []
    if dsm_init == "rgb_sum":
        for param in ("weight", "bias"):
            if f"stems.rgb.{param}" in out:
                rgb = out[f"stems.rgb.{param}"]
                out[f"stems.dsm.{param}"] = rgb.sum(1, keepdim=True) if param == "weight" else rgb
        derived.append("stems.dsm (RGB filters summed over colour)")
    elif dsm_init != "none":
        raise ValueError(f"dsm_init {dsm_init!r} is not one of 'rgb_sum', 'none'")
    unused = sorted(k for k in state if k not in used)
    return out, {"arch": arch, "source": source, "derived": derived, "unused": unused}


def build_target(arch: str, modalities: tuple[str, ...], device=None):
    """The rsbench encoder an official checkpoint of ``arch`` converts into."""
    from ..cnn import MultiModalResNet, MultiModalSwin

    kw = {"device": device} if device is not None else {}
    if arch == "resnet50":
        return MultiModalResNet("resnet50", modalities, **kw)
    return MultiModalSwin("swin_base_patch4_window7_224", modalities, **kw)


def check_fits(state: Mapping[str, Tensor], own: Mapping[str, Tensor], src) -> None:
    """Refuse converted weights that do not fit the target's state dict ``own``: one CheckpointError line
    naming shape mismatches, or missing and unexpected keys."""
    from ..checkpoint import shape_mismatches

    wrong = shape_mismatches(state, own)
    if wrong:
        raise CheckpointError(f"{src}: shape mismatch for {len(wrong)} keys (another depth or width than the "
                              f"target?), e.g. {wrong[:2]}")  # fmt: skip
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{src}: converted weights do not fit: missing {len(missing)} keys {missing[:3]}, "
                              f"unexpected {len(unexpected)} {unexpected[:3]}")  # fmt: skip


def load_converted(model, state: dict[str, Tensor], src) -> None:
    """Load converted weights strictly into ``model`` after ``check_fits``."""
    check_fits(state, model.state_dict(), src)
    model.load_state_dict(state)


def convert_official_file(src, dst, dsm_init: str = "rgb_sum", teacher: bool = False) -> dict:
    """Read an official file, convert it, load it strictly into the matching encoder and save an rsbench
    encoder checkpoint (``cmid_resnet50`` / ``cmid_swin_b``); returns the report (also in the file's meta)."""
    from ..checkpoint import save_encoder_checkpoint
    from ..cnn import CNN_PATCH_SIZE

    blob = read_official(src)  # full checkpoints pickle their config
    if not isinstance(blob, Mapping):
        raise CheckpointError(f"{src} holds a {type(blob).__name__}, not a state dict")
    state, report = convert_official_cmid(blob, dsm_init, teacher)
    modalities = ("rgb", "dsm") if dsm_init != "none" else ("rgb",)
    model = build_target(report["arch"], modalities)
    load_converted(model, state, src)
    save_encoder_checkpoint(model, dst, method="cmid", arch=report["arch"], img_size=224, patch_size=CNN_PATCH_SIZE,
                            depth=4, conversion={**report, "source_file": str(src)})  # fmt: skip
    return report


@register_converter("cmid")
def convert_file(src, dst, img_size: int | None = None, patch_size: int | None = None, dsm_init: str = "rgb_sum",
                 teacher: bool = False) -> ConversionReport:  # fmt: skip
    """``rsbench convert cmid``: the official ResNet-50 / Swin-B releases (backbone-only or full)."""
    report = convert_official_file(src, dst, dsm_init, teacher)
    return ConversionReport(method="cmid", source=str(src), destination=str(dst), layout=report["source"],
                            arch=report["arch"], backbone=f"cmid_{report['arch']}", derived=list(report["derived"]),
                            dropped=list(report["unused"]))  # fmt: skip
