"""Bi-temporal change detection: Siamese encoder, per-scale |f1 - f2|, mmseg UPerHead; F1/IoU of change, mIoU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import MODELS as MMSEG_MODELS
from torch import nn

from rsdatasets.protocol import label_summary

from .base import MetricInfo, Task, TiledMetric, ratio, register_task, spatial_size
from .features import FrozenBackbone
from .preprocess import ModalityPreprocessor
from .probe import DenseProbe, check_head, probe_backbone
from .segmentation import norm_cfg

#: Modalities the data has at both dates, and the sample key of their second date.
BITEMPORAL = {"rgb": "rgb_t2"}


class ChangeDetectionModel(BaseModel):
    """One backbone shared by both dates -> |f1 - f2| at each of the four scales -> UPerHead (2 classes).

    UPerHead fuses the four difference maps top-down, then concatenates them at stride 4 before
    its classifier, so every scale's difference reaches the logits. Both dates go through the
    backbone as one batch of 2B: the same module and weights as two calls, in one pass.
    """

    def __init__(
        self,
        backbone: nn.Module,
        modalities: Sequence[str],
        head_channels: int = 128,
        norm: str = "GN",
        ignore_index: int = 255,
        class_weight: Sequence[float] | None = None,
    ) -> None:
        super().__init__(data_preprocessor=ModalityPreprocessor())
        self.backbone = backbone
        self.modalities = tuple(modalities)
        self.ignore_index = ignore_index
        loss = dict(
            type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True,
            class_weight=list(class_weight) if class_weight is not None else None,
        )  # fmt: skip
        self.decode_head = MMSEG_MODELS.build(
            ConfigDict(
                type="UPerHead", _scope_="mmseg", in_channels=list(backbone.out_channels), in_index=[0, 1, 2, 3],
                pool_scales=(1, 2, 3, 6), channels=head_channels, dropout_ratio=0.1, num_classes=2,
                out_channels=2, norm_cfg=norm_cfg(norm), align_corners=False, loss_decode=loss,
            )
        )  # fmt: skip

    def forward(self, inputs: dict, data_samples: dict | None = None, mode: str = "tensor"):
        if "features" in inputs:  # frozen protocol: cached encoder maps of both dates
            b = inputs["features"][0].shape[0]
            both = {"features": [torch.cat([f1, f2]) for f1, f2 in zip(inputs["features"], inputs["features_t2"])]}
        else:
            b = inputs[self.modalities[0]].shape[0]
            both = {m: torch.cat([inputs[m], inputs[BITEMPORAL[m]]]) for m in self.modalities}
        diffs = [(f[:b] - f[b:]).abs() for f in self.backbone(both)]
        size = spatial_size(inputs)
        logits = F.interpolate(self.decode_head(diffs), size=size, mode="bilinear", align_corners=False)
        if mode == "loss":
            target = data_samples["change"].long()
            return {"loss_change": self.decode_head.loss_decode(logits, target, ignore_index=self.ignore_index)}
        if mode == "predict":
            return [{"pred": p, "gt": g} for p, g in zip(logits.argmax(1), data_samples["change"])]
        return logits


class ChangeProbe(DenseProbe):
    """The frozen protocol's change head: both dates' encoder maps -> ``ProbeFeatures`` -> |d1 - d2| -> linear."""

    def __init__(self, backbone: nn.Module, ignore_index: int = 255, class_weight: Sequence[float] | None = None):
        super().__init__(backbone, 2)
        self.ignore_index = ignore_index
        self.class_weight = None if class_weight is None else torch.tensor(list(class_weight), dtype=torch.float32)

    def forward(self, inputs: dict, data_samples: dict | None = None, mode: str = "tensor"):
        first = self.backbone(inputs) if "features" not in inputs else inputs["features"]
        second = inputs["features_t2"] if "features_t2" in inputs else self.backbone(
            {k.replace("_t2", ""): v for k, v in inputs.items() if k.endswith("_t2")}
        )  # fmt: skip
        b = first[0].shape[0]
        both = self.features([torch.cat([f1, f2]) for f1, f2 in zip(first, second)])  # one BN batch for both dates
        logits = self.head((both[:b] - both[b:]).abs())
        logits = F.interpolate(logits, size=spatial_size(inputs), mode="bilinear", align_corners=False)
        if mode == "loss":
            weight = None if self.class_weight is None else self.class_weight.to(logits.device)
            target = data_samples["change"].long()
            return {"loss_change": F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index)}
        if mode == "predict":
            return [{"pred": p, "gt": g} for p, g in zip(logits.argmax(1), data_samples["change"])]
        return logits


class ChangeMetric(TiledMetric):
    """Change-class ``F1_change`` and ``IoU_change``, binary ``mIoU`` over {no change, change}, ``OA``; in %.

    Pixel counts are summed over the whole test set before the ratios (mmseg's convention), so
    tiles without change weigh by their pixels, not as a 0/0 per tile. With neither true nor
    predicted change anywhere, F1_change and IoU_change are NaN (undefined), and mIoU is the
    no-change IoU alone. Tile statistics: each tile's change-class intersection, predicted and true areas.
    """

    primary = "F1_change"

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            self.results.append(IoUMetric.intersect_and_union(s["pred"].cpu(), s["gt"].cpu(), 2, self.ignore_index))

    def tile_stats(self, results: list) -> dict[str, np.ndarray]:
        inter, _, pred, label = (torch.stack(r)[:, 1].double().numpy() for r in zip(*results))
        return {"intersect": inter, "pred": pred, "label": label}

    @staticmethod
    def resample(stats: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        den = weights @ stats["pred"] + weights @ stats["label"]
        return 100 * ratio(2 * (weights @ stats["intersect"]), den)

    def metrics_from(self, results: list) -> dict[str, float]:
        inter, union, pred, label = (torch.stack(r).sum(0).double().numpy() for r in zip(*results))
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, inter / union, np.nan)
            f1 = 2 * inter[1] / (pred[1] + label[1]) if pred[1] + label[1] > 0 else np.nan
        return {
            "F1_change": 100 * float(f1),
            "IoU_change": 100 * float(iou[1]),
            "mIoU": 100 * float(np.nanmean(iou)),
            "OA": 100 * float(inter.sum() / max(label.sum(), 1)),
        }


@register_task("change_detection")
class ChangeDetectionTask(Task):
    """Building change between ``rgb`` and ``rgb_t2`` (target ``change``); stratified by any-change tiles."""

    primary_metric = "F1_change"
    metrics = (MetricInfo("F1_change"), MetricInfo("IoU_change"), MetricInfo("mIoU"), MetricInfo("OA"))
    target_keys = ("change",)

    def __init__(
        self,
        head_channels: int = 128,
        norm: str = "GN",
        ignore_index: int = 255,
        class_weight: Sequence[float] | None = (1.0, 10.0),
        head: str = "full",
    ) -> None:
        self.head = check_head(head)  # "probe": the frozen protocol's linear probe under fine-tuning too
        self.head_channels = head_channels
        self.norm = norm  # GN by default: batch-size-1 training must work (BN fails on the PPM's 1x1 maps)
        self.ignore_index = ignore_index
        # Change is ~2 % of the pixels: unweighted cross-entropy learns "never changed" within short
        # budgets (F1 0 for every backbone), so the change class is weighted 10x by default; pass
        # class_weight=None for plain cross-entropy.
        self.class_weight = class_weight

    def input_modalities(self, requested: Sequence[str]) -> tuple[str, ...]:
        """Only the requested modalities that exist at both dates (RGB); raises if none does."""
        both = tuple(m for m in requested if m in BITEMPORAL)
        if not both:
            raise ValueError(f"change detection needs a modality present at both dates ({sorted(BITEMPORAL)})")
        return both

    def strata(self, dataset) -> np.ndarray:
        return label_summary(dataset, "has_change")

    def feature_views(self, modalities: Sequence[str]) -> dict[str, dict[str, str]]:
        """Both dates: ``features`` of the first, ``features_t2`` of the second (same encoder, same modalities)."""
        modalities = self.input_modalities(modalities)
        return {"features": {m: m for m in modalities}, "features_t2": {m: BITEMPORAL[m] for m in modalities}}

    def collate(self, samples: Sequence[Mapping[str, torch.Tensor]], modalities: Sequence[str]) -> dict:
        """The base batch plus the second date of each modality (``rgb_t2``) in the inputs."""
        modalities = self.input_modalities(modalities)
        batch = super().collate(samples, modalities)
        if "features" in batch["inputs"]:
            return batch
        for m in modalities:
            key = BITEMPORAL[m]
            batch["inputs"][key] = torch.stack([s[key] for s in samples])
        return batch

    def build_model(self, backbone: nn.Module, modalities: Sequence[str]) -> BaseModel:
        unknown = [m for m in modalities if m not in BITEMPORAL]
        if unknown:
            raise ValueError(f"change detection has no second date for {unknown}; use input_modalities() first")
        if isinstance(backbone, FrozenBackbone) or self.head == "probe":  # a linear probe (tasks/probe.py)
            return ChangeProbe(probe_backbone(backbone), self.ignore_index, self.class_weight)
        return ChangeDetectionModel(
            backbone, modalities, self.head_channels, self.norm, self.ignore_index, self.class_weight
        )

    def build_metric(self) -> BaseMetric:
        return ChangeMetric(self.ignore_index)
