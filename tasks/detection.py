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
from mmdet.models.dense_heads import CenterNetHead
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.structures import InstanceData
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from rsdatasets.protocol import label_summary

from .base import MetricInfo, Task, TiledMetric, register_task, spatial_size
from .features import FrozenBackbone
from .preprocess import ModalityPreprocessor
from .probe import DetectionProbeNeck

DEFAULT_CLASSES = ("building", "car")
STRIDES = (4, 8, 16, 32)  # the backbone contract: four maps at these strides
DETECTORS = ("faster_rcnn", "centernet")


def _nms(iou: float) -> dict:
    return dict(type="nms", iou_threshold=iou)  # mmcv's compiled NMS


def _xywh(box: np.ndarray) -> list[float]:
    """xyxy pixels -> COCO's [x, y, w, h]."""
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]


def build_detector(
    backbone: nn.Module,
    num_classes: int,
    neck_channels: int = 64,
    fc_channels: int = 256,
    score_thr: float = 0.05,
    max_per_img: int = 100,
) -> BaseModel:
    """mmdet's own ``FasterRCNN`` with ``backbone`` plugged in in place of a placeholder.

    Why not a wrapper that drives neck, RPN and RoI head itself: ``TwoStageDetector`` already
    does the two-stage bookkeeping (class-agnostic RPN targets on a copy of the samples,
    ``rpn_`` loss renaming, proposal cfgs, ``pred_instances``), and re-implementing it would
    only drift from mmdet. Its ``extract_feat`` calls ``self.backbone(inputs)`` without looking
    at the inputs, so our backbone (dict of modalities -> list of 4 maps) drops in unchanged,
    with no adapter module at all; the RGB/DSM normalisation replaces ``DetDataPreprocessor``.

    Sizes suit 64-px tiles at 1 m (cars ~2x4 px, buildings 6-37 px): anchors of 0.5/1/2 x
    stride (2-64 px) in three aspect ratios; at a 4-px anchor grid a car's best anchor IoU
    is only ~0.33, so the RPN takes positives at IoU 0.5 and lets every box keep its best
    anchor down to IoU 0.1. RoIs map to levels with ``finest_scale=16`` (< 32 px -> stride 4),
    the canonical 56 scaled to objects ~8x smaller than COCO's; a RoIAlign bin then spans at
    most about one feature cell, so one bilinear sample per bin loses nothing and halves
    RoIAlign's CPU backward, which dominated a step. 128 RoIs per 64-px tile (mmdet samples
    512 per 1333x800 image) and <= 300 proposals (a parking lot holds up to ~140 cars).
    """
    cfg = ConfigDict(
        type="FasterRCNN", _scope_="mmdet",
        backbone=dict(type=nn.Identity),  # placeholder (a class, so no registry entry), replaced below
        neck=dict(type="FPN", in_channels=list(backbone.out_channels), out_channels=neck_channels, num_outs=4),
        rpn_head=dict(
            type="RPNHead", in_channels=neck_channels, feat_channels=neck_channels,
            anchor_generator=dict(
                type="AnchorGenerator", strides=list(STRIDES), scales=[0.5, 1.0, 2.0], ratios=[0.5, 1.0, 2.0],
                center_offset=0.5,  # anchors at the centres of the cells the features describe
            ),
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0),
        ),
        roi_head=dict(
            type="StandardRoIHead",
            bbox_roi_extractor=dict(
                type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=1),
                out_channels=neck_channels, featmap_strides=list(STRIDES), finest_scale=16,
            ),
            bbox_head=dict(
                type="Shared2FCBBoxHead", in_channels=neck_channels, fc_out_channels=fc_channels, roi_feat_size=7,
                num_classes=num_classes, reg_class_agnostic=False,
                bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
                loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type="L1Loss", loss_weight=1.0),
            ),
        ),
        train_cfg=dict(
            rpn=dict(
                assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.3, min_pos_iou=0.1,
                              match_low_quality=True, ignore_iof_thr=-1),
                sampler=dict(type="RandomSampler", num=256, pos_fraction=0.5, neg_pos_ub=-1,
                             add_gt_as_proposals=False),
                allowed_border=-1, pos_weight=-1, debug=False,
            ),
            rpn_proposal=dict(nms_pre=500, max_per_img=300, nms=_nms(0.7), min_bbox_size=0),
            rcnn=dict(
                assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                              match_low_quality=False, ignore_iof_thr=-1),
                sampler=dict(type="RandomSampler", num=128, pos_fraction=0.25, neg_pos_ub=-1,
                             add_gt_as_proposals=True),  # positives from the first iteration on, empty tiles too
                pos_weight=-1, debug=False,
            ),
        ),
        test_cfg=dict(
            rpn=dict(nms_pre=500, max_per_img=300, nms=_nms(0.7), min_bbox_size=0),
            rcnn=dict(score_thr=score_thr, nms=_nms(0.5), max_per_img=max_per_img),
        ),
    )  # fmt: skip
    detector = MMDET_MODELS.build(cfg)
    detector.backbone = backbone
    detector.data_preprocessor = ModalityPreprocessor()
    return detector


