"""Convert a timm ``VisionTransformer`` state dict (any ViT/16 in timm's key layout) to an rsbench encoder.

timm's layout is ``cls_token``, ``pos_embed``, ``patch_embed.proj.*``, ``blocks.N.{norm1, attn.qkv,
attn.proj, norm2, mlp.fc1, mlp.fc2}.*``, ``norm.*`` (or ``fc_norm.*`` for average-pooled models)
and a classifier ``head.*``. The official MAE releases use the same names (backbones/mae/convert.py
builds on this module). Width and depth are read from the weights; the heads count comes from the
timm architecture of that width (the weights cannot tell it).

Importing this module also registers ``timm_vit_{t,s,b,l}16``: the shared encoder with weights
converted from timm (e.g. ImageNet-supervised), so result rows do not label them ``random_init``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence

import torch
from timm.layers import resample_abs_pos_embed
from timm.models import adapt_input_conv
from torch import Tensor

from .checkpoint import CheckpointError, encoder_state_dict, save_encoder_checkpoint, shape_mismatches
from .convert import ARCH_BY_WIDTH, ConversionReport, register_converter, unwrap_state_dict
from .vit import MODALITY_CHANNELS, VIT_ARCHS, MultiModalViT, register_vit_backbones

#: Source keys that are not part of the encoder: classifier heads and pooling heads.
HEAD_PREFIXES = ("head.", "head_dist.", "pre_logits.", "attn_pool.")
#: How the embedding of a modality other than RGB is made from the RGB patch embedding.
DSM_INITS = ("rgb_sum", "none")

register_vit_backbones(
    "timm", "{arch} encoder with weights converted from timm (rsbench convert timm)",
    sizes=tuple(VIT_ARCHS), img_size=224,
)  # fmt: skip


def check_timm_layout(state: Mapping[str, Tensor], what: str = "a timm ViT") -> None:
    """One clear error unless ``state`` has timm's ViT key names."""
    needed = ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight")
    if not all(k in state for k in needed):
        raise CheckpointError(
            f"not {what} state dict: expected timm key names such as {needed[0]!r} and {needed[1]!r}, "
            f"found e.g. {sorted(state)[:5]}"
        )


def _grid(pos_rows: int, prefix: int, key: str) -> tuple[int, int]:
    n = pos_rows - prefix
    side = math.isqrt(n)
    if side * side != n:
        raise CheckpointError(f"{key} has {pos_rows} rows: not {prefix} prefix token(s) + a square grid of patches")
    return side, side


