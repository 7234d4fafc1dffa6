"""Convert the official MSSDF releases (``vit_base_500.pth``, ``vit_large_500.pth``) to rsbench encoders.

Two key layouts are accepted, both of the official repository (github.com/CVEO/MSSDF):
the pretraining layout (``{"model": {"encoder.blocks.0.attn.q_bias", ...}}``, BEiT-style
blocks with separate q/v biases, no position table because it is a fixed 1-D sin-cos) and
the mmpretrain ``VisionTransformer`` layout its downstream configs load
(``layers.0.ln1.weight``, ``patch_embed.projection.weight``, ...). Note that the "large"
release is 768 wide and 24 deep: width and depth are read from the weights, not the name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from ..checkpoint import CheckpointError
from ..convert import ConversionReport, arch_of_width, read_official, register_converter, unwrap_state_dict

#: Parameters of one official (BEiT-style) block that map one to one onto a timm block.
_BLOCK_PARAMS = (
    *(f"{layer}.{p}" for layer in ("norm1", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2") for p in ("weight", "bias")),
    "attn.qkv.weight",
)
#: mmpretrain VisionTransformer names -> timm names inside one block.
_MMPRETRAIN_BLOCK = {
    "ln1": "norm1", "attn.qkv": "attn.qkv", "attn.proj": "attn.proj", "ln2": "norm2",
    "ffn.layers.0.0": "mlp.fc1", "ffn.layers.1": "mlp.fc2",
}  # fmt: skip


def sinusoid_table_1d(n: int, dim: int) -> Tensor:
    """The official fixed 1-D sin-cos table (position i, channel j: sin/cos of i / 10000^(2 floor(j/2) / dim))."""
    position = np.arange(n)[:, None]
    rate = np.power(10000.0, 2 * (np.arange(dim) // 2) / dim)[None]
    table = position / rate
    table[:, 0::2], table[:, 1::2] = np.sin(table[:, 0::2]), np.cos(table[:, 1::2])
    return torch.from_numpy(table).float()


def detect_layout(state: Mapping[str, Tensor]) -> str:
    """``pretrain`` (encoder.* keys), ``mmpretrain`` (layers.* keys), or a CheckpointError."""
    if any(k.startswith("encoder.blocks.") for k in state):
        return "pretrain"
    if any(k.startswith("layers.") for k in state) and "patch_embed.projection.weight" in state:
        return "mmpretrain"
    raise CheckpointError(
        "not an official MSSDF checkpoint: expected 'encoder.blocks.*' (pretraining) or 'layers.*' (mmpretrain) keys, "
        f"found e.g. {sorted(state)[:5]}"
    )


def convert_official_mssdf(
    blob: Mapping, img_size: int = 320, patch_size: int = 16, dsm_init: str = "rgb_sum", teacher: bool = False
) -> tuple[dict[str, Tensor], dict]:
    """Map an official MSSDF state dict onto ``MultiModalViT`` keys.

    Returns the converted state dict and a report: layout, embed dim, depth, what was
    derived rather than copied (the DSM embedding, the position table) and which source
    keys were left unused. ``dsm_init="rgb_sum"`` gives the 1-channel DSM embedding the
    RGB filters summed over colour (the official code fed the DSM through the RGB
    embedding as a 3-channel colour map); ``"none"`` leaves it to the model's init.
    ``teacher=True`` takes the EMA teacher instead of the student (pretraining layout only).
    """
    state = unwrap_state_dict(blob)
    layout = detect_layout(state)
    out, used = {}, set()

    def take(src: str, dst: str) -> None:
        if src not in state:
            raise CheckpointError(f"official MSSDF checkpoint ({layout} layout) lacks key {src!r}")
        out[dst] = state[src]
        used.add(src)

    if layout == "pretrain":
        prefix = "ema_teacher." if teacher else "encoder."
        if teacher and not any(k.startswith(prefix) for k in state):
            raise CheckpointError("teacher=True but the checkpoint has no 'ema_teacher.*' keys")
        take(f"{prefix}patch_embed.proj.weight", "patch_embeds.rgb.proj.weight")
        take(f"{prefix}patch_embed.proj.bias", "patch_embeds.rgb.proj.bias")
        depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(rf"{re.escape(prefix)}blocks\.(\d+)\.", k)))
        for i in range(depth):
            src, dst = f"{prefix}blocks.{i}.", f"vit.blocks.{i}."
            for name in _BLOCK_PARAMS:
                take(src + name, dst + name)
            q, v = state.get(src + "attn.q_bias"), state.get(src + "attn.v_bias")
            if q is not None and v is not None:
                out[dst + "attn.qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])  # BEiT-style: no key bias
                used.update({src + "attn.q_bias", src + "attn.v_bias"})
            for gamma, ls in (("gamma_1", "ls1.gamma"), ("gamma_2", "ls2.gamma")):
                if src + gamma in state:
                    take(src + gamma, dst + ls)
        take(f"{prefix}norm.weight", "vit.norm.weight")
        take(f"{prefix}norm.bias", "vit.norm.bias")
        dim = out["vit.norm.weight"].shape[0]
        cls = state.get(f"{prefix}cls_token")
        if cls is not None:
            # The official CLS gets a learned embedding instead of a position: fold it into the token.
            cls_embed = state.get(f"{prefix}cls_embed.weight")
            out["vit.cls_token"] = cls + (cls_embed.reshape(1, 1, -1) if cls_embed is not None else 0)
            used.update({f"{prefix}cls_token", f"{prefix}cls_embed.weight"})
        n = (img_size // patch_size) ** 2
        out["vit.pos_embed"] = torch.cat([torch.zeros(1, 1, dim), sinusoid_table_1d(n, dim)[None]], 1)
        derived = ["vit.pos_embed (official fixed 1-D sin-cos table, zero at CLS)"]
        unused = sorted(k for k in state if k not in used and k.startswith(prefix))
    else:
        take("patch_embed.projection.weight", "patch_embeds.rgb.proj.weight")
        take("patch_embed.projection.bias", "patch_embeds.rgb.proj.bias")
        depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"layers\.(\d+)\.", k)))
        for i in range(depth):
            for src, dst in _MMPRETRAIN_BLOCK.items():
                for p in ("weight", "bias"):
                    take(f"layers.{i}.{src}.{p}", f"vit.blocks.{i}.{dst}.{p}")
        norm = "ln1" if "ln1.weight" in state else "pre_norm" if "pre_norm.weight" in state else None
        if norm is not None:
            take(f"{norm}.weight", "vit.norm.weight")
            take(f"{norm}.bias", "vit.norm.bias")
        for key in ("cls_token", "pos_embed"):
            if key in state:
                take(key, f"vit.{key}")
        dim = out["patch_embeds.rgb.proj.weight"].shape[0]
        derived = []
        unused = sorted(k for k in state if k not in used)
    if dsm_init == "rgb_sum":
        out["patch_embeds.dsm.proj.weight"] = out["patch_embeds.rgb.proj.weight"].sum(1, keepdim=True)
        out["patch_embeds.dsm.proj.bias"] = out["patch_embeds.rgb.proj.bias"]
        derived.append("patch_embeds.dsm (RGB filters summed over colour)")
    report = {"layout": layout, "embed_dim": dim, "depth": depth, "derived": derived, "unused": unused}
    return out, report


def convert_official_file(src, dst, img_size: int = 320, patch_size: int = 16, dsm_init: str = "rgb_sum",
                          teacher: bool = False) -> dict:  # fmt: skip
    """Read an official file, convert it, load it strictly into the matching encoder and save an
    rsbench encoder checkpoint; returns the report (also stored in the checkpoint's meta)."""
    from ..checkpoint import save_encoder_checkpoint, shape_mismatches
    from ..vit import VIT_ARCHS, MultiModalViT

    state, report = convert_official_mssdf(read_official(src), img_size, patch_size, dsm_init, teacher)
    arch = arch_of_width(report["embed_dim"], src)
    modalities = ("rgb", "dsm") if dsm_init != "none" else ("rgb",)
    model = MultiModalViT(VIT_ARCHS[arch], modalities, img_size, patch_size, depth=report["depth"])
    wrong = shape_mismatches(state, model.state_dict())
    if wrong:
        raise CheckpointError(f"{src}: shape mismatch after conversion, e.g. {wrong[:3]}")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("pyramid.")]
    if result.unexpected_keys or missing:
        raise CheckpointError(f"{src}: converted weights do not fit {arch}: missing {missing[:5]}, "
                              f"unexpected {result.unexpected_keys[:5]}")  # fmt: skip
    report.update(arch=arch, source=str(src))
    save_encoder_checkpoint(model, dst, method="mssdf", arch=arch, img_size=img_size, patch_size=patch_size,
                            depth=report["depth"], conversion=report)  # fmt: skip
    return report


@register_converter("mssdf")
def convert_file(src, dst, img_size: int | None = None, patch_size: int | None = None, dsm_init: str = "rgb_sum",
                 teacher: bool = False) -> ConversionReport:  # fmt: skip
    """``rsbench convert mssdf``: the official MSSDF releases (both layouts)."""
    report = convert_official_file(src, dst, img_size or 320, patch_size or 16, dsm_init, teacher)
    return ConversionReport(method="mssdf", source=str(src), destination=str(dst), layout=report["layout"],
                            arch=report["arch"], depth=report["depth"], backbone=f"mssdf_{report['arch']}",
                            derived=list(report["derived"]), dropped=list(report["unused"]))  # fmt: skip
