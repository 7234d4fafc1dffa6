"""Object detection: mmdet Faster R-CNN + FPN on the backbone pyramid; VOC mAP50, COCO mAP and per-class AP50."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from mmdet.evaluation.functional import average_precision
from mmdet.evaluation.functional.mean_ap import get_cls_results, tpfp_default
from mmdet.structures import DetDataSample
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.structures import InstanceData
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from rsdatasets.protocol import label_summary

from .base import MetricInfo, Task, TiledMetric, register_task, spatial_size
from .detectors import CenterNetHeadAnySize, build_centernet, build_detector  # noqa: F401  (CenterNetHeadAnySize)
from .features import FrozenBackbone
from .probe import DetectionProbeNeck, check_head, probe_backbone

DEFAULT_CLASSES = ("building", "car")
DETECTORS = ("faster_rcnn", "centernet")


def _xywh(box: np.ndarray) -> list[float]:
    """xyxy pixels -> COCO's [x, y, w, h]."""
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]


def _field(sample, key: str):
    """``sample[key]`` for the dicts mmengine's Evaluator passes, ``sample.key`` for DetDataSamples."""
    return sample[key] if isinstance(sample, Mapping) else getattr(sample, key)


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def voc_map(det_results: list[list[np.ndarray]], annotations: list[dict], iou_thr: float = 0.5
            ) -> tuple[float, list[tuple[float, int]]]:  # fmt: skip
    """VOC mAP (area mode) and each class's (AP, number of ground-truth boxes): ``eval_map``'s numbers, in-process.

    mmdet's ``eval_map`` matches images in a ``multiprocessing.Pool`` (forked, even with ``nproc=1``); forking a
    sweep process that has threads (rich's refresh thread, torch's pool) once left a worker waiting forever on
    a lock held at fork time and froze the demo. This is ``eval_map``'s own serial path, step for step, with
    mmdet's per-class functions (``get_cls_results``, ``tpfp_default``, ``average_precision``); the test holds
    it equal to ``eval_map``.
    """
    eps = np.finfo(np.float32).eps
    per_class = []
    for c in range(len(det_results[0]) if det_results else 0):
        cls_dets, cls_gts, cls_ignore = get_cls_results(det_results, annotations, c)
        matched = [tpfp_default(d, g, i, iou_thr) for d, g, i in zip(cls_dets, cls_gts, cls_ignore)]
        num_gts = int(sum(g.shape[0] for g in cls_gts))
        scores = np.vstack(cls_dets)[:, -1]
        order = np.argsort(-scores)
        tp = np.cumsum(np.hstack([m[0] for m in matched])[:, order], axis=1)
        fp = np.cumsum(np.hstack([m[1] for m in matched])[:, order], axis=1)
        recalls = (tp / np.maximum(num_gts, eps))[0]
        precisions = (tp / np.maximum(tp + fp, eps))[0]
        per_class.append((float(average_precision(recalls, precisions, "area")), num_gts))
    aps = [ap for ap, n in per_class if n > 0]
    return (float(np.mean(aps)) if aps else 0.0), per_class


def area_ap(recalls: np.ndarray, precisions: np.ndarray) -> np.ndarray:
    """VOC "area" AP of each row, the value of mmdet's ``average_precision(..., mode="area")``, vectorised.

    mmdet takes the running maximum of precision from the right with a Python loop over detections and
    sums (delta recall) x precision where recall changes; the reverse cumulative maximum is one numpy
    call, and where recall does not change the term is zero, so summing every column gives the same
    number (``tests/test_statistics.py`` compares the two). Written here because a bootstrap calls it
    for thousands of rows of thousands of detections.
    """
    rows = recalls.shape[0]
    mrec = np.hstack([np.zeros((rows, 1)), recalls, np.ones((rows, 1))])
    mpre = np.hstack([np.zeros((rows, 1)), precisions, np.zeros((rows, 1))])
    mpre = np.maximum.accumulate(mpre[:, ::-1], axis=1)[:, ::-1]
    return ((mrec[:, 1:] - mrec[:, :-1]) * mpre[:, 1:]).sum(1)


