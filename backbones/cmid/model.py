"""CMID (Contrastive Mask Image Distillation, Muhtar et al., TGRS 2023) as an mmengine model.

A student encoder sees two block-masked views of each sample (the whole image and a random
resized, flipped, colour-augmented crop) with a learnable mask token added at its stem;
an EMA teacher (``TeacherEMAHook``) sees both views unmasked. Three branches train the
student, all weighted 1 and logged separately:

- MIM: a 1 x 1 conv + PixelShuffle decoder predicts the raw pixels of every modality from the
  student's last map (``loss_mim_l1`` focal L1 on masked pixels, ``loss_mim_fft`` focal
  frequency loss);
- global: MoCo v2 InfoNCE between the student's projection of one view and the teacher's
  projection of the other, with a queue of teacher keys as negatives (``loss_global``);
- local: DINO-style self-distillation at matched spatial positions of the two views: the
  student's prototype logits at a position follow the teacher's at the nearest position of
  the other view (``loss_local``).

The encoder is the project's shared ``MultiModalViT`` (to compare with MSSDF and MAE on the
same network) or a timm ResNet-50 / Swin-B (``backbones/cnn.py``, the official CMID
encoders); the downstream backbone is the student encoder. Not a port of the official code
(github.com/NJU-LHRS/official-CMID): deviations are listed in docs/deviations.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.model import BaseModel, ExponentialMovingAverage
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from torch import Tensor, nn

from rsbench.registry import MODELS

from ..cnn import MultiModalResNet, MultiModalSwin
from ..normalize import normalize_modalities
from ..vit import MODALITY_CHANNELS, VIT_ARCHS, MultiModalViT
from .heads import KeyQueue, LocalHead, MIMDecoder, gather_positions, match_positions
from .losses import LocalDistillLoss, MIMLoss
from .views import block_mask, colour_augmentation, fill_masked, make_views, upsample_mask

#: Hierarchical encoders by short name: (timm architecture, wrapper).
CNN_ARCHS = {
    "resnet50": ("resnet50", MultiModalResNet),
    "swin_b": ("swin_base_patch4_window7_224", MultiModalSwin),
}
DEFAULT_LOSS_WEIGHTS = {"mim": 1.0, "global": 1.0, "local": 1.0}


def build_encoder(arch: str, modalities: Sequence[str], img_size: int, patch_size: int, **kwargs) -> nn.Module:
    """The student encoder: a shared ViT (``vit_t16`` ...) or a hierarchical one (``resnet50``, ``swin_b``)."""
    if arch in VIT_ARCHS:
        vit = MultiModalViT(VIT_ARCHS[arch], modalities, img_size, patch_size, **kwargs)
        vit.use_fixed_sincos_positions()  # as MSSDF and MAE on the same encoder
        return vit
    if arch in CNN_ARCHS:
        timm_arch, wrapper = CNN_ARCHS[arch]
        return wrapper(timm_arch, modalities, img_size=img_size, **kwargs)
    raise ValueError(f"CMID encoder {arch!r} is not one of {sorted(VIT_ARCHS) + sorted(CNN_ARCHS)}")


def encoder_features(encoder: nn.Module, x: dict[str, Tensor], stem_mask: Tensor | None = None,
                     mask_token: Tensor | None = None) -> Tensor:  # fmt: skip
    """The encoder's last map (B x C x h x w), with ``mask_token`` added at the stem where ``stem_mask`` is True."""
    if isinstance(encoder, MultiModalViT):
        tokens = encoder.embed(x)  # B x h x w x C
        if stem_mask is not None:
            tokens = tokens + stem_mask[..., None].to(tokens.dtype) * mask_token
        return encoder.encode(tokens)[-1]
    stem = encoder.embed(x)  # B x C x h x w
    if stem_mask is not None:
        stem = stem + stem_mask[:, None].to(stem.dtype) * mask_token[:, None, None]
    return encoder.forward_features(stem)[-1]


class CMIDStudent(nn.Module):
    """Everything the EMA teacher mirrors: encoder, global projector and local head (the official momentum pairs)."""

    def __init__(self, encoder: nn.Module, projector: nn.Module, local_head: LocalHead) -> None:
        super().__init__()
        self.encoder, self.projector, self.local_head = encoder, projector, local_head

    def project(self, feat: Tensor) -> Tensor:
        """L2-normalised global embedding of a B x C x h x w map."""
        return F.normalize(self.projector((feat,))[0], dim=-1)


