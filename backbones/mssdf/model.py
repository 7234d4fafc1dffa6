"""MSSDF pretraining as an mmengine model: one shared ViT student, an EMA teacher, fusion and
reconstruction decoders, and the four losses of the paper (arXiv 2506.09327).

Written by hand (no maintained library implements MSSDF); the encoder is the project's timm
``MultiModalViT`` so that the exported encoder is exactly what downstream tasks build.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.dist import all_gather, get_rank, get_world_size
from mmengine.model import BaseModel, ExponentialMovingAverage
from timm.layers import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from rsbench.registry import MODELS

from ..normalize import normalize_modalities
from ..vit import VIT_ARCHS, MultiModalViT
from .masking import mssdf_masks

DEFAULT_LOSS_WEIGHTS = {"rec": 1.0, "align": 0.5, "hsic": 0.2, "mod": 0.1}
#: What the alignment InfoNCE compares (``align_on``): the mean-pooled reconstruction-decoder outputs (default:
#: the official code's inputs), the mean-pooled encoder tokens through a projector (rsbench's default until the
#: ablation of docs/pretraining.md: on the encoder it outweighed reconstruction 130 to 1, filled every token
#: with position and an image summary, and the encoder's token-class kNN fell from 62 to 44 over the study's
#: 504 steps), or the decoder outputs token by token, each RGB position against the DSM positions of its tile.
ALIGN_ON = ("encoder", "decoder", "decoder_tokens")
#: How the teacher's target layers are normalised (``target_norm``): per token over channels (default), or
#: data2vec's instance norm over the tokens of a tile per channel, then a layer norm of the average.
TARGET_NORMS = ("layer", "instance")


def visible_index(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Indices of unmasked tokens, padded to the batch's largest count, and which are real.

    Visible counts differ per sample once the DSM is masked further, so token sets are
    padded and attention ignores the padding (key mask); losses use the masks themselves,
    so padding never reaches a loss.
    """
    keep = ~mask
    counts = keep.sum(1)
    order = torch.sort(mask.to(torch.uint8), dim=1, stable=True).indices  # visible first, in patch order
    width = int(counts.max().clamp(min=1))
    valid = torch.arange(width, device=mask.device)[None] < counts[:, None]
    return order[:, :width], valid


