"""Height regression from RGB (nDSM by default): mmseg UPerHead as a 1-channel regressor, masked smooth-L1 loss.

Metrics (pixels pooled over the whole test set, nodata excluded everywhere):

* ``RMSE`` and ``MAE`` in metres over every valid pixel;
* ``AbsRel_ge<h>m`` (mean of |pred - gt| / gt, a fraction) and ``delta1.25_ge<h>m`` (% of pixels with
  max(pred/gt, gt/pred) < 1.25) only where gt >= ``min_height`` (default 1 m). nDSM ground pixels are
  ~0 m, where relative errors divide by ~0 and explode, so the relative metrics are restricted to
  above-ground objects and their names say so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmseg.registry import MODELS as MMSEG_MODELS
from torch import nn

from rsdatasets.protocol import label_summary

from .base import MetricInfo, Task, TiledMetric, ratio, register_task, spatial_size
from .features import FrozenBackbone
from .preprocess import ModalityPreprocessor
from .probe import DenseProbe, check_head, probe_backbone
from .segmentation import norm_cfg

TARGETS = ("ndsm", "dsm")


class DepthModel(BaseModel):
    """Backbone -> UPerHead with one output channel (a regressor) -> bilinear upsampling to the input size.

    The loss is smooth-L1 (Huber) on valid pixels, in metres, with a wide quadratic zone (``beta``, 5 m
    by default). Pure L1 settles on the all-ground median for nDSM (about 70 % of pixels are under 1 m)
    and in our tiny runs never left it; the quadratic zone gives tall pixels a pull that grows with
    their error, as RMSE (the primary metric) does, while errors beyond ``beta`` (misplaced building
    edges, 10-20 m) stay linear so they do not dominate. Nodata pixels are dropped by boolean
    indexing, so whatever they hold (even NaN) cannot reach the loss. The head predicts in units of
    ``height_scale`` metres so that its small-std init and Adam's ~lr-sized steps move heights on the
    scale of buildings rather than centimetres.
    """

    def __init__(
        self,
        backbone: nn.Module,
        target: str,
        head_channels: int = 128,
        norm: str = "GN",
        beta: float = 5.0,
        height_scale: float = 10.0,
    ) -> None:
        super().__init__(data_preprocessor=ModalityPreprocessor())
        self.backbone = backbone
        self.target = target
        self.beta = beta
        self.height_scale = height_scale
        # ``threshold`` is unused by a regressor; it is set only so mmseg does not warn about binary segmentation.
        self.decode_head = MMSEG_MODELS.build(
            ConfigDict(
                type="UPerHead", _scope_="mmseg", in_channels=list(backbone.out_channels), in_index=[0, 1, 2, 3],
                pool_scales=(1, 2, 3, 6), channels=head_channels, dropout_ratio=0.0, num_classes=1,
                out_channels=1, threshold=0.5, norm_cfg=norm_cfg(norm), align_corners=False,
            )
        )  # fmt: skip

    def forward(self, inputs: dict, data_samples: dict | None = None, mode: str = "tensor"):
        feats = self.backbone(inputs)
        size = spatial_size(inputs)
        out = F.interpolate(self.decode_head(feats), size=size, mode="bilinear", align_corners=False)  # B,1,H,W
        return height_outputs(out * self.height_scale, data_samples, mode, self.target, self.beta)


class DepthProbe(DenseProbe):
    """The frozen protocol's height head: a linear per-pixel regressor on the encoder's maps (loss as DepthModel)."""

    def __init__(self, backbone: nn.Module, target: str, beta: float = 5.0, height_scale: float = 10.0) -> None:
        super().__init__(backbone, 1)
        self.target, self.beta, self.height_scale = target, beta, height_scale

    def forward(self, inputs: dict, data_samples: dict | None = None, mode: str = "tensor"):
        return height_outputs(self.logits(inputs) * self.height_scale, data_samples, mode, self.target, self.beta)


def height_outputs(pred: torch.Tensor, data_samples: dict | None, mode: str, target: str, beta: float):
    """What both height heads return for ``mode``: the smooth-L1 loss over valid pixels, per-sample
    predictions with their targets and masks, or the raw prediction."""
    if mode == "loss":
        truth, valid = data_samples[target].float(), valid_mask(data_samples, target)
        if not valid.any():  # an all-nodata batch: a zero loss that keeps the graph, not NaN
            return {"loss_height": pred.sum() * 0.0}
        return {"loss_height": F.smooth_l1_loss(pred[valid], truth[valid], beta=beta)}
    if mode == "predict":
        return [
            {"pred": p, "gt": g, "valid": v}
            for p, g, v in zip(pred, data_samples[target], valid_mask(data_samples, target))
        ]
    return pred


def valid_mask(data_samples: dict, target: str) -> torch.Tensor:
    """Pixels with a measured height: ``dsm_valid`` and a finite target."""
    return data_samples["dsm_valid"].bool() & torch.isfinite(data_samples[target])


def depth_sums(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, min_height: float) -> np.ndarray:
    """Sufficient statistics of one sample (float64): [n, sum sq err, sum abs err, n_ge, sum rel err, n_delta].

    Hand-written: mmseg has no regression metric and mmdet's are for boxes.
    """
    p, g = pred[valid].double(), gt[valid].double()  # indexing first: nodata values never enter the arithmetic
    err = p - g
    tall = g >= min_height
    pt, gt_tall = p[tall], g[tall]
    # A non-positive prediction can never be within 25 % of a positive height: clamp so the ratio is huge.
    ratio = torch.maximum(pt.clamp(min=1e-6) / gt_tall, gt_tall / pt.clamp(min=1e-6))
    sums = [err.numel(), (err**2).sum(), err.abs().sum(), tall.sum(), ((pt - gt_tall).abs() / gt_tall).sum()]
    return np.array([float(v) for v in (*sums, (ratio < 1.25).sum())], dtype=np.float64)


class DepthMetric(TiledMetric):
    """``RMSE``, ``MAE`` (m), ``AbsRel_ge<h>m`` (fraction) and ``delta1.25_ge<h>m`` (%); see the module docstring.

    Tile statistics: each tile's valid-pixel count and sum of squared errors (RMSE pools pixels over tiles).
    """

    primary = "RMSE"

    def __init__(self, min_height: float = 1.0) -> None:
        super().__init__()
        self.min_height = float(min_height)
        self.suffix = f"_ge{self.min_height:g}m"

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            self.results.append(depth_sums(s["pred"].cpu(), s["gt"].cpu(), s["valid"].cpu(), self.min_height))

    def tile_stats(self, results: list) -> dict[str, np.ndarray]:
        sums = np.asarray(results, dtype=np.float64)
        return {"n": sums[:, 0], "sse": sums[:, 1]}

    @staticmethod
    def resample(stats: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        return np.sqrt(ratio(weights @ stats["sse"], weights @ stats["n"]))

    def metrics_from(self, results: list) -> dict[str, float]:
        n, sse, sae, n_ge, sum_rel, n_delta = np.sum(results, axis=0)
        nan = float("nan")
        return {
            "RMSE": float(np.sqrt(sse / n)) if n else nan,
            "MAE": float(sae / n) if n else nan,
            f"AbsRel{self.suffix}": float(sum_rel / n_ge) if n_ge else nan,
            f"delta1.25{self.suffix}": float(100 * n_delta / n_ge) if n_ge else nan,
        }


@register_task("depth")
class DepthTask(Task):
    """Dense height regression from RGB; the DSM is only ever the target. Stratified by tile mean nDSM."""

    primary_metric = "RMSE"
    metrics = (
        MetricInfo("RMSE", higher_is_better=False), MetricInfo("MAE", higher_is_better=False),
        MetricInfo("AbsRel_", higher_is_better=False), MetricInfo("delta1.25_"),
    )  # fmt: skip

    def __init__(
        self,
        target: str = "ndsm",
        min_height: float = 1.0,
        head_channels: int = 128,
        norm: str = "GN",
        strata_bins: int = 4,
        beta: float = 5.0,
        head: str = "full",
    ) -> None:
        self.head = check_head(head)  # "probe": the frozen protocol's linear probe under fine-tuning too
        if target not in TARGETS:
            raise ValueError(f"unknown height target {target!r}; choose one of {TARGETS}")
        self.target = target
        self.target_keys = (target, "dsm_valid")
        self.min_height = min_height
        self.head_channels = head_channels
        self.norm = norm  # GN by default: batch-size-1 training must work (BN fails on the PPM's 1x1 maps)
        self.strata_bins = strata_bins
        self.beta = beta  # smooth-L1 quadratic zone in metres; see DepthModel

    def input_modalities(self, requested: Sequence[str]) -> tuple[str, ...]:
        """Always RGB alone: a height input would leak the target."""
        return ("rgb",)

    def strata(self, dataset) -> np.ndarray:
        """Quantile bin of each tile's mean nDSM over valid pixels (equal-count bins; ties may merge bins)."""
        means = label_summary(dataset, "mean_height")
        edges = np.quantile(means, np.linspace(0, 1, self.strata_bins + 1)[1:-1])
        return np.digitize(means, edges).astype(np.int64)

    def build_model(self, backbone: nn.Module, modalities: Sequence[str]) -> BaseModel:
        if isinstance(backbone, FrozenBackbone) or self.head == "probe":  # a linear probe (tasks/probe.py)
            return DepthProbe(probe_backbone(backbone), self.target, self.beta)
        return DepthModel(backbone, self.target, self.head_channels, self.norm, self.beta)

    def build_metric(self) -> BaseMetric:
        return DepthMetric(self.min_height)