def convert_timm_vit(
    state: Mapping[str, Tensor],
    img_size: int | None = None,
    dsm_init: str = "rgb_sum",
    modalities: Sequence[str] = ("rgb", "dsm"),
    drop_prefixes: Sequence[str] = (),
) -> tuple[dict[str, Tensor], dict]:
    """Map a timm ViT state dict onto ``MultiModalViT`` keys.

    Returns the converted state dict and a report: ``embed_dim``, ``depth``, ``patch_size``,
    ``img_size``, ``dropped`` (source keys that are not encoder weights: heads, ``fc_norm`` when
    ``norm`` exists, and ``drop_prefixes`` such as MAE's decoder) and ``initialised`` (encoder keys
    not loaded as they are but derived from the source). Source keys with no place in the encoder
    are kept under ``vit.<key>`` so that ``fit_to_encoder`` reports them as unexpected.

    The RGB patch embedding is copied. Every other modality's embedding is derived with timm's
    ``adapt_input_conv`` (``dsm_init="rgb_sum"``): a 1-channel DSM gets the RGB filters summed
    over colour, so a z-scored DSM patch gives the response the RGB embedding gives a grey patch
    of the same normalised values; ``"none"`` leaves the other modalities out of the checkpoint.
    ``img_size`` other than the source's resamples the position table (bicubic, as MAE
    fine-tuning does at another resolution); ``None`` keeps the source grid.
    """
    if dsm_init not in DSM_INITS:
        raise CheckpointError(f"dsm_init must be one of {DSM_INITS}, not {dsm_init!r}")
    check_timm_layout(state)
    extra_tokens = [k for k in ("reg_token", "dist_token") if k in state]
    if extra_tokens:
        raise CheckpointError(f"the source has {extra_tokens}: prefix tokens besides the class token, "
                              "which rsbench's encoder (one class token) cannot hold")  # fmt: skip
    out = {}
    has_norm = "norm.weight" in state
    dropped = sorted(k for k in state if k.startswith((*HEAD_PREFIXES, *drop_prefixes)))
    if has_norm:
        dropped += sorted(k for k in state if k.startswith("fc_norm."))  # timm models have one or the other
    for key in state:
        if key in dropped or key == "pos_embed" or key.startswith("fc_norm."):
            continue  # the position table and fc_norm are handled below
        if key.startswith("patch_embed.proj."):
            out["patch_embeds.rgb.proj." + key.removeprefix("patch_embed.proj.")] = state[key]
        else:
            # Keys with no rsbench counterpart (layer scale, a pre-norm, ...) are kept under their name
            # so that fit_to_encoder reports them as unexpected instead of silently dropping them.
            out["vit." + key] = state[key]
    initialised = []
    if not has_norm and "fc_norm.weight" in state:
        # Average-pooled timm models normalise the pooled vector instead of every token; the per-token
        # final norm of the encoder takes that trained LayerNorm rather than an untrained one.
        out["vit.norm.weight"], out["vit.norm.bias"] = state["fc_norm.weight"], state["fc_norm.bias"]
        initialised.append("vit.norm (the source's fc_norm, which timm applies after pooling)")

    weight = out["patch_embeds.rgb.proj.weight"]
    if weight.ndim != 4 or weight.shape[1] != MODALITY_CHANNELS["rgb"]:
        raise CheckpointError(f"patch_embed.proj.weight has shape {tuple(weight.shape)}: expected a convolution "
                              "over 3 (RGB) input channels")  # fmt: skip
    dim, patch_size = weight.shape[0], weight.shape[-1]
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    source_grid = None
    if "pos_embed" in state:
        pos = state["pos_embed"]
        prefix = 1 if "cls_token" in state else 0
        if prefix and math.isqrt(pos.shape[1]) ** 2 == pos.shape[1]:
            # timm's no_embed_class: the class token gets no position; a zero row is the same computation.
            pos = torch.cat([pos.new_zeros(1, 1, pos.shape[-1]), pos], 1)
            initialised.append("vit.pos_embed row 0 (zero: the source adds no position to the class token)")
        source_grid = _grid(pos.shape[1], prefix, "pos_embed")
        img_size = img_size or source_grid[0] * patch_size
        grid = (img_size // patch_size,) * 2
        if grid != source_grid:
            pos = resample_abs_pos_embed(pos, new_size=grid, old_size=source_grid, num_prefix_tokens=prefix)
            initialised.append(f"vit.pos_embed (resampled bicubic from {source_grid[0]}x{source_grid[1]} "
                               f"to {grid[0]}x{grid[1]} patches)")  # fmt: skip
        out["vit.pos_embed"] = pos
    rgb_bias = out.get("patch_embeds.rgb.proj.bias")
    for m in modalities:
        if m == "rgb" or dsm_init == "none":
            continue
        out[f"patch_embeds.{m}.proj.weight"] = adapt_input_conv(MODALITY_CHANNELS[m], weight)
        if rgb_bias is not None:
            out[f"patch_embeds.{m}.proj.bias"] = rgb_bias
        how = "summed over colour" if MODALITY_CHANNELS[m] == 1 else "repeated and scaled by 3/channels"
        initialised.append(f"patch_embeds.{m} (RGB filters {how}, timm adapt_input_conv)")
    report = {
        "embed_dim": dim, "depth": depth, "patch_size": patch_size, "img_size": img_size,
        "source_grid": source_grid, "modalities": [m for m in modalities if m == "rgb" or dsm_init != "none"],
        "dropped": sorted(dropped), "initialised": initialised,
    }  # fmt: skip
    return out, report


def fit_to_encoder(state: Mapping[str, Tensor], model: MultiModalViT, source: str) -> dict:
    """Refuse a converted state that does not fill ``model``'s encoder exactly (one line naming the keys).

    Returns ``{"missing": [], "unexpected": []}`` (both empty) when it fits; a shape mismatch,
    an encoder weight the source lacks or a source weight with no place in the encoder
    (e.g. layer scale, register tokens) raises ``CheckpointError``.
    """
    own = encoder_state_dict(model)
    wrong = shape_mismatches(state, own)
    if wrong:
        raise CheckpointError(f"{source}: shape mismatch for {len(wrong)} keys (file vs encoder), e.g. {wrong[:3]}")
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k.removeprefix("vit.") for k in state if k not in own)
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit {getattr(model, 'arch', 'the encoder')}: missing {len(missing)} {missing[:5]}, "
            f"unexpected {len(unexpected)} source keys {unexpected[:5]}"
        )
    return {"missing": missing, "unexpected": unexpected}