class DetectionMetric(TiledMetric):
    """Box AP in %: ``mAP50`` (VOC area AP at IoU 0.5, mmdet ``eval_map``), ``mAP`` (COCO AP@[.5:.95], pycocotools).

    Both average over the classes present in the ground truth; ``AP50.<class>`` is NaN for a
    class without ground truth, and both means are 0 on a split without any boxes. COCO AP
    counts at most 100 detections per image, the detector's ``max_per_img``.

    Tile statistics: every detection's tile, class, score and whether it is a true or false
    positive (mmdet's own per-image matching, ``tpfp_default``), and each tile's ground-truth count
    per class. Matching never crosses images, so AP over any multiset of tiles follows from these:
    ``resample`` weights each detection and ground truth by its tile's multiplicity and runs mmdet's
    ``average_precision`` (vectorised: :func:`area_ap`) on the weighted cumulative counts, ``eval_map``'s steps.
    """

    primary = "mAP50"

    def __init__(self, class_names: Sequence[str] = DEFAULT_CLASSES, iou_thr: float = 0.5,
                 min_score: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.class_names = tuple(class_names)  # not dataset_meta: the runner sets that from the dataset
        self.iou_thr = iou_thr
        # Detections below the detector's score threshold are dropped here too: CenterNet returns its top 100
        # peaks whatever their score, and thousands of near-zero ones only slow every AP computation.
        self.min_score = min_score

    def process(self, data_batch, data_samples: Sequence) -> None:
        for sample in data_samples:
            pred, gt = _field(sample, "pred_instances"), _field(sample, "gt_instances")
            scores = _numpy(_field(pred, "scores")).astype(np.float32)
            keep = scores >= self.min_score
            self.results.append(
                {
                    "boxes": _numpy(_field(pred, "bboxes")).reshape(-1, 4).astype(np.float32)[keep],
                    "scores": scores[keep],
                    "labels": _numpy(_field(pred, "labels")).astype(np.int64)[keep],
                    "gt_boxes": _numpy(_field(gt, "bboxes")).reshape(-1, 4).astype(np.float32),
                    "gt_labels": _numpy(_field(gt, "labels")).astype(np.int64),
                }
            )

    def tile_stats(self, results: list) -> dict[str, np.ndarray]:
        n_cls = len(self.class_names)
        tiles, classes, scores, tps, fps = [], [], [], [], []
        gt_count = np.zeros((len(results), n_cls))
        for t, r in enumerate(results):
            for c in range(n_cls):
                det = np.hstack([r["boxes"][r["labels"] == c], r["scores"][r["labels"] == c, None]])
                gt = r["gt_boxes"][r["gt_labels"] == c]
                gt_count[t, c] = len(gt)
                if len(det):
                    tp, fp = tpfp_default(det, gt, np.zeros((0, 4), np.float32), self.iou_thr)
                    tiles.append(np.full(len(det), t)), classes.append(np.full(len(det), c))
                    scores.append(det[:, -1]), tps.append(tp[0]), fps.append(fp[0])
        cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
        return {"det_tile": cat(tiles, np.int64), "det_class": cat(classes, np.int64),
                "det_score": cat(scores, np.float64), "det_tp": cat(tps, np.float64), "det_fp": cat(fps, np.float64),
                "gt_count": gt_count}  # fmt: skip

    @staticmethod
    def resample(stats: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        weights = np.atleast_2d(weights)
        eps = np.finfo(np.float32).eps
        n_gts = weights @ stats["gt_count"]  # R x classes
        aps = np.full(n_gts.shape, np.nan)
        for c in range(n_gts.shape[1]):
            sel = stats["det_class"] == c
            # Same order as eval_map: detections of all images stacked in image order, then by score.
            order = np.argsort(-stats["det_score"][sel])
            w = weights[:, stats["det_tile"][sel][order]]
            tp = np.cumsum(w * stats["det_tp"][sel][order], axis=1)
            fp = np.cumsum(w * stats["det_fp"][sel][order], axis=1)
            recalls = tp / np.maximum(n_gts[:, c : c + 1], eps)
            precisions = tp / np.maximum(tp + fp, eps)
            aps[:, c] = area_ap(recalls, precisions)
        aps[n_gts <= 0] = np.nan  # eval_map leaves classes without ground truth out of the mean
        present = (n_gts > 0).any(1)
        out = np.zeros(len(weights))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[present] = np.nanmean(aps[present], axis=1)
        return 100 * out

    def metrics_from(self, results: list) -> dict[str, float]:
        n_cls = len(self.class_names)
        dets = [
            [np.hstack([r["boxes"][r["labels"] == c], r["scores"][r["labels"] == c, None]]) for c in range(n_cls)]
            for r in results
        ]
        anns = [{"bboxes": r["gt_boxes"], "labels": r["gt_labels"]} for r in results]
        map50, per_class = voc_map(dets, anns, iou_thr=self.iou_thr)
        out = {"mAP50": 100 * map50, "mAP": 100 * self._coco_map(results)}
        for name, (ap, num_gts) in zip(self.class_names, per_class):
            out[f"AP50.{name}"] = 100 * ap if num_gts > 0 else float("nan")
        return out

    def _coco_map(self, results: list) -> float:
        """COCO AP@[.5:.95] with pycocotools on in-memory annotations (image/box ids from 1, as COCO expects)."""
        images, gts, dts = [], [], []
        for img_id, r in enumerate(results, start=1):
            images.append({"id": img_id})
            for box, label in zip(r["gt_boxes"], r["gt_labels"]):
                xywh = _xywh(box)
                gts.append({"id": len(gts) + 1, "image_id": img_id, "category_id": int(label) + 1,
                            "bbox": xywh, "area": xywh[2] * xywh[3], "iscrowd": 0})  # fmt: skip
            dts += [{"image_id": img_id, "category_id": int(label) + 1, "bbox": _xywh(box), "score": float(score)}
                    for box, score, label in zip(r["boxes"], r["scores"], r["labels"])]  # fmt: skip
        if not gts or not dts:  # loadRes cannot take an empty list; no boxes -> 0, as eval_map
            return 0.0
        categories = [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)]
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and tables
            coco = COCO()
            coco.dataset = {"images": images, "annotations": gts, "categories": categories}
            coco.createIndex()
            evaluator = COCOeval(coco, coco.loadRes(dts), iouType="bbox")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return max(float(evaluator.stats[0]), 0.0)


@register_task("detection")
class DetectionTask(Task):
    """Horizontal-box detection of ``boxes``/``box_labels``; stratified by which classes a tile contains."""

    primary_metric = "mAP50"
    metrics = (MetricInfo("mAP50"), MetricInfo("mAP"), MetricInfo("AP50."))
    class_names_key = "det_classes"
    target_keys = ("boxes", "box_labels")
    seconds_per_iter_guess = 0.8

    def __init__(
        self,
        class_names: Sequence[str] = DEFAULT_CLASSES,
        neck_channels: int = 64,
        fc_channels: int = 256,
        score_thr: float = 0.05,
        max_per_img: int = 100,
        detector: str = "faster_rcnn",
        head: str = "full",
    ) -> None:
        # "probe": the frozen protocol's detector (CenterNet on the probe neck) under fine-tuning too
        self.head = check_head(head)
        if detector not in DETECTORS:
            raise ValueError(f"unknown detector {detector!r}; choose one of {DETECTORS}")
        self.detector = detector
        self.class_names = tuple(class_names)
        self.neck_channels = neck_channels
        self.fc_channels = fc_channels
        self.score_thr = score_thr
        self.max_per_img = max_per_img

    def strata(self, dataset) -> np.ndarray:
        """Bit mask of the classes present: 0 empty tile, 1 buildings only, 2 cars only, 3 both (default classes)."""
        bits = 1 << np.arange(len(self.class_names))
        return np.array(
            [int(bits[np.unique(labels)].sum()) for labels in label_summary(dataset, "box_classes")],
            dtype=np.int64,
        )

    def build_model(self, backbone: nn.Module, modalities: Sequence[str]) -> BaseModel:
        if isinstance(backbone, FrozenBackbone) or self.head == "probe":
            # Frozen protocol: CenterNet's light head on the probe grid of the encoder's maps (tasks/probe.py);
            # a detector needs more than a linear layer, but nothing else is trained.
            backbone = probe_backbone(backbone)
            channels = list(backbone.out_channels)
            neck = dict(type=DetectionProbeNeck, in_channels=channels, out_channels=self.neck_channels)
            return build_centernet(backbone, len(self.class_names), self.neck_channels, self.max_per_img, neck=neck)
        if self.detector == "centernet":
            return build_centernet(backbone, len(self.class_names), self.neck_channels, self.max_per_img)
        return build_detector(
            backbone, len(self.class_names), self.neck_channels, self.fc_channels, self.score_thr, self.max_per_img
        )

    def build_metric(self) -> BaseMetric:
        return DetectionMetric(self.class_names, min_score=self.score_thr)

    def collate(self, samples: Sequence[Mapping[str, torch.Tensor]], modalities: Sequence[str]) -> dict:
        """Stack the inputs; boxes (ragged) become one ``DetDataSample`` per tile, as mmdet's heads expect."""
        inputs = self.stack_inputs(samples, modalities)
        shape = spatial_size(inputs)
        data_samples = []
        for i, s in enumerate(samples):
            # Tiles go in unresized and unpadded: every shape is the tile's, scale 1 (boxes need no rescaling).
            ds = DetDataSample(
                metainfo=dict(img_id=int(s.get("index", i)), img_shape=shape, ori_shape=shape, pad_shape=shape,
                              batch_input_shape=shape, scale_factor=(1.0, 1.0), border=(0, shape[0], 0, shape[1]))
            )  # fmt: skip
            ds.gt_instances = InstanceData(
                bboxes=torch.as_tensor(s["boxes"], dtype=torch.float32).reshape(-1, 4),  # (0, 4) for empty tiles
                labels=torch.as_tensor(s["box_labels"], dtype=torch.int64).reshape(-1),
            )
            data_samples.append(ds)
        return {"inputs": inputs, "data_samples": data_samples}
