"""A multi-modal ViT encoder (timm) with a simple feature pyramid, shared by every ViT backbone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import timm
import torch
import torch.utils.checkpoint
from mmseg.models.necks import Feature2Pyramid
from timm.layers import PatchEmbed, build_sincos2d_pos_embed, resample_abs_pos_embed
from torch import nn

#: Default channel count of each modality the data layer provides.
MODALITY_CHANNELS = {"rgb": 3, "dsm": 1, "ms": 4}


def modality_channels(modalities: Sequence[str], in_chans: Mapping[str, int] | None = None) -> dict[str, int]:
    """Input channels per modality (``in_chans`` adds or overrides); one clear error for none or an unknown one."""
    if not modalities:
        raise ValueError("a backbone needs at least one input modality, e.g. ('rgb',)")
    channels = {**MODALITY_CHANNELS, **(in_chans or {})}
    unknown = [m for m in modalities if m not in channels]
    if unknown:
        raise ValueError(f"unknown modality {unknown}; known: {sorted(channels)} (pass in_chans for new ones)")
    return channels


#: How the modalities of one sample meet in the encoder (``fusion=``).
FUSIONS = ("mean", "late", "late_concat")


class MultiModalViT(nn.Module):
    """One timm ViT encoder fed by one patch embedding per modality.

    ``fusion="mean"`` (MAE, CMID, random init): the modalities' patch tokens are averaged into
    one sequence, so RGB-only and RGB+DSM runs share the encoder and the token count.
    ``fusion="late"`` (MSSDF): each modality runs through the shared encoder as its own token
    sequence, exactly as MSSDF pretrains, and the modalities' feature maps are averaged after the
    encoder; a method must be evaluated through the input it was pretrained on. ``fusion_weights``
    (one weight per modality, in ``modalities`` order or by name; normalised to sum 1) weighs that
    average instead. ``fusion="late_concat"`` concatenates the modalities' maps along the channels
    (``out_channels`` = embedding width x modalities), so a task head can weigh each stream itself. Features of four
    evenly spaced blocks go through mmseg's ``Feature2Pyramid`` (a ViTDet-style simple feature
    pyramid) to strides 4, 8, 16, 32 (patch size 8 or 16).
    """

    def __init__(
        self,
        arch: str = "vit_tiny_patch16_224",
        modalities: Sequence[str] = ("rgb", "dsm"),
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: Mapping[str, int] | None = None,
        out_indices: Sequence[int] | None = None,
        drop_path_rate: float = 0.0,
        pyramid_norm: str = "BN",
        fusion: str = "mean",
        fusion_weights: Mapping[str, float] | Sequence[float] | None = None,
        **timm_kwargs,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; choose one of {FUSIONS}")
        channels = modality_channels(modalities, in_chans)
        self.modalities = tuple(modalities)
        self.patch_size = patch_size
        self.fusion = fusion
        self.fusion_weights = self._fusion_weights(fusion_weights)
        self.vit = timm.create_model(
            arch,
            pretrained=False,
            num_classes=0,
            global_pool="",
            img_size=img_size,
            patch_size=patch_size,
            drop_path_rate=drop_path_rate,
            **timm_kwargs,  # e.g. depth=4 for tiny test models
        )
        embed_dim = self.vit.embed_dim
        self.grid_size = self.vit.patch_embed.grid_size
        # The encoder's own 3-channel embedding is replaced by one embedding per modality.
        self.vit.patch_embed = nn.Identity()
        self.patch_embeds = nn.ModuleDict(
            {
                m: PatchEmbed(img_size, patch_size, channels[m], embed_dim, output_fmt="NHWC", strict_img_size=False)
                for m in self.modalities
            }
        )
        depth = len(self.vit.blocks)
        # Four evenly spaced blocks feed the pyramid (repeats allowed for very shallow test models).
        self.out_indices = tuple(out_indices or [max(0, (k + 1) * depth // 4 - 1) for k in range(4)])
        # Rescale the stride-p token map to strides 4, 8, 16, 32 whatever the patch size.
        rescales = {16: [4, 2, 1, 0.5], 8: [2, 1, 0.5, 0.25]}
        if patch_size not in rescales:
            raise ValueError(f"patch_size {patch_size} is not supported by the feature pyramid; use 8 or 16")
        width = embed_dim * (len(self.modalities) if fusion == "late_concat" else 1)
        self.pyramid = Feature2Pyramid(width, rescales=rescales[patch_size], norm_cfg=dict(type=pyramid_norm))
        self.embed_dim = embed_dim
        self.out_channels = [width] * 4
        self.encoder_channels = [width] * 4  # the maps before the pyramid (frozen protocol)

    def _fusion_weights(self, weights) -> tuple[float, ...] | None:
        """Late fusion's per-modality weights in ``modalities`` order, normalised to sum 1 (None: the plain mean)."""
        if weights is None:
            return None
        if self.fusion != "late":
            raise ValueError(f"fusion_weights weigh the late fusion's average; fusion is {self.fusion!r}")
        if isinstance(weights, Mapping):
            missing = [m for m in self.modalities if m not in weights]
            if missing:
                raise ValueError(f"fusion_weights lacks modalities {missing}")
            weights = [weights[m] for m in self.modalities]
        weights = [float(w) for w in (weights if isinstance(weights, Sequence) else [weights])]
        if len(weights) != len(self.modalities) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"fusion_weights needs {len(self.modalities)} non-negative weights (one per modality "
                             f"{self.modalities}), not all zero; got {weights}")  # fmt: skip
        return tuple(w / sum(weights) for w in weights)

    def _check_inputs(self, inputs: Mapping[str, torch.Tensor]) -> None:
        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise KeyError(f"backbone expects modalities {self.modalities}, the batch lacks {missing}")
        sizes = {m: tuple(inputs[m].shape[-2:]) for m in self.modalities}
        if len(set(sizes.values())) > 1:
            shown = ", ".join(f"{m} {h}x{w}" for m, (h, w) in sizes.items())
            raise ValueError(f"modality shapes disagree ({shown}); every modality of a sample must cover the same "
                             "pixels: resample them to one grid first")  # fmt: skip

    def embed(self, inputs: Mapping[str, torch.Tensor], keep: torch.Tensor | None = None) -> torch.Tensor:
        """Average the per-modality patch tokens: B x h x w x C (the ``mean`` fusion's one sequence).

        ``keep`` (M x B, 0/1 in ``modalities`` order, at least one 1 per sample) averages each sample over
        its kept modalities only: a sample seen without some of its modalities.
        """
        self._check_inputs(inputs)
        tokens = torch.stack([self.patch_embeds[m](inputs[m]) for m in self.modalities])  # M x B x h x w x C
        if keep is None:
            return tokens.mean(0)
        weights = keep.to(tokens.dtype)[..., None, None, None]
        return (tokens * weights).sum(0) / weights.sum(0)

    def encode_inputs(self, inputs: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """The encoder's out_indices maps (B x C x h x w) for normalised inputs, fused as ``fusion`` says."""
        if self.fusion == "mean":
            return self.encode(self.embed(inputs))
        self._check_inputs(inputs)
        per_modality = [self.encode(self.patch_embeds[m](inputs[m])) for m in self.modalities]
        if self.fusion == "late_concat":
            return [torch.cat(level, 1) for level in zip(*per_modality)]
        if self.fusion_weights is not None:
            return [sum(w * f for w, f in zip(self.fusion_weights, level)) for level in zip(*per_modality)]
        return [torch.stack(level).mean(0) for level in zip(*per_modality)]

    def frozen_parts(self):
        """The frozen protocol's encoder (``tasks.features``): its maps and modules (not the task-side pyramid)."""
        return self.encode_inputs, [self.vit, self.patch_embeds]

    def use_fixed_sincos_positions(self) -> None:
        """Freeze the position embedding to a 2-D sin-cos table (zero at the prefix tokens), as
        MAE-style pretraining does; downstream fine-tuning may train it again."""
        pos = self.vit.pos_embed
        with torch.no_grad():
            pos.zero_()
            pos[0, self.vit.num_prefix_tokens :] = build_sincos2d_pos_embed(list(self.grid_size), pos.shape[-1])
        pos.requires_grad_(False)

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """The position embedding (1 x prefix+h*w x C) resampled to an h x w token grid."""
        return resample_abs_pos_embed(
            self.vit.pos_embed, new_size=(h, w), old_size=self.grid_size, num_prefix_tokens=self.vit.num_prefix_tokens
        )

    def encode(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Run the transformer on B x h x w x C tokens; return the out_indices maps as B x C x h x w."""
        b, h, w, c = tokens.shape
        pos = self.position_embedding(h, w)
        x = tokens.reshape(b, h * w, c)
        if self.vit.cls_token is not None:
            x = torch.cat([self.vit.cls_token.expand(b, -1, -1), x], dim=1)
        x = self.vit.norm_pre(self.vit.pos_drop(x + pos))
        prefix = self.vit.num_prefix_tokens
        last = len(self.vit.blocks) - 1
        feats = {}
        checkpointing = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for i, block in enumerate(self.vit.blocks):
            x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False) if checkpointing else block(x)
            if i in self.out_indices:
                out = self.vit.norm(x) if i == last else x
                feats[i] = out[:, prefix:].transpose(1, 2).reshape(b, c, h, w)
        return [feats[i] for i in self.out_indices]

    def get_layer_depth(self, param_name: str, prefix: str = "") -> tuple[int, int]:
        """(depth, number of depths) of a parameter, for layer-wise lr decay (mmpretrain's
        ``LearningRateDecayOptimWrapperConstructor`` and its ViT's rule): patch embeddings, position
        embedding and prefix tokens at 0, block i at i + 1, and everything after the blocks (the final norm,
        the pyramid, and any parameter outside ``prefix``: the task's head) at the top, lr scale 1."""
        num_layers = len(self.vit.blocks) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix) :]
        if name.startswith(("patch_embeds.", "vit.patch_embed.", "vit.cls_token", "vit.reg_token", "vit.pos_embed")):
            return 0, num_layers
        if name.startswith("vit.blocks."):
            return int(name.split(".")[2]) + 1, num_layers
        return num_layers - 1, num_layers

    def set_drop_path_rate(self, rate: float) -> None:
        """Stochastic depth in the encoder's blocks, rising linearly from 0 at the first to ``rate`` at the
        last (timm's ``drop_path_rate`` rule, applied to an encoder built or loaded without it)."""
        from timm.layers import DropPath
        from timm.layers.drop import calculate_drop_path_rates

        for block, p in zip(self.vit.blocks, calculate_drop_path_rates(rate, len(self.vit.blocks))):
            for name in ("drop_path1", "drop_path2"):
                setattr(block, name, DropPath(p) if p > 0 else nn.Identity())

    grad_checkpointing = False

    def set_speed_options(self, grad_checkpointing: bool = False, fused_attn: bool = True) -> None:
        """Recompute blocks in the backward pass (memory for ViT-B/L); SDPA or timm's explicit attention."""
        self.grad_checkpointing = grad_checkpointing
        for block in self.vit.blocks:
            block.attn.fused_attn = fused_attn

    def checkpoint_geometry(self) -> dict:
        """The builder arguments a checkpoint records so ``backbones.build`` recreates these shapes."""
        return dict(img_size=int(self.grid_size[0] * self.patch_size), patch_size=self.patch_size,
                    depth=len(self.vit.blocks), fusion=self.fusion)  # fmt: skip

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        return list(self.pyramid(self.encode_inputs(inputs)))


#: Encoder sizes by short name, mapped to timm architectures.
VIT_ARCHS = {
    "vit_t16": "vit_tiny_patch16_224",
    "vit_s16": "vit_small_patch16_224",
    "vit_b16": "vit_base_patch16_224",
    "vit_l16": "vit_large_patch16_224",
}


def register_vit_backbones(method: str, doc: str, sizes=("vit_t16", "vit_s16", "vit_b16"), img_size: int = 224,
                           **defaults) -> None:  # fmt: skip
    """Register ``<method>_<size>`` for each ViT size: the shared encoder a pretraining method exports.

    ``doc`` is formatted with ``arch`` and becomes the description ``rsbench backbones`` shows;
    ``defaults`` (e.g. ``fusion="late"``) travel with the registration like the input size.
    """
    from .registry import register_backbone

    for short in sizes:

        def builder(modalities=("rgb", "dsm"), _short=short, **kw) -> MultiModalViT:
            return MultiModalViT(VIT_ARCHS[_short], modalities=modalities, **kw)

        builder.__doc__ = doc.format(arch=short)
        register_backbone(f"{method}_{short}", method=method, arch=short, img_size=img_size, patch_size=16,
                          **defaults)(builder)  # fmt: skip
