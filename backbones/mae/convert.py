"""Convert the official MAE releases (github.com/facebookresearch/mae) to rsbench encoders.

``mae_pretrain_vit_base.pth`` / ``mae_pretrain_vit_large.pth`` hold ``{"model": encoder}`` in
timm's ViT key layout (``cls_token``, ``pos_embed`` = the fixed 2-D sin-cos table with a zero
class row, ``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``); the "visualize" files
(``mae_visualize_vit_large.pth``) also carry the pixel decoder (``decoder_embed``,
``decoder_pos_embed``, ``decoder_blocks.N``, ``decoder_norm``, ``decoder_pred``) and
``mask_token``, which are dropped. The mapping itself is timm's (``backbones/timm_convert.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ..convert import ConversionReport, register_converter, unwrap_state_dict
from ..timm_convert import check_timm_layout, convert_and_save, convert_timm_vit, read_checkpoint, report_of

#: Keys of the MAE pretraining model that belong to its pixel decoder, not to the encoder.
MAE_DECODER_PREFIXES = ("decoder_", "mask_token")


def convert_official_mae(blob: Mapping, img_size: int | None = None, dsm_init: str = "rgb_sum") -> tuple[dict, dict]:
    """Map an official MAE checkpoint onto ``MultiModalViT`` keys; returns (state dict, report).

    See ``convert_timm_vit`` for the report and for ``img_size`` / ``dsm_init``; the report's
    ``layout`` says whether the file carried the decoder (``pretrain+decoder``) or not.
    """
    state: dict[str, Tensor] = unwrap_state_dict(blob)
    check_timm_layout(state, "an official MAE")
    out, report = convert_timm_vit(state, img_size, dsm_init, drop_prefixes=MAE_DECODER_PREFIXES)
    report["layout"] = "pretrain+decoder" if any(k.startswith("decoder_") for k in state) else "pretrain"
    return out, report


def convert_official_file(src, dst, img_size: int | None = None, patch_size: int | None = None,
                          dsm_init: str = "rgb_sum") -> dict:  # fmt: skip
    """Read an official MAE file, convert it, load it strictly into the matching encoder and save an
    rsbench encoder checkpoint (method ``mae``: build ``mae_vit_b16`` / ``mae_vit_l16``); returns the report."""
    state, report = convert_official_mae(read_checkpoint(src), img_size, dsm_init)
    return convert_and_save(state, report, src, dst, "mae", patch_size)


@register_converter("mae")
def convert_file(src, dst, img_size: int | None = None, patch_size: int | None = None, dsm_init: str = "rgb_sum",
                 teacher: bool = False) -> ConversionReport:  # fmt: skip
    """``rsbench convert mae``: the official MAE ViT-B/L releases."""
    if teacher:
        raise ValueError("--teacher applies to converters of distillation methods (mssdf, cmid); MAE has no teacher")
    return report_of("mae", src, dst, convert_official_file(src, dst, img_size, patch_size, dsm_init))