class FinestLevel(nn.Module):
    """mmdet's FPN (top-down fusion of the four maps), keeping only its finest, stride-4 output.

    CenterNet predicts on one map; stride 4 is the finest the backbone contract offers, and the
    top-down path brings the coarser maps' context into it.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.fpn = MMDET_MODELS.build(ConfigDict(type="FPN", _scope_="mmdet", in_channels=list(in_channels),
                                                 out_channels=out_channels, num_outs=len(in_channels)))  # fmt: skip

    def forward(self, feats):
        # contiguous: mmdet's CenterNet decoding views the heatmap flat (a deconv may hand back channels-last)
        return (self.fpn(feats)[0].contiguous(),)


def _radius(h: torch.Tensor, w: torch.Tensor, min_overlap: float = 0.3) -> torch.Tensor:
    """mmdet's ``gaussian_radius`` for many boxes at once, with its arithmetic: float32 tensors, the square roots
    taken in double and the result rounded back, as ``math.sqrt`` on a tensor does there."""

    def root(x: torch.Tensor) -> torch.Tensor:
        return x.double().sqrt().to(x.dtype)

    b1, c1 = h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 - root(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 - root(b2**2 - 16 * c2)) / 8
    b3, c3 = -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + root(b3**2 - 16 * min_overlap * c3)) / (8 * min_overlap)
    return torch.minimum(torch.minimum(r1, r2), r3)


class CenterNetHeadAnySize(CenterNetHead):
    """mmdet's ``CenterNetHead`` with its ``topk`` clamped to the heatmap's size (a small tile's heatmap can hold
    fewer cells than the usual 100 peaks, and ``torch.topk`` refuses more than there are), and its targets
    computed for all boxes of an image at once (``get_targets``: the same values as mmdet's per-box loop,
    which was a third of a CPU training step; ``tests/test_task_detection.py`` compares them)."""

    def get_targets(self, gt_bboxes, gt_labels, feat_shape, img_shape):
        img_h, img_w = img_shape[:2]
        bs, _, feat_h, feat_w = feat_shape
        width_ratio, height_ratio = float(feat_w / img_w), float(feat_h / img_h)
        like = gt_bboxes[-1]
        heatmap = like.new_zeros([bs, self.num_classes, feat_h, feat_w])
        wh = like.new_zeros([bs, 2, feat_h, feat_w])
        offset = like.new_zeros([bs, 2, feat_h, feat_w])
        weight = like.new_zeros([bs, 2, feat_h, feat_w])
        ys = torch.arange(feat_h, device=like.device).view(1, -1, 1)
        xs = torch.arange(feat_w, device=like.device).view(1, 1, -1)
        eps = torch.finfo(heatmap.dtype).eps
        for b in range(bs):
            box, label = gt_bboxes[b], gt_labels[b]
            if len(box) == 0:
                continue
            cx = (box[:, 0] + box[:, 2]) * width_ratio / 2
            cy = (box[:, 1] + box[:, 3]) * height_ratio / 2
            cxi, cyi = cx.int(), cy.int()
            box_h, box_w = (box[:, 3] - box[:, 1]) * height_ratio, (box[:, 2] - box[:, 0]) * width_ratio
            radius = _radius(box_h, box_w).int().clamp(min=0)  # int() truncates, as max(0, int(r)) there
            sigma = ((2 * radius + 1) / 6).to(heatmap.dtype).view(-1, 1, 1)
            dx, dy = xs - cxi.view(-1, 1, 1), ys - cyi.view(-1, 1, 1)
            r = radius.view(-1, 1, 1)
            kernel = (-(dx * dx + dy * dy).to(heatmap.dtype) / (2 * sigma * sigma)).exp()
            kernel = torch.where((dx.abs() <= r) & (dy.abs() <= r) & (kernel >= eps), kernel, kernel.new_zeros(()))
            for c in label.unique():
                heatmap[b, c] = torch.maximum(heatmap[b, c], kernel[label == c].amax(0))
            # One box per centre cell: the loop there leaves the last box's values, so keep the last.
            cell = cyi * feat_w + cxi
            last = {int(k): j for j, k in enumerate(cell.tolist())}
            j = torch.tensor(list(last.values()), device=like.device)
            wh[b, 0, cyi[j], cxi[j]], wh[b, 1, cyi[j], cxi[j]] = box_w[j], box_h[j]
            offset[b, 0, cyi[j], cxi[j]], offset[b, 1, cyi[j], cxi[j]] = cx[j] - cxi[j], cy[j] - cyi[j]
            weight[b, :, cyi[j], cxi[j]] = 1
        avg_factor = max(1, heatmap.eq(1).sum())
        targets = dict(center_heatmap_target=heatmap, wh_target=wh, offset_target=offset,
                       wh_offset_target_weight=weight)  # fmt: skip
        return targets, avg_factor

    def _predict_by_feat_single(self, center_heatmap_pred, *args, **kwargs):
        topk = self.test_cfg.topk
        self.test_cfg.topk = min(topk, center_heatmap_pred.numel())
        try:
            return super()._predict_by_feat_single(center_heatmap_pred, *args, **kwargs)
        finally:
            self.test_cfg.topk = topk


def build_centernet(
    backbone: nn.Module, num_classes: int, neck_channels: int = 64, max_per_img: int = 100, score_thr: float = 0.0,
    neck: dict | None = None,
) -> BaseModel:
    """mmdet's ``CenterNet`` (objects as points: a class heatmap, box size and offset at stride 4).

    Single-stage and NMS-free (peaks are local maxima of the heatmap), so a training step has no
    RoIAlign, whose CPU backward dominated the Faster R-CNN step. A 4-px grid resolves objects a few
    pixels across, which a 64-px tile at 1 m holds many of. Same backbone drop-in as
    :func:`build_detector`.
    """
    cfg = ConfigDict(
        type="CenterNet", _scope_="mmdet",
        backbone=dict(type=nn.Identity),
        neck=neck or dict(type=FinestLevel, in_channels=list(backbone.out_channels), out_channels=neck_channels),
        bbox_head=dict(
            type=CenterNetHeadAnySize, num_classes=num_classes, in_channels=neck_channels, feat_channels=neck_channels,
            loss_center_heatmap=dict(type="GaussianFocalLoss", loss_weight=1.0),
            loss_wh=dict(type="L1Loss", loss_weight=0.1), loss_offset=dict(type="L1Loss", loss_weight=1.0),
        ),
        train_cfg=None,
        test_cfg=dict(topk=max_per_img, local_maximum_kernel=3, max_per_img=max_per_img),
    )  # fmt: skip
    detector = MMDET_MODELS.build(cfg)
    detector.backbone = backbone
    detector.data_preprocessor = ModalityPreprocessor()
    detector.score_thr = score_thr
    return detector


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
    ) -> None:
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
        if isinstance(backbone, FrozenBackbone):
            # Frozen protocol: CenterNet's light head on the probe grid of the encoder's maps (tasks/probe.py);
            # a detector needs more than a linear layer, but nothing else is trained.
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
