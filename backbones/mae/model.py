"""MAE pretraining on the project's ``MultiModalViT`` with mmpretrain's decoder and pixel head.

The encoder is the same timm ViT every other method uses (one encoder definition keeps the
comparison fair); mmpretrain provides the 8-block decoder (``MAEPretrainDecoder``) and the
normalised-pixel loss (``MAEPretrainHead``). With RGB + DSM the fused patch tokens are
masked and both modalities' pixels are reconstructed (channels stacked in the target), so
MAE sees exactly the data MSSDF sees.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.config import ConfigDict
from mmengine.model import BaseModel
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from torch import Tensor

from rsbench.registry import MODELS

from ..normalize import normalize_modalities
from ..vit import MODALITY_CHANNELS, VIT_ARCHS, MultiModalViT


def random_masking(b: int, n: int, mask_ratio: float, device) -> tuple[Tensor, Tensor, Tensor]:
    """MAE's per-sample random masking: (ids_keep B x K, mask B x N with 1 = masked, ids_restore B x N)."""
    keep = int(round(n * (1 - mask_ratio)))
    noise = torch.rand(b, n, device=device)
    ids_shuffle = noise.argsort(1)
    ids_restore = ids_shuffle.argsort(1)
    mask = torch.ones(b, n, device=device)
    mask[:, :keep] = 0
    return ids_shuffle[:, :keep], torch.gather(mask, 1, ids_restore), ids_restore


@MODELS.register_module()
class MAE(BaseModel):
    """Masked autoencoder: encoder on the 25 % visible fused tokens, decoder predicts masked pixels."""

    #: The name checkpoints and result rows give this method (the backbone registry's ``method``).
    method = "mae"

    def __init__(
        self,
        arch: str = "vit_b16",
        img_size: int = 320,
        patch_size: int = 16,
        modalities: Sequence[str] = ("rgb", "dsm"),
        encoder_kwargs: dict | None = None,
        mask_ratio: float = 0.75,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        norm_pix: bool = True,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.modalities = tuple(modalities)
        self.arch, self.patch_size, self.mask_ratio = arch, patch_size, mask_ratio
        self.student = MultiModalViT(VIT_ARCHS[arch], self.modalities, img_size, patch_size, **(encoder_kwargs or {}))
        self.student.use_fixed_sincos_positions()
        grid = self.student.grid_size
        channels = sum(MODALITY_CHANNELS[m] for m in self.modalities)
        self.decoder = MMPRETRAIN_MODELS.build(
            ConfigDict(
                type="MAEPretrainDecoder", _scope_="mmpretrain", num_patches=grid[0] * grid[1], patch_size=patch_size,
                in_chans=channels, embed_dim=self.student.embed_dim, decoder_embed_dim=decoder_dim,
                decoder_depth=decoder_depth, decoder_num_heads=decoder_heads,
            )
        )  # fmt: skip
        self.decoder.init_weights()  # fixed sin-cos decoder positions (also re-run by the runner)
        self.head = MMPRETRAIN_MODELS.build(
            ConfigDict(
                type="MAEPretrainHead", _scope_="mmpretrain", norm_pix=norm_pix, patch_size=patch_size,
                in_channels=channels, loss=dict(type="PixelReconstructionLoss", criterion="L2"),
            )
        )  # fmt: skip

    def export_encoder(self) -> MultiModalViT:
        return self.student

    def loss(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        x = normalize_modalities(inputs)
        vit = self.student
        tokens = vit.embed(x)
        b, h, w, c = tokens.shape
        pos = vit.position_embedding(h, w)
        prefix = vit.vit.num_prefix_tokens
        ids_keep, mask, ids_restore = random_masking(b, h * w, self.mask_ratio, tokens.device)
        t = tokens.reshape(b, h * w, c) + pos[:, prefix:]
        t = t.gather(1, ids_keep[..., None].expand(-1, -1, c))
        cls = (vit.vit.cls_token + pos[:, :prefix]).expand(b, -1, -1)
        latent = vit.vit.norm(vit.vit.blocks(vit.vit.norm_pre(torch.cat([cls, t], 1))))
        pred = self.decoder(latent, ids_restore)  # B x N x p*p*C, the CLS output already dropped
        target = torch.cat([x[m] for m in self.modalities], 1)
        return {"loss_rec": self.head.loss(pred, target, mask)}

    def forward(self, inputs: dict[str, Tensor], data_samples=None, mode: str = "loss"):
        if mode == "loss":
            return self.loss(inputs)
        if mode == "tensor":
            return self.student(normalize_modalities(inputs))
        raise ValueError(f"MAE supports modes 'loss' and 'tensor', not {mode!r}")