def gather_tokens(x: Tensor, index: Tensor) -> Tensor:
    """x (B, N, C) at index (B, V) -> (B, V, C)."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


def run_blocks(blocks: Sequence[nn.Module], x: Tensor, valid: Tensor) -> Tensor:
    """Transformer blocks with padded tokens excluded as keys (SDPA boolean mask: True = attend)."""
    attn_mask = valid[:, None, None, :]
    for block in blocks:
        x = block(x, attn_mask=attn_mask)
    return x


def info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE between matching rows; negatives are gathered from all ranks under DDP."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    if get_world_size() > 1:
        # Other ranks' embeddings serve as negatives without gradient; ours keep theirs.
        rank = get_rank()
        all_b = torch.cat([b if r == rank else t for r, t in enumerate(all_gather(b.detach()))])
        all_a = torch.cat([a if r == rank else t for r, t in enumerate(all_gather(a.detach()))])
        offset = rank * a.shape[0]
    else:
        all_a, all_b, offset = a, b, 0
    labels = torch.arange(a.shape[0], device=a.device) + offset
    return 0.5 * (
        F.cross_entropy(a @ all_b.T / temperature, labels) + F.cross_entropy(b @ all_a.T / temperature, labels)
    )


def linear_hsic(x: Tensor, y: Tensor) -> Tensor:
    """Linear-kernel HSIC, ||cov(x, y)||_F^2 / (n-1)^2; zero for a single sample (no dependence to measure)."""
    n = x.shape[0]
    if n < 2:
        return x.sum() * 0.0
    x, y = x - x.mean(0), y - y.mean(0)
    return (x.T @ y).pow(2).sum() / (n - 1) ** 2


def masked_mean(x: Tensor, valid: Tensor) -> Tensor:
    """Mean of x (B, V, C) over the valid tokens of each sample."""
    w = valid.to(x.dtype)[..., None]
    return (x * w).sum(1) / w.sum(1).clamp(min=1)


@MODELS.register_module()
class MSSDF(BaseModel):
    """Modality-shared self-supervised distillation (RGB + DSM).

    The student sees the visible patches of each modality (information-aware base mask,
    DSM masked further with probability ``dsm_extra_p``, set by ``MaskingCurriculumHook``);
    the EMA teacher (``TeacherEMAHook``) sees both modalities unmasked and gives the
    layer-normed token targets that the fusion + shared reconstruction decoders predict
    at the masked positions.
    """

    #: The name checkpoints and result rows give this method (the backbone registry's ``method``).
    method = "mssdf"

    def __init__(
        self,
        arch: str = "vit_b16",
        img_size: int = 320,
        patch_size: int = 16,
        encoder_kwargs: dict | None = None,
        decoder_dim: int = 384,
        decoder_heads: int = 6,
        fusion_depth: int = 3,
        decoder_depth: int = 4,
        proj_dim: int = 256,
        mask_ratio: float = 0.75,
        mask_weights: Sequence[float] = (0.8, 0.5, 0.3),
        mask_prefer: str = "mask_flat",
        score_scale: float = 255.0,
        independent_masks: bool = False,
        dsm_extra_p: float = 0.1,
        temperature: float = 0.07,
        rec_loss: str = "smooth_l1",
        loss_weights: dict | None = None,
        diagnostic_interval: int = 10,
        position_centred_targets: bool = False,
        target_layers: int = 1,
        target_norm: str = "layer",
        target_ffn: bool = False,
        align_on: str = "decoder",
        dsm_min_visible: float = 0.0,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.modalities = ("rgb", "dsm")
        self.arch, self.patch_size = arch, patch_size
        # fusion="late": downstream, the exported encoder runs one token sequence per modality, as here.
        self.student = MultiModalViT(VIT_ARCHS[arch], self.modalities, img_size, patch_size, fusion="late",
                                     **(encoder_kwargs or {}))  # fmt: skip
        self.student.use_fixed_sincos_positions()
        # The teacher starts as an exact copy of the student and only moves by EMA (no gradients).
        self.teacher = ExponentialMovingAverage(self.student, momentum=0.004)
        self.teacher.requires_grad_(False)
        dim = self.student.embed_dim
        self.enc_to_dec = nn.Linear(dim, decoder_dim)
        self.fusion_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.mask_tokens = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, decoder_dim)) for m in self.modalities})
        self.fusion_decoder = nn.ModuleList(Block(decoder_dim, decoder_heads) for _ in range(fusion_depth))
        self.fusion_norm = nn.LayerNorm(decoder_dim)
        self.rec_decoder = nn.ModuleList(Block(decoder_dim, decoder_heads) for _ in range(decoder_depth))
        self.rec_norm = nn.LayerNorm(decoder_dim)
        self.rec_head = nn.Linear(decoder_dim, dim)
        self.shared_proj = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, proj_dim))
        self.modality_head = nn.Linear(dim, len(self.modalities))
        for p in (self.fusion_token, *self.mask_tokens.values()):
            nn.init.trunc_normal_(p, std=0.02)
        self.mask_cfg = dict(
            mask_ratio=mask_ratio, weights=tuple(mask_weights), prefer=mask_prefer, patch_size=patch_size,
            value_scale=score_scale,
        )  # fmt: skip
        self.independent_masks = independent_masks
        self.dsm_extra_p = dsm_extra_p
        self.temperature = temperature
        self.rec_loss = rec_loss
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **(loss_weights or {})}
        self.diagnostic_interval = diagnostic_interval
        self.position_centred_targets = position_centred_targets
        if target_norm not in TARGET_NORMS:
            raise ValueError(f"target_norm must be one of {TARGET_NORMS}, got {target_norm!r}")
        if not 1 <= target_layers <= len(self.student.vit.blocks):
            raise ValueError(f"target_layers must be in [1, {len(self.student.vit.blocks)}], got {target_layers}")
        if align_on not in ALIGN_ON:
            raise ValueError(f"align_on must be one of {ALIGN_ON}, got {align_on!r}")
        self.target_layers, self.target_norm, self.target_ffn = target_layers, target_norm, target_ffn
        self.align_on = align_on
        if align_on != "encoder":  # the projector is then in no loss: DDP would wait for its gradients forever
            self.shared_proj.requires_grad_(False)
        # Share of the patches kept visible in the DSM whatever the curriculum's p (MaskingCurriculumHook sets it).
        self.dsm_min_visible = dsm_min_visible
        self._steps = 0

    def export_encoder(self) -> MultiModalViT:
        """The downstream backbone: the student encoder (the teacher is only a training target)."""
        return self.student

    def _decoder_positions(self, h: int, w: int, like: Tensor) -> Tensor:
        dim = self.enc_to_dec.out_features
        return build_sincos2d_pos_embed([h, w], dim, device=like.device, dtype=like.dtype)[None]

    def _student_tokens(self, modality: str, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Encode the visible patches of one modality: (tokens B x V x C, index, valid).

        The same steps as the exported encoder's downstream forward of that modality
        (``MultiModalViT.encode``: patch embedding, positions, prefix, norm_pre, blocks, final norm);
        with nothing masked the tokens are the downstream ones (``tests/test_mssdf_interface.py``).
        """
        vit = self.student
        tokens = vit.patch_embeds[modality](x)
        b, h, w, c = tokens.shape
        pos = vit.position_embedding(h, w)
        prefix = vit.vit.num_prefix_tokens
        index, valid = visible_index(mask)
        t = gather_tokens(tokens.reshape(b, h * w, c) + pos[:, prefix:], index)
        if prefix:
            cls = (vit.vit.cls_token + pos[:, :prefix]).expand(b, -1, -1)
            t = torch.cat([cls, t], 1)
            valid_all = torch.cat([valid.new_ones(b, prefix), valid], 1)
        else:
            valid_all = valid
        # No key mask when every token is real: the unmasked call is then exactly the encoder's own.
        t = vit.vit.norm_pre(vit.vit.pos_drop(t))
        t = vit.vit.blocks(t) if bool(valid_all.all()) else run_blocks(vit.vit.blocks, t, valid_all)
        return vit.vit.norm(t)[:, prefix:], index, valid

    @torch.no_grad()
    def _teacher_targets(self, modality: str, x: Tensor) -> Tensor:
        """Layer-normed final tokens of the teacher on the unmasked modality (B x N x C).

        With ``target_layers`` > 1, ``target_norm="instance"`` or ``target_ffn`` the targets are built as
        data2vec builds them instead (:meth:`_data2vec_targets`).
        """
        if self.target_layers > 1 or self.target_norm != "layer" or self.target_ffn:
            return self._data2vec_targets(modality, x)
        teacher = self.teacher.module
        tokens = teacher.patch_embeds[modality](x)
        b, h, w, c = tokens.shape
        t = (
            torch.cat([teacher.vit.cls_token.expand(b, -1, -1), tokens.reshape(b, h * w, c)], 1)
            if (teacher.vit.num_prefix_tokens)
            else tokens.reshape(b, h * w, c)
        )
        t = teacher.vit.norm_pre(t + teacher.position_embedding(h, w))
        for block in teacher.vit.blocks:
            t = block(t)
        t = teacher.vit.norm(t)[:, teacher.vit.num_prefix_tokens :]
        return F.layer_norm(t, (c,))

    @torch.no_grad()
    def _data2vec_targets(self, modality: str, x: Tensor) -> Tensor:
        """Targets averaged over the teacher's top ``target_layers`` blocks, as data2vec (2.0) makes them.

        Each block's output (the residual stream; the last block's through the encoder's final norm) or,
        with ``target_ffn``, its feed-forward output before the residual add (data2vec 2.0's images:
        ``end_of_block_targets: false``) is normalised: ``"instance"`` over the tokens of each tile per
        channel (data2vec 2.0: ``instance_norm_target_layer``), ``"layer"`` over the channels of each token.
        The average is layer-normed per token (``layer_norm_targets``). Instance norm takes out what all
        tokens of a tile share per channel (an image summary the student can predict without local content).
        The data2vec 2.0 image recipe is ``target_norm="instance", target_ffn=True`` over all blocks.
        """
        teacher = self.teacher.module
        tokens = teacher.patch_embeds[modality](x)
        b, h, w, c = tokens.shape
        prefix = teacher.vit.num_prefix_tokens
        t = tokens.reshape(b, h * w, c)
        if prefix:
            t = torch.cat([teacher.vit.cls_token.expand(b, -1, -1), t], 1)
        t = teacher.vit.norm_pre(t + teacher.position_embedding(h, w))
        blocks = teacher.vit.blocks
        first = len(blocks) - self.target_layers
        layers = []
        hooks = [blk.mlp.register_forward_hook(lambda _m, _i, out: layers.append(out)) for blk in blocks[first:]
                 ] if self.target_ffn else []  # fmt: skip
        try:
            for i, block in enumerate(blocks):
                t = block(t)
                if i >= first and not self.target_ffn:
                    layers.append(teacher.vit.norm(t) if i == len(blocks) - 1 else t)
        finally:
            for hook in hooks:
                hook.remove()
        normed = []
        for layer in layers:
            layer = layer[:, prefix:].float()
            if self.target_norm == "instance":
                normed.append(F.instance_norm(layer.transpose(1, 2)).transpose(1, 2))
            else:
                normed.append(F.layer_norm(layer, (c,)))
        return F.layer_norm(torch.stack(normed).mean(0), (c,))

    def _masks(self, raw: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        floor = {}
        if self.dsm_min_visible > 0:  # only then: the default draws exactly the random numbers it always did
            n = (raw["rgb"].shape[-2] // self.patch_size) * (raw["rgb"].shape[-1] // self.patch_size)
            floor = dict(min_dsm_visible=math.ceil(self.dsm_min_visible * n - 1e-9))
        rgb_mask, dsm_mask = mssdf_masks(
            raw["rgb"], raw["dsm"], p=self.dsm_extra_p, independent=self.independent_masks,
            dsm_valid=raw.get("dsm_valid"), **self.mask_cfg, **floor,
        )  # fmt: skip
        # Keep at least one DSM patch visible (only tiny test images can lose them all).
        empty = dsm_mask.all(1)
        if empty.any():
            dsm_mask[empty] = rgb_mask[empty]
        return rgb_mask, dsm_mask

    def _reconstruction_loss(self, pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        if self.rec_loss == "mse":
            per_token = (pred - target).pow(2).mean(-1)
        elif self.rec_loss == "cosine":
            per_token = 1 - F.cosine_similarity(pred, target, dim=-1)
        else:
            per_token = F.smooth_l1_loss(pred, target, reduction="none").mean(-1)
        m = mask.to(per_token.dtype)
        return (per_token * m).sum() / m.sum().clamp(min=1)

    def _decode(self, enc: dict, idx: dict, valid: dict, masks: dict, h: int, w: int) -> dict[str, Tensor]:
        """Fusion + shared reconstruction decoders: predicted teacher tokens of every position, per modality."""
        b, n = enc["rgb"].shape[0], h * w
        dpos = self._decoder_positions(h, w, enc["rgb"]).expand(b, -1, -1)
        # Fusion decoder: both modalities' visible tokens + fusion queries where either is visible.
        u_idx, u_valid = visible_index(masks["rgb"] & masks["dsm"])
        dec = [self.enc_to_dec(enc[m]) + gather_tokens(dpos, idx[m]) for m in self.modalities]
        fusion_pos = gather_tokens(dpos, u_idx)
        seq = torch.cat([*dec, self.fusion_token + fusion_pos], 1)
        seq_valid = torch.cat([valid["rgb"], valid["dsm"], u_valid], 1)
        fused = self.fusion_norm(run_blocks(self.fusion_decoder, seq, seq_valid)[:, -u_idx.shape[1] :])
        # Shared reconstruction decoder, both modalities in one batch: fused context + a mask token everywhere.
        ctx = (fused + fusion_pos).repeat(2, 1, 1)
        queries = torch.cat([self.mask_tokens[m].expand(b, n, -1) + dpos for m in self.modalities])
        rec_valid = torch.cat([u_valid.repeat(2, 1), u_valid.new_ones(2 * b, n)], 1)
        rec = self.rec_decoder_out(torch.cat([ctx, queries], 1), rec_valid)[:, -n:]
        return dict(zip(self.modalities, rec.split(b)))

    def _reconstruction(self, x: dict, masks: dict, targets: dict, h: int, w: int):
        enc, idx, valid = {}, {}, {}
        for m in self.modalities:
            enc[m], idx[m], valid[m] = self._student_tokens(m, x[m], masks[m])
        pred = self._decode(enc, idx, valid, masks, h, w)
        rec = {m: self._reconstruction_loss(pred[m], targets[m], masks[m]) for m in self.modalities}
        return enc, valid, pred, rec

    def loss(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """All loss terms for one batch of raw RGB + DSM (masks are drawn here, on the batch's device)."""
        masks = dict(zip(self.modalities, self._masks(inputs)))
        x = normalize_modalities(inputs)
        b, _, hh, ww = x["rgb"].shape
        h, w = hh // self.patch_size, ww // self.patch_size
        targets = {m: self._teacher_targets(m, x[m]) for m in self.modalities}
        if self.position_centred_targets and b > 1:
            # What the teacher's tokens share across images at a position is predictable from the position
            # alone (sin-cos positions: about a quarter of the target variance at init); without it the
            # reconstruction can only be learnt from content (see content_diagnostic).
            targets = {m: t - t.mean(0, keepdim=True) for m, t in targets.items()}
        enc, valid, pred, rec = self._reconstruction(x, masks, targets, h, w)

        lw = self.loss_weights
        losses = {f"loss_rec_{m}": lw["rec"] * rec[m] for m in self.modalities}
        pooled = {m: masked_mean(enc[m], valid[m]) for m in self.modalities}
        losses["loss_align"] = lw["align"] * self._alignment(pooled, pred)
        # Independence of the two modalities' decoded outputs, as the official code (HSIC on the decoder
        # outputs): each is pooled over its positions and L2-normalised, so the term is scale-free and its
        # gradient reaches the encoder through both decoders (a head trained by nothing else could zero it).
        decoded = [F.normalize(pred[m].mean(1), dim=-1) for m in self.modalities]
        losses["loss_hsic"] = lw["hsic"] * linear_hsic(*decoded)
        logits = torch.cat([self.modality_head(enc[m][valid[m]]) for m in self.modalities])
        labels = torch.cat(
            [torch.full((int(valid[m].sum()),), i, device=logits.device) for i, m in enumerate(self.modalities)]
        )
        losses["loss_mod"] = lw["mod"] * F.cross_entropy(logits, labels)
        # Collapse watch (logged, not optimised): a student whose features no longer differ between
        # images predicts position-only targets perfectly, so falling rec losses alone prove nothing.
        losses["feat_std_images"] = pooled["rgb"].detach().std(0).mean() if b > 1 else pooled["rgb"].new_zeros(())
        self._steps += 1
        if b > 1 and self.diagnostic_interval and self._steps % self.diagnostic_interval == 1:
            losses.update(self.content_diagnostic(x, masks, targets, rec, h, w))
        return losses

    def _alignment(self, pooled: dict[str, Tensor], pred: dict[str, Tensor]) -> Tensor:
        """InfoNCE between the two modalities of each tile, on what ``align_on`` says."""
        if self.align_on == "encoder":
            return info_nce(self.shared_proj(pooled["rgb"]), self.shared_proj(pooled["dsm"]), self.temperature)
        if self.align_on == "decoder":
            # As the official code: the decoders' outputs for both modalities (every position), no projector.
            return info_nce(pred["rgb"].mean(1), pred["dsm"].mean(1), self.temperature)
        # Token by token: the RGB prediction at a position must match the DSM prediction at the same position
        # better than the tile's other positions (negatives within the tile: it rewards local, not global, content).
        a, b = F.normalize(pred["rgb"], dim=-1), F.normalize(pred["dsm"], dim=-1)
        logits = a @ b.transpose(1, 2) / self.temperature  # B x N x N
        labels = torch.arange(logits.shape[1], device=logits.device).expand(logits.shape[0], -1)
        return 0.5 * (F.cross_entropy(logits.flatten(0, 1), labels.flatten())
                      + F.cross_entropy(logits.transpose(1, 2).flatten(0, 1), labels.flatten()))  # fmt: skip

    @torch.no_grad()
    def content_diagnostic(self, x: dict, masks: dict, targets: dict, rec: dict, h: int, w: int) -> dict[str, Tensor]:
        """Does reconstruction use image content or only position? (logged, not optimised)

        The student gets another sample's inputs (the batch rolled by one; same masks, so the same
        positions are visible) while the targets stay those of the original samples. A model that
        predicts from position alone does as well on the wrong inputs (ratio ~1); one that uses
        content does worse (ratio > 1). With fixed sin-cos positions about a quarter of the teacher
        target variance is position at init, so a falling loss alone cannot tell the two apart.
        """
        rolled = {m: x[m].roll(1, 0) for m in self.modalities}
        _, _, _, wrong = self._reconstruction(rolled, masks, targets, h, w)
        out = {}
        for m in self.modalities:
            out[f"content_ratio_{m}"] = wrong[m] / rec[m].detach().clamp(min=1e-12)
        return out

    def rec_decoder_out(self, seq: Tensor, valid: Tensor) -> Tensor:
        return self.rec_head(self.rec_norm(run_blocks(self.rec_decoder, seq, valid)))

    def forward(self, inputs: dict[str, Tensor], data_samples=None, mode: str = "loss"):
        if mode == "loss":
            return self.loss(inputs)
        if mode == "tensor":
            return self.student(normalize_modalities(inputs))
        raise ValueError(f"MSSDF supports modes 'loss' and 'tensor', not {mode!r}")
