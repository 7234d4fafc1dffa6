"""Scene classification: linear probe (frozen encoder) or full fine-tuning; OA, per-class accuracy, macro F1."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from torch import nn

from rsdatasets.protocol import label_summary

from .base import MetricInfo, Task, TiledMetric, register_task
from .preprocess import ModalityPreprocessor

#: The synthetic benchmark's scene classes (the default when a dataset's metainfo names none).
DEFAULT_CLASSES = ("residential", "industrial", "forest", "farmland", "water", "parking")


class ClassificationModel(BaseModel):
    """Backbone -> global average pool of the stride-32 map -> one linear layer (no BatchNorm).

    Why only the stride-32 map: with the ViT backbones it is the last block's (LayerNormed)
    tokens, max-pooled by the parameter-free pyramid, whereas the stride-4/8 maps pass through
    the pyramid's deconvolutions, which are task-side and randomly initialised (checkpoints do
    not carry them). A frozen probe cannot train those, so concatenating all four maps would mix
    random projections into the probe's features; using the last map keeps the protocol a probe of
    the pretrained encoder, and the same features are used when fine-tuning so both protocols differ
    only in what trains.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, frozen: bool) -> None:
        super().__init__(data_preprocessor=ModalityPreprocessor())
        self.backbone = backbone
        self.frozen = frozen
        if frozen:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
        self.head = nn.Linear(backbone.out_channels[-1], num_classes)
        # MAE/MSSDF linear-probe head init: small weights, zero bias (a plain linear layer, no BN).
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def train(self, mode: bool = True) -> ClassificationModel:
        """Switch modes, but keep a frozen backbone in eval mode (the Runner calls ``train()`` at loop start)."""
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # frozen dropout / BN statistics must not change during a probe
        return self

    def features(self, inputs: dict) -> torch.Tensor:
        """B x C pooled features; no autograd graph through a frozen backbone (saves time and memory)."""
        with torch.no_grad() if self.frozen else contextlib.nullcontext():
            return self.backbone(inputs)[-1].mean(dim=(2, 3))

    def forward(self, inputs: dict, data_samples: dict | None = None, mode: str = "tensor"):
        logits = self.head(self.features(inputs))
        if mode == "loss":
            return {"loss_cls": F.cross_entropy(logits, data_samples["label"].long())}
        if mode == "predict":
            return [{"pred": p, "gt": g} for p, g in zip(logits.argmax(1), data_samples["label"])]
        return logits


def classification_scores(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> dict[str, np.ndarray | float]:
    """OA, per-class accuracy (recall) and per-class F1 from label vectors, as fractions.

    Hand-written: mmengine ships no classification metric and mmpretrain is not a dependency.
    A class absent from the ground truth has NaN accuracy; a class absent from both ground truth
    and predictions has NaN F1 (it is left out of the macro mean, like scikit-learn's default labels).
    """
    cm = np.bincount(gt * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)  # rows: ground truth, columns: prediction
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan)  # 2TP / (2TP + FP + FN)
    return {"OA": float(tp.sum() / max(cm.sum(), 1)), "acc": acc, "f1": f1}


class ClassificationMetric(TiledMetric):
    """``OA``, ``acc.<class>`` and macro F1 ``mF1``, all in %. Tile statistics: whether each image is right."""

    primary = "OA"

    def __init__(self, class_names: Sequence[str]) -> None:
        super().__init__()
        self.class_names = tuple(class_names)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        self.results.extend((int(s["pred"]), int(s["gt"])) for s in data_samples)

    def tile_stats(self, results: list) -> dict[str, np.ndarray]:
        pred, gt = (np.asarray(v, dtype=np.int64) for v in zip(*results))
        return {"correct": (pred == gt).astype(np.float64)}

    @staticmethod
    def resample(stats: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        return 100 * (weights @ stats["correct"]) / weights.sum(1)

    def metrics_from(self, results: list) -> dict[str, float]:
        pred, gt = (np.asarray(v, dtype=np.int64) for v in zip(*results))
        scores = classification_scores(pred, gt, len(self.class_names))
        out = {"OA": 100 * scores["OA"], "mF1": 100 * float(np.nanmean(scores["f1"]))}
        out.update({f"acc.{n}": 100 * float(a) for n, a in zip(self.class_names, scores["acc"])})
        return out


@register_task("classification")
class ClassificationTask(Task):
    """Scene classification of the ``label`` key; stratified by scene class.

    Under the frozen protocol (a ``FrozenBackbone``) this is a linear probe: only the linear head
    trains, on the pooled last map; under ``finetune`` the whole network trains.
    """

    primary_metric = "OA"
    metrics = (MetricInfo("OA"), MetricInfo("mF1"), MetricInfo("acc."))
    class_names_key = "scene_classes"
    target_keys = ("label",)
    seconds_per_iter_guess = 0.3
    every_stratum = True

    def __init__(self, class_names: Sequence[str] = DEFAULT_CLASSES, protocol: str | None = None,
                 head: str = "full") -> None:  # fmt: skip
        from .probe import check_head

        # "probe": under fine-tuning too, the linear head reads the encoder's last map (as the frozen probe does)
        # rather than the pyramid's
        self.head = check_head(head)
        if protocol is not None:
            raise ValueError(
                "classification's protocol is a sweep field now: protocols=['frozen'] (the linear probe) or "
                "['finetune'] in the spec or its dataset entry, --protocol on `rsbench finetune`"
            )
        self.class_names = tuple(class_names)

    def strata(self, dataset) -> np.ndarray:
        return label_summary(dataset, "scene_class")

    def build_model(self, backbone: nn.Module, modalities: Sequence[str]) -> BaseModel:
        from .features import FrozenBackbone
        from .probe import probe_backbone

        frozen = isinstance(backbone, FrozenBackbone)
        return ClassificationModel(probe_backbone(backbone) if self.head == "probe" else backbone,
                                   len(self.class_names), frozen=frozen)  # fmt: skip

    def build_metric(self) -> BaseMetric:
        return ClassificationMetric(self.class_names)
