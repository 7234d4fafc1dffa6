"""The OpenMMLab stack is installed with mmcv's compiled ops, which mmseg and mmdet need."""

import torch


def test_mmseg_and_mmdet_import_with_compiled_mmcv():
    import mmcv
    import mmdet
    import mmseg
    from mmcv.utils import ext_loader

    assert mmcv.__version__.startswith("2.1")
    assert mmseg.__version__ and mmdet.__version__
    ext_loader.load_ext("_ext", ["nms"])  # raises when mmcv was installed without ops


def test_nms_runs_on_cpu():
    from mmcv.ops import nms

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]  # the second box overlaps the first with IoU 0.68
    assert torch.allclose(dets[:, 4], torch.tensor([0.9, 0.7]))


def test_roi_align_runs_on_cpu():
    from mmcv.ops import RoIAlign

    feat = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    rois = torch.tensor([[0, 0, 0, 4, 4]], dtype=torch.float32)  # the whole map
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)(feat, rois)
    # worked out by hand: with aligned=True pixel centres sit at +0.5, so the two samples per axis
    # of a 2-pixel bin land on pixel centres 0 and 1 (or 2 and 3); the ramp is 4 * y + x
    expected = torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]])
    assert torch.allclose(out, expected, atol=1e-5)
