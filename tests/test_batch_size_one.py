"""Batch size 1 for every method: pretraining (MSSDF, MAE) through the real runner, and every registered
ViT-Ti encoder trained and evaluated downstream one sample at a time.

The per-task batch-1 tests (tests/test_task_*.py, tests/test_segmentation.py) use random-init
encoders; this file covers the methods' side: their pretraining step and their exported encoders.
"""

import math
from functools import partial

import pytest
import torch
from conftest import write_tiny_pretrain_config
from torch.utils.data import Subset

import backbones
import backbones.timm_convert  # noqa: F401  (registers timm_vit_*)
from benchmark.running.pretrain import build_runner
from rsdatasets.synthetic import SyntheticBenchmark
from tasks import FinetunePlan, TrainBudget, finetune, get_task

ENCODER = dict(arch="vit_t16", img_size=32, patch_size=16, encoder_kwargs=dict(depth=2))
PRETRAIN = {
    "mssdf": ("mssdf_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py",
              dict(ENCODER, decoder_dim=32, decoder_heads=2, fusion_depth=1, decoder_depth=1, proj_dim=16)),
    "mae": ("mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py",
            dict(ENCODER, decoder_dim=32, decoder_depth=1, decoder_heads=2)),
}  # fmt: skip
ONE = TrainBudget(max_iters=2, batch_size=1, eval_batch_size=1, warmup_iters=0)
MODALITIES = ("rgb", "dsm")
TINY_VIT = dict(img_size=32, patch_size=16, depth=2)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, busy 2-core machine


@pytest.fixture(scope="module")
def tiles(synth_root):
    train = SyntheticBenchmark(synth_root, "train", seed=0, size=32, n=32)
    test = SyntheticBenchmark(synth_root, "test", seed=0, size=32, n=16)
    return Subset(train, [0, 1, 2]), Subset(test, [0, 1])


def _segment(build, tiles, work_dir, budget=ONE, norm="auto"):
    # The default norm ("auto") trains with GN at batch size 1: mmseg's BN pyramid pooling cannot (1x1 map).
    task = get_task("segmentation", head_channels=16, norm=norm)
    return finetune(FinetunePlan(task, build, *tiles, MODALITIES, budget, seed=0, work_dir=work_dir))


@pytest.mark.slow  # over 1.5 s per method on 2 cores; `make test` runs it
@pytest.mark.parametrize("method", sorted(PRETRAIN))
def test_pretraining_at_batch_size_one_then_downstream(method, tmp_path, tiles):
    base, model = PRETRAIN[method]
    config = write_tiny_pretrain_config(tmp_path, base, model)
    options = {"train_dataloader.batch_size": 1, "train_dataloader.dataset.n": 3, "default_hooks.logger.interval": 1}
    runner = build_runner(config, tmp_path / "work", cfg_options=options)
    assert runner.train_dataloader.batch_size == 1
    runner.train()
    hub = runner.message_hub
    losses = hub.get_scalar("train/loss").data[0].tolist()
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses), losses
    if method == "mssdf":
        # One sample has no in-batch negatives and no spread to measure: those terms are exactly 0, not NaN.
        assert hub.get_scalar("train/loss_align").current() == 0.0
        assert hub.get_scalar("train/loss_hsic").current() == 0.0
        assert hub.get_scalar("train/loss_rec_rgb").current() > 0
    encoder = tmp_path / "work" / "encoder.pth"
    result = _segment(partial(backbones.build, f"{method}_vit_t16", MODALITIES, encoder), tiles, tmp_path)
    assert len(result.loss_history) == 2 and all(math.isfinite(v) for v in result.loss_history)
    assert 0 <= result.metrics["mIoU"] <= 100


@pytest.mark.parametrize("name", backbones.list_backbones("*_vit_t16"))
def test_every_vit_method_trains_and_predicts_one_sample_at_a_time(name, tmp_path, tiles):
    # Patch 16 puts BatchNorm in the encoder's feature pyramid (stride-4 branch): it must cope with B = 1.
    torch.manual_seed(0)
    result = _segment(partial(backbones.build, name, MODALITIES, **TINY_VIT), tiles, tmp_path)
    assert len(result.loss_history) == 2 and all(math.isfinite(v) for v in result.loss_history)
    assert 0 <= result.metrics["mIoU"] <= 100 and 0 <= result.metrics["OA"] <= 100


def test_default_bn_head_predicts_one_sample_at_a_time(tmp_path, tiles):
    budget = TrainBudget(max_iters=2, batch_size=2, eval_batch_size=1, warmup_iters=0)
    result = _segment(partial(backbones.build, "mae_vit_t16", MODALITIES, **TINY_VIT), tiles, tmp_path, budget, "BN")
    assert 0 <= result.metrics["mIoU"] <= 100


def test_default_norm_is_bn_except_at_batch_size_one():
    task = get_task("segmentation")
    assert task.for_budget(ONE).norm == "GN"
    assert task.for_budget(TrainBudget(batch_size=2)).norm == "BN"
    assert get_task("segmentation", norm="BN").for_budget(ONE).norm == "BN"  # an explicit choice is kept
    with pytest.raises(ValueError, match="norm must be"):
        get_task("segmentation", norm="LN")
