"""The detectors of the detection task, mmdet's own models around any backbone: Faster R-CNN + FPN, and CenterNet
(with a head that works at any tile size and computes its targets for all boxes at once).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmdet.models.dense_heads import CenterNetHead
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.config import ConfigDict
from mmengine.model import BaseModel
from torch import nn

from .preprocess import ModalityPreprocessor

STRIDES = (4, 8, 16, 32)  # the backbone contract: four maps at these strides


def _nms(iou: float) -> dict:
    return dict(type="nms", iou_threshold=iou)  # mmcv's compiled NMS


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