def build_target(report: dict, img_size: int, patch_size: int | None = None) -> MultiModalViT:
    """The rsbench encoder a converted state dict must fill: size by width, depth from the weights."""
    arch = ARCH_BY_WIDTH.get(report["embed_dim"])  # the shared table (backbones/convert.py)
    if arch is None:
        raise CheckpointError(f"embed dim {report['embed_dim']} matches no rsbench ViT size ({sorted(ARCH_BY_WIDTH)})")
    model = MultiModalViT(VIT_ARCHS[arch], report["modalities"], img_size, patch_size or report["patch_size"],
                          depth=report["depth"])  # fmt: skip
    model.arch = arch
    return model


def read_checkpoint(src: str | os.PathLike) -> dict:
    """torch.load a third-party file (pickled args allowed: these files come from the user) with one clear error."""
    try:
        return torch.load(src, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{src} could not be read ({exc.__class__.__name__}: {exc})") from exc


def convert_and_save(state: dict, report: dict, src, dst, method: str, patch_size: int | None = None) -> dict:
    """Load ``state`` strictly into the matching encoder and write an rsbench checkpoint; returns the report."""
    img_size = report["img_size"] or 224
    model = build_target(report, img_size, patch_size)
    report.update(fit_to_encoder(state, model, str(src)))
    model.load_state_dict(state, strict=False)  # strict on the encoder (checked above); the pyramid is task-side
    report.update(arch=model.arch, source=str(src), method=method, backbone=f"{method}_{model.arch}")
    save_encoder_checkpoint(model, dst, method=method, arch=model.arch, img_size=img_size,
                            patch_size=model.patch_size, depth=report["depth"], conversion=report)  # fmt: skip
    return report


def convert_timm_file(src, dst, img_size: int | None = None, patch_size: int | None = None,
                      dsm_init: str = "rgb_sum", method: str = "timm") -> dict:  # fmt: skip
    """Read a timm ViT checkpoint (e.g. ``torch.save(model.state_dict())``), convert, check and save it.

    ``method`` goes into the checkpoint's meta and names the backbone to build
    (``<method>_<arch>``, e.g. ``timm_vit_b16``).
    """
    state = unwrap_state_dict(read_checkpoint(src))
    converted, report = convert_timm_vit(state, img_size, dsm_init)
    report["layout"] = "timm"
    return convert_and_save(converted, report, src, dst, method, patch_size)


@register_converter("timm")
def convert_file(src, dst, img_size: int | None = None, patch_size: int | None = None, dsm_init: str = "rgb_sum",
                 teacher: bool = False) -> ConversionReport:  # fmt: skip
    """``rsbench convert timm``: any timm ViT state dict."""
    if teacher:
        raise ValueError("--teacher applies to converters of distillation methods (mssdf, cmid), not to timm files")
    return report_of("timm", src, dst, convert_timm_file(src, dst, img_size, patch_size, dsm_init))


def report_of(method: str, src, dst, report: dict) -> ConversionReport:
    """The shared report of a timm-layout conversion (timm and MAE)."""
    return ConversionReport(method=method, source=str(src), destination=str(dst), layout=report.get("layout", ""),
                            arch=report.get("arch", ""), depth=report.get("depth"), backbone=report["backbone"],
                            dropped=list(report.get("dropped", [])), initialised=list(report.get("initialised", [])),
                            missing=list(report.get("missing", [])), unexpected=list(report.get("unexpected", [])))