@MODELS.register_module()
class CMID(BaseModel):
    """Contrastive mask image distillation on RGB (+ DSM, + ...): MIM + global MoCo + local DINO branches.

    Defaults are the paper / official ``pt_config.yaml`` values (queue 65,536, 2,048
    prototypes, 20 matched positions, mask 60 % of 32-px blocks); CPU configs shrink them.
    The knobs that are not the paper's:

    - ``arch``: ``resnet50`` / ``swin_b`` (the official encoders) or a shared ViT (``vit_t16`` ...);
      ``patch_size`` and ``img_size`` shape the ViT only (ResNet/Swin take any size);
    - ``head_norm``: the local head's norm, ``"LN"`` by default because it works for any batch,
      batch 1 included (``"BN"`` is the official ResNet-50 setting, ``"none"`` the Swin one);
    - ``symmetric=False``: one direction per step (drawn at random) at half the cost;
    - ``loss_weights``: ``{"mim", "global", "local"}``, all 1 as in the paper.
    """

    #: The name checkpoints and result rows give this method (the backbone registry's ``method``).
    method = "cmid"

    def __init__(
        self,
        arch: str = "resnet50",
        img_size: int = 224,
        patch_size: int = 16,
        modalities: Sequence[str] = ("rgb", "dsm"),
        encoder_kwargs: dict | None = None,
        mask_ratio: float = 0.6,
        mask_block: int = 32,
        proj_hidden: int = 2048,
        proj_dim: int = 256,
        queue_size: int = 65536,
        temperature: float = 0.2,
        num_matches: int = 20,
        prototypes: int = 2048,
        head_hidden: int = 2048,
        head_bottleneck: int = 256,
        head_layers: int = 3,
        head_norm: str = "LN",
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        centre_momentum: float = 0.9,
        focal_alpha: float = 0.2,
        focal_gamma: float = 1.0,
        fft_weight: float = 1.0,
        fft_unmask_weight: float = 0.001,
        crop_scale: Sequence[float] = (0.3, 1.0),
        colour_augment: bool = True,
        symmetric: bool = True,
        loss_weights: dict | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.arch, self.img_size, self.modalities = arch, img_size, tuple(modalities)
        encoder = build_encoder(arch, self.modalities, img_size, patch_size, **(encoder_kwargs or {}))
        self.stride = encoder.patch_size  # stride of the last map: ViT patch, 32 for ResNet/Swin
        self.stem_stride = getattr(encoder, "embed_stride", encoder.patch_size)
        if mask_block % self.stem_stride:
            raise ValueError(
                f"mask_block {mask_block} must be a multiple of the encoder's stem stride {self.stem_stride} "
                "(ViT: its patch size), where the mask token is added"
            )
        self.mask_ratio, self.mask_block = mask_ratio, mask_block
        channels = encoder.out_channels[-1] if arch in CNN_ARCHS else encoder.embed_dim
        projector = MMPRETRAIN_MODELS.build(
            ConfigDict(type="MoCoV2Neck", _scope_="mmpretrain", in_channels=channels, hid_channels=proj_hidden,
                       out_channels=proj_dim, with_avg_pool=True)
        )  # fmt: skip
        local_head = LocalHead(channels, prototypes, head_hidden, head_bottleneck, head_layers, head_norm)
        self.student = CMIDStudent(encoder, projector, local_head)
        # The teacher starts as an exact copy of the student and only moves by EMA (no gradients).
        self.teacher = ExponentialMovingAverage(self.student, momentum=0.004)
        self.teacher.requires_grad_(False)
        self.mask_token = nn.Parameter(torch.zeros(encoder.embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        in_chans = sum(MODALITY_CHANNELS[m] for m in self.modalities)
        self.mim_decoder = MIMDecoder(channels, in_chans, self.stride)
        self.mim_loss = MIMLoss(focal_alpha, focal_gamma, fft_weight, fft_unmask_weight)
        self.queue = KeyQueue(queue_size, proj_dim)
        self.contrastive = MMPRETRAIN_MODELS.build(
            ConfigDict(type="ContrastiveHead", _scope_="mmpretrain", loss=dict(type="CrossEntropyLoss"),
                       temperature=temperature)
        )  # fmt: skip
        self.local_loss = LocalDistillLoss(prototypes, student_temp, teacher_temp, centre_momentum)
        self.num_matches = num_matches
        self.crop_scale = tuple(crop_scale)
        self.colour = colour_augmentation(img_size) if colour_augment else None
        self.symmetric = symmetric
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **(loss_weights or {})}

    def export_encoder(self) -> nn.Module:
        """The downstream backbone: the student encoder (the teacher is only a training target)."""
        return self.student.encoder

    def _pixel_targets(self, raw: dict[str, Tensor], x: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Stacked normalised modalities (the MIM target) and per-channel validity (nodata = 0)."""
        target = torch.cat([x[m] for m in self.modalities], 1)
        valid = [
            raw[f"{m}_valid"].to(target.dtype).expand(-1, MODALITY_CHANNELS[m], -1, -1)
            if f"{m}_valid" in raw else torch.ones_like(x[m])
            for m in self.modalities
        ]  # fmt: skip
        return target, torch.cat(valid, 1)

    def _masked_student(self, raw: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Mask one view block-wise and encode it: (student map, MIM prediction, target, loss weight)."""
        x = normalize_modalities(raw)
        b, _, size, _ = x[self.modalities[0]].shape
        if size % self.mask_block:
            raise ValueError(f"input size {size} is not a multiple of mask_block {self.mask_block}")
        blocks = block_mask(b, (size // self.mask_block,) * 2, self.mask_ratio, device=self.mask_token.device)
        pixel_mask = upsample_mask(blocks, self.mask_block)
        masked = {m: fill_masked(x[m], pixel_mask) for m in self.modalities}
        stem_mask = upsample_mask(blocks, self.mask_block // self.stem_stride)
        feat = encoder_features(self.student.encoder, masked, stem_mask, self.mask_token)
        target, valid = self._pixel_targets(raw, x)
        weight = pixel_mask[:, None].to(valid.dtype) * valid
        return feat, self.mim_decoder(feat), target, weight

    @torch.no_grad()
    def _teacher(self, raw: dict[str, Tensor]) -> Tensor:
        return encoder_features(self.teacher.module.encoder, normalize_modalities(raw))

    def loss(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """All loss terms for one batch of raw modalities (views and masks are drawn here, on the batch's device).

        Symmetric (the official code): the student encodes both masked views and each branch
        pairs it with the teacher on the other view. Otherwise one direction, drawn per step,
        at half the cost (every loss term is then one of the two symmetric halves).
        """
        size = inputs[self.modalities[0]].shape[-1]
        if size % self.stride:
            raise ValueError(f"CMID input size {size} must be a multiple of the encoder's output stride {self.stride}")
        views = make_views(inputs, self.modalities, size // self.stride, self.crop_scale, self.colour)
        pairs = [(0, 1), (1, 0)] if self.symmetric else [(0, 1) if torch.rand(()) < 0.5 else (1, 0)]
        student, teacher, l1, fft = {}, {}, [], []
        for s, t in pairs:
            feat, pred, target, weight = self._masked_student(views[s][0])
            view_l1, view_fft = self.mim_loss(pred, target, weight)
            student[s] = feat
            teacher[t] = self._teacher(views[t][0])
            l1.append(view_l1)
            fft.append(view_fft)
        lw = self.loss_weights
        losses = {"loss_mim_l1": lw["mim"] * sum(l1) / len(l1), "loss_mim_fft": lw["mim"] * sum(fft) / len(fft)}

        # Global: a masked view's query against the other, unmasked view's key; the queue holds past keys.
        negatives = self.queue.keys.clone().T
        global_loss, keys = [], []
        for s, t in pairs:
            q = self.student.project(student[s])
            with torch.no_grad():
                keys.append(self.teacher.module.project(teacher[t]))
            global_loss.append(self.contrastive.loss((q * keys[-1]).sum(-1, keepdim=True), q @ negatives))
        losses["loss_global"] = lw["global"] * sum(global_loss) / len(global_loss)
        self.queue.push(torch.cat(keys))

        # Local: positions of the student's view matched to the nearest positions of the teacher's view.
        s_logits, t_logits = [], []
        for s, t in pairs:
            loc_s, loc_t = (views[v][1].to(student[s].device) for v in (s, t))
            idx_s, idx_t = match_positions(loc_s, loc_t, self.num_matches)
            s_logits.append(self.student.local_head(gather_positions(student[s], idx_s)))
            with torch.no_grad():
                t_logits.append(self.teacher.module.local_head(gather_positions(teacher[t], idx_t)))
        losses["loss_local"] = lw["local"] * self.local_loss(torch.cat(s_logits), torch.cat(t_logits))
        # Collapse watch (logged, not optimised): the spread of pooled student features across images.
        pooled = next(iter(student.values())).detach().mean((2, 3))
        losses["feat_std_images"] = pooled.std(0).mean() if pooled.shape[0] > 1 else pooled.new_zeros(())
        return losses

    def forward(self, inputs: dict[str, Tensor], data_samples=None, mode: str = "loss"):
        if mode == "loss":
            return self.loss(inputs)
        if mode == "tensor":
            return self.student.encoder(normalize_modalities(inputs))
        raise ValueError(f"CMID supports modes 'loss' and 'tensor', not {mode!r}")
