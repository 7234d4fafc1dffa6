"""Semantic segmentation: mmseg UPerHead (+ auxiliary FCN head) on the backbone pyramid; mIoU, mF1, OA."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

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

DEFAULT_CLASSES = ("impervious", "building", "low_vegetation", "tree", "car", "clutter")


def norm_cfg(norm: str) -> dict:
    """mmcv norm config by short name; GroupNorm keeps batch-size-1 training possible (BN cannot on 1x1 maps)."""
    if norm == "GN":
        return dict(type="GN", num_groups=8, requires_grad=True)
    return dict(type=norm, requires_grad=True)


class SegmentationModel(BaseModel):
    """Backbone -> UPerHead (and an auxiliary FCNHead on stride 16, as in the MSSDF Potsdam protocol)."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        head_channels: int = 128,
        aux_weight: float = 0.4,
        ignore_index: int = 255,
        norm: str = "BN",
        crop_size: int | None = None,
        stride: int | None = None,
    ) -> None:
        super().__init__(data_preprocessor=ModalityPreprocessor())
        self.backbone = backbone
        self.ignore_index = ignore_index
        self.crop_size, self.stride = crop_size, stride
        in_channels = list(backbone.out_channels)
        loss = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True)
        self.decode_head = MMSEG_MODELS.build(
            ConfigDict(
                type="UPerHead", _scope_="mmseg", in_channels=in_channels, in_index=[0, 1, 2, 3],
                pool_scales=(1, 2, 3, 6), channels=head_channels, dropout_ratio=0.1, num_classes=num_classes,
                norm_cfg=norm_cfg(norm), align_corners=False, loss_decode=loss,
            )
        )  # fmt: skip
        self.aux_head = None
        if aux_weight > 0:
            self.aux_head = MMSEG_MODELS.build(
                ConfigDict(
                    type="FCNHead", _scope_="mmseg", in_channels=in_channels[2], in_index=2,
                    channels=max(head_channels // 2, 16), num_convs=1, concat_input=False, dropout_ratio=0.1,
                    num_classes=num_classes, norm_cfg=norm_cfg(norm), align_corners=False,
                    loss_decode=dict(loss, loss_weight=aux_weight),
                )
            )  # fmt: skip

    def _logits(self, inputs: dict) -> torch.Tensor:
        size = spatial_size(inputs)
        return F.interpolate(self.decode_head(self.backbone(inputs)), size=size, mode="bilinear", align_corners=False)

    def slide_logits(self, inputs: dict) -> torch.Tensor:
        """Logits of a tile larger than the training crop: overlapping crop windows, averaged.

        Hand-written because mmseg's ``slide_inference`` belongs to its EncoderDecoder and takes
        one stacked tensor; the windows are the same (stride ``crop - crop // 3`` by default, the last
        window flush with the border).
        """
        x0 = next(iter(inputs.values()))
        h, w = x0.shape[-2:]
        crop, stride = self.crop_size, self.stride or self.crop_size - self.crop_size // 3
        out, count = None, x0.new_zeros(1, 1, h, w)
        for y in sorted({*range(0, max(h - crop, 0) + 1, stride), max(h - crop, 0)}):
            for x in sorted({*range(0, max(w - crop, 0) + 1, stride), max(w - crop, 0)}):
                window = {k: v[..., y : y + crop, x : x + crop] for k, v in inputs.items()}
                logits = self._logits(window)
                out = x0.new_zeros(x0.shape[0], logits.shape[1], h, w) if out is None else out
                out[..., y : y + crop, x : x + crop] += logits
                count[..., y : y + crop, x : x + crop] += 1
        return out / count

    def forward(self, inputs: dict, data_samples: dict | None = None, mode: str = "tensor"):
        size = spatial_size(inputs)
        # Cached features (frozen protocol) describe the whole tile: no windows to slide.
        if mode != "loss" and self.crop_size and max(size) > self.crop_size and "image_hw" not in inputs:
            logits = self.slide_logits(inputs)
            if mode == "predict":
                return [{"pred": p, "gt": g} for p, g in zip(logits.argmax(1), data_samples["mask"])]
            return logits
        feats = self.backbone(inputs)
        logits = F.interpolate(self.decode_head(feats), size=size, mode="bilinear", align_corners=False)
        if mode == "loss":
            target = data_samples["mask"].long()
            losses = {"loss_seg": self.decode_head.loss_decode(logits, target, ignore_index=self.ignore_index)}
            if self.aux_head is not None:
                aux = F.interpolate(self.aux_head(feats), size=size, mode="bilinear", align_corners=False)
                losses["loss_aux"] = self.aux_head.loss_decode(aux, target, ignore_index=self.ignore_index)
            return losses
        if mode == "predict":
            preds = logits.argmax(1)
            return [{"pred": p, "gt": g} for p, g in zip(preds, data_samples["mask"])]
        return logits


class SegmentationProbe(DenseProbe):
    """The frozen protocol's segmentation head: a linear per-pixel classifier on the encoder's maps."""

    def __init__(self, backbone: nn.Module, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(backbone, num_classes)
        self.ignore_index = ignore_index

    def forward(self, inputs: dict, data_samples: dict | None = None, mode: str = "tensor"):
        logits = self.logits(inputs)
        if mode == "loss":
            return {"loss_seg": F.cross_entropy(logits, data_samples["mask"].long(), ignore_index=self.ignore_index)}
        if mode == "predict":
            return [{"pred": p, "gt": g} for p, g in zip(logits.argmax(1), data_samples["mask"])]
        return logits


class SegmentationMetric(TiledMetric):
    """mIoU, mF1 and OA (in %) from mmseg's confusion areas.

    ``mIoU`` averages over every class that occurs in the ground truth or the
    predictions; ``exclude`` adds e.g. ``mIoU_excl_clutter`` (the ISPRS convention).
    Tile statistics: each tile's per-class intersection and union areas (mIoU is their sums' ratio).
    """

    primary = "mIoU"

    def __init__(self, class_names: Sequence[str], ignore_index: int = 255, exclude: Sequence[str] = ()) -> None:
        super().__init__()
        self.class_names = tuple(class_names)
        self.ignore_index = ignore_index
        self.exclude = tuple(exclude)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            areas = IoUMetric.intersect_and_union(
                sample["pred"].cpu(), sample["gt"].cpu(), len(self.class_names), self.ignore_index
            )
            self.results.append(areas)

    def tile_stats(self, results: list) -> dict[str, np.ndarray]:
        inter, union = (torch.stack(r).double().numpy() for r in list(zip(*results))[:2])
        return {"intersect": inter, "union": union}

    @staticmethod
    def resample(stats: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        iou = ratio(weights @ stats["intersect"], weights @ stats["union"])
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample may hold no class at all: NaN
            return 100 * np.nanmean(iou, axis=1)

    def metrics_from(self, results: list) -> dict[str, float]:
        inter, union, pred, label = (torch.stack(r).sum(0) for r in zip(*results))
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = IoUMetric.total_area_to_metrics(inter, union, pred, label, metrics=["mIoU", "mFscore"])
        iou, f1 = np.asarray(scores["IoU"], dtype=float), np.asarray(scores["Fscore"], dtype=float)
        out = {"mIoU": 100 * np.nanmean(iou), "mF1": 100 * np.nanmean(f1), "OA": 100 * float(scores["aAcc"])}
        if self.exclude:
            keep = [i for i, n in enumerate(self.class_names) if n not in self.exclude]
            out[f"mIoU_excl_{'_'.join(self.exclude)}"] = 100 * np.nanmean(iou[keep])
        out.update({f"IoU.{n}": 100 * float(v) for n, v in zip(self.class_names, iou)})
        return {k: float(v) for k, v in out.items()}


@register_task("segmentation")
class SegmentationTask(Task):
    """Semantic segmentation of the ``mask`` key; stratified by each sample's dominant class."""

    primary_metric = "mIoU"
    metrics = (MetricInfo("mIoU"), MetricInfo("mF1"), MetricInfo("OA"), MetricInfo("mIoU_excl_"), MetricInfo("IoU."))
    class_names_key = "classes"
    target_keys = ("mask",)

    def __init__(
        self,
        class_names: Sequence[str] = DEFAULT_CLASSES,
        head_channels: int = 128,
        aux_weight: float = 0.4,
        ignore_index: int = 255,
        exclude_from_miou: Sequence[str] = (),
        norm: str = "auto",
        crop_size: int | None = None,
        stride: int | None = None,
        head: str = "full",
    ) -> None:
        self.head = check_head(head)  # "probe": the frozen protocol's linear probe under fine-tuning too
        if norm not in ("auto", "BN", "GN", "SyncBN"):
            raise ValueError(f"segmentation norm must be auto, BN, GN or SyncBN, got {norm!r}")
        self.class_names = tuple(class_names)
        self.head_channels = head_channels
        self.aux_weight = aux_weight
        self.ignore_index = ignore_index
        self.exclude_from_miou = tuple(exclude_from_miou)
        # "auto" = BN (the MSSDF Potsdam protocol; on the synthetic demo GN lost ~15 mIoU at 100 % labels
        # within 150 iterations), except GN when training at batch size 1: BN cannot normalise the PPM's 1x1 maps.
        self.norm = norm
        self.crop_size, self.stride = crop_size, stride  # sliding-window inference for larger test tiles

    def for_budget(self, budget) -> SegmentationTask:
        if self.norm != "auto":
            return self
        task = copy.copy(self)
        task.norm = "GN" if budget.batch_size == 1 else "BN"
        return task

    def strata(self, dataset) -> np.ndarray:
        return label_summary(dataset, "dominant_class")

    def build_model(self, backbone: nn.Module, modalities: Sequence[str]) -> BaseModel:
        if isinstance(backbone, FrozenBackbone) or self.head == "probe":  # a linear probe (tasks/probe.py)
            return SegmentationProbe(probe_backbone(backbone), len(self.class_names), self.ignore_index)
        return SegmentationModel(
            backbone, len(self.class_names), self.head_channels, self.aux_weight, self.ignore_index,
            "BN" if self.norm == "auto" else self.norm,
            self.crop_size, self.stride,
        )  # fmt: skip

    def build_metric(self) -> BaseMetric:
        return SegmentationMetric(self.class_names, self.ignore_index, self.exclude_from_miou)
