import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import run_two_ranks, write_tiny_pretrain_config
from mmengine.config import ConfigDict
from mmengine.logging import MessageHub
from torch.utils.data import Subset

import backbones
import backbones.cmid.model  # noqa: F401  (registers CMID)
from backbones.cmid.heads import KeyQueue, LocalHead, match_positions
from backbones.cmid.hooks import LocalTeacherTempHook
from backbones.cmid.losses import LocalDistillLoss, MIMLoss, focal_l1
from backbones.cmid.views import block_mask, cell_centres, crop_resize, fill_masked, upsample_mask
from backbones.hooks import TeacherEMAHook
from benchmark.cli import main
from rsbench.registry import MODELS
from rsdatasets.synthetic import SyntheticBenchmark
from tasks import FinetunePlan, TrainBudget, finetune, get_task

TINY = dict(arch="vit_t16", img_size=32, patch_size=8, encoder_kwargs=dict(depth=2), mask_block=8, proj_hidden=32,
            proj_dim=16, queue_size=16, num_matches=4, prototypes=8, head_hidden=32, head_bottleneck=16)  # fmt: skip
TINY_SWIN = dict(embed_dim=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))
LOSSES = {"loss_mim_l1", "loss_mim_fft", "loss_global", "loss_local"}


def _model(**kw):
    torch.manual_seed(0)
    return MODELS.build(ConfigDict(type="CMID", _scope_="rsbench", **{**TINY, **kw}))


def _batch(b, size=32):
    g = torch.Generator().manual_seed(0)
    valid = torch.ones(b, 1, size, size, dtype=torch.bool)
    valid[:, :, :4] = False  # a nodata stripe
    return {"rgb": torch.rand(b, 3, size, size, generator=g), "dsm": torch.rand(b, 1, size, size, generator=g) * 20,
            "dsm_valid": valid}  # fmt: skip


def test_block_mask_hides_exactly_60_percent_of_blocks():
    mask = block_mask(6, (5, 5), 0.6)
    assert mask.shape == (6, 5, 5) and (mask.flatten(1).sum(1) == 15).all()  # 15 of 25 = 60 %
    assert not (mask[0] == mask[1]).all()  # drawn per sample
    assert (block_mask(2, (7, 7), 0.6).flatten(1).sum(1) == 30).all()  # the paper's grid: ceil(29.4), as official
    pixels = upsample_mask(mask, 8)
    assert pixels.shape == (6, 40, 40) and pixels.float().mean() == pytest.approx(0.6)
    x = torch.rand(6, 3, 40, 40)
    filled = fill_masked(x, pixels)
    where = pixels[:, None].expand_as(x)
    assert torch.allclose(filled[where], x.mean((2, 3), keepdim=True).expand_as(x)[where])  # the image's mean
    assert torch.equal(filled[~where], x[~where])


def test_model_masks_60_percent_and_adds_the_mask_token_at_the_stem():
    model = _model(img_size=40)
    encoder, seen = model.student.encoder, {}
    encode = encoder.encode
    encoder.encode = lambda tokens: seen.setdefault("tokens", tokens) is not None and encode(tokens)
    raw = {"rgb": torch.rand(2, 3, 40, 40), "dsm": torch.rand(2, 1, 40, 40)}
    torch.manual_seed(1)
    model._masked_student(raw)
    torch.manual_seed(1)
    blocks = block_mask(2, (5, 5), 0.6)  # the same draw: 15 of 25 blocks (one 8-px token each) per sample
    x = backbones.normalize.normalize_modalities(raw)
    filled = {m: fill_masked(x[m], upsample_mask(blocks, 8)) for m in x}
    expected = encoder.embed(filled) + blocks[..., None] * model.mask_token
    assert torch.allclose(seen["tokens"], expected, atol=1e-6)
    assert (blocks.flatten(1).sum(1) == 15).all()


@pytest.mark.parametrize("batch", [1, 3])
def test_every_loss_is_finite_and_trains_its_part(batch):
    model = _model()
    losses = model.loss(_batch(batch))
    assert set(losses) == LOSSES | {"feat_std_images"}
    assert all(torch.isfinite(losses[k]) for k in LOSSES)
    params = {
        "loss_mim_l1": model.mim_decoder[0].weight, "loss_mim_fft": model.mim_decoder[0].weight,
        "loss_global": model.student.projector.mlp[0].weight, "loss_local": model.student.local_head.prototypes,
    }  # fmt: skip
    for name in sorted(LOSSES):
        model.zero_grad()
        losses[name].backward(retain_graph=True)
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name
        assert model.mask_token.grad.abs().sum() > 0, name  # every branch reaches the masked student
        assert all(p.grad is None for p in model.teacher.parameters())


def test_one_direction_per_step_when_not_symmetric():
    model = _model(symmetric=False)
    losses = model.loss(_batch(2))
    assert set(losses) == LOSSES | {"feat_std_images"} and all(torch.isfinite(losses[k]) for k in LOSSES)
    assert int(model.queue.ptr) == 2  # one view's keys enqueued
    symmetric = _model()
    symmetric.loss(_batch(2))
    assert int(symmetric.queue.ptr) == 4  # both views' keys


def test_queue_enqueues_in_order_and_wraps_around():
    queue = KeyQueue(5, 3)
    keys = torch.arange(1, 22, dtype=torch.float32).view(7, 3)
    queue.push(keys[:2])
    assert torch.equal(queue.keys[:2], keys[:2]) and int(queue.ptr) == 2
    before = queue.keys[4].clone()
    queue.push(keys[2:4])
    assert torch.equal(queue.keys[2:4], keys[2:4]) and torch.equal(queue.keys[4], before) and int(queue.ptr) == 4
    queue.push(keys[4:6])  # slots 4 and 0: the oldest key is dequeued
    assert torch.equal(queue.keys[4], keys[4]) and torch.equal(queue.keys[0], keys[5]) and int(queue.ptr) == 1
    queue.push(keys)  # more keys than slots: the last 5 stay
    assert {tuple(r) for r in queue.keys.tolist()} == {tuple(r) for r in keys[2:].tolist()}


def test_cells_follow_the_crop_and_the_flip():
    boxes = torch.tensor([[8.0, 16.0, 32.0, 32.0]])  # top, left, height, width in a 64-px image
    centres = cell_centres(boxes, torch.tensor([False]), 2)
    assert centres[0].tolist() == [[16.0, 24.0], [16.0, 40.0], [32.0, 24.0], [32.0, 40.0]]
    flipped = cell_centres(boxes, torch.tensor([True]), 2)
    assert flipped[0, :, 1].tolist() == [40.0, 24.0, 40.0, 24.0]
    cols = torch.arange(64, dtype=torch.float32).expand(1, 1, 64, 64)  # pixel value = its column
    crop = crop_resize(cols, boxes, 32)  # 32 px box into 32 px: a plain crop
    assert torch.allclose(crop[0, 0, 0], torch.arange(16, 48, dtype=torch.float32), atol=1e-4)


def test_positions_match_their_nearest_neighbours():
    q = torch.tensor([[[0.0, 0.0], [0.0, 10.0], [10.0, 0.0], [10.0, 10.0]]])
    k = torch.tensor([[[10.0, 9.0], [0.0, 3.0], [50.0, 50.0]]])
    idx_q, idx_k = match_positions(q, k, 2)
    pairs = sorted(zip(idx_q[0].tolist(), idx_k[0].tolist()))
    assert pairs == [(0, 1), (3, 0)]  # the two closest pairs; the far key is never used
    assert match_positions(q, k, 99)[0].shape == (1, 4)  # never more positions than there are


def test_losses_by_hand():
    pred, target = torch.tensor([0.0, 3.0]), torch.tensor([1.0, -1.0])
    d = torch.tensor([1.0, 4.0])
    expected = d * (2 * torch.sigmoid(0.2 * d) - 1)
    assert torch.allclose(focal_l1(pred, target), expected)
    mim = MIMLoss()
    x = torch.rand(2, 4, 16, 16)
    l1, fft = mim(x, x, torch.ones_like(x))
    assert l1 == 0 and fft == 0
    weight = torch.zeros_like(x)
    weight[..., :8] = 1  # left half masked
    noisy = (x + (weight == 0) * 5.0).requires_grad_()  # errors only where nothing was masked
    l1, fft = mim(noisy, x, weight)
    assert l1 == 0  # the spatial loss sees masked pixels only
    fft.backward()  # unmasked pixels enter the FFT as a detached mix, weighted 0.001 (the official "mixed")
    pred = (x + 5.0).requires_grad_()
    mim(pred, x, weight)[1].backward()
    assert noisy.grad[..., 8:].abs().mean() < 0.01 * pred.grad[..., :8].abs().mean()


def test_local_loss_centre_and_teacher_temperature_schedule():
    loss = LocalDistillLoss(4, student_temp=0.1, teacher_temp=0.04, centre_momentum=0.9)
    teacher = torch.tensor([[[1.0, 0.0, 0.0, 0.0]], [[3.0, 0.0, 0.0, 0.0]]])
    value = loss(teacher.clone(), teacher)
    assert torch.allclose(loss.centre, torch.tensor([0.2, 0.0, 0.0, 0.0]))  # 0.9 * 0 + 0.1 * batch mean
    assert value > 0 and torch.isfinite(value)
    hook = LocalTeacherTempHook(warmup_temp=0.04, temp=0.07, warmup_epochs=50)
    assert [hook.temperature(e) for e in (0, 25, 50, 399)] == pytest.approx([0.04, 0.055, 0.07, 0.07])
    model = SimpleNamespace(local_loss=SimpleNamespace(teacher_temp=None))
    hub = MessageHub.get_instance("t_cmid_temp")
    runner = SimpleNamespace(model=model, iter=5, train_dataloader=[None] * 10, message_hub=hub)
    LocalTeacherTempHook(warmup_epochs=1).before_train_iter(runner, 0)
    assert model.local_loss.teacher_temp == pytest.approx(0.055)  # half an epoch into a 1-epoch warm-up


def test_local_head_works_for_one_position_of_one_sample():
    for norm in ("LN", "none"):
        head = LocalHead(16, prototypes=8, hidden=32, bottleneck=8, norm=norm).train()
        assert head(torch.rand(1, 1, 16)).shape == (1, 1, 8)
    with pytest.raises(ValueError, match="head_norm"):
        LocalHead(16, norm="GN")


def test_ema_teacher_starts_as_the_student_and_moves():
    model = _model()
    s, t = model.student.state_dict(), model.teacher.module.state_dict()
    assert all(torch.equal(s[k], t[k]) for k in s)
    before = model.teacher.module.local_head.prototypes.clone()
    with torch.no_grad():
        model.student.local_head.prototypes.add_(1.0)
    runner = SimpleNamespace(model=model, iter=0, max_iters=10, message_hub=MessageHub.get_instance("t_cmid"))
    model.teacher.steps += 1  # past mmengine's first call, which copies
    TeacherEMAHook(momentum=0.996, end_momentum=1.0).after_train_iter(runner, 0)
    assert torch.allclose(model.teacher.module.local_head.prototypes, before + 0.004, atol=1e-6)


@pytest.mark.parametrize("arch, kw, channels", [
    ("cmid_resnet50", {}, [256, 512, 1024, 2048]),
    ("cmid_swin_b", TINY_SWIN, [32, 64, 128, 256]),
    ("random_init_swin_b", TINY_SWIN, [32, 64, 128, 256]),
])  # fmt: skip
def test_hierarchical_encoders_give_four_maps_at_strides_4_to_32(arch, kw, channels):
    model = backbones.build(arch, ("rgb", "dsm"), **kw).train()
    feats = model({"rgb": torch.rand(1, 3, 64, 64), "dsm": torch.rand(1, 1, 64, 64)})  # batch 1 in train mode
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2] and [f.shape[1] for f in feats] == channels
    assert model.out_channels == channels and model.patch_size == 32 and model.modalities == ("rgb", "dsm")
    with pytest.raises(ValueError, match="patch_size 8"):
        backbones.build(arch, patch_size=8, **kw)


def test_full_size_swin_b_and_resnet50_on_the_meta_device():
    swin = backbones.build("cmid_swin_b", device="meta")
    assert swin.out_channels == [128, 256, 512, 1024]
    assert sum(p.numel() for p in swin.net.parameters()) > 86e6  # Swin-B, not a small variant
    resnet = backbones.build("cmid_resnet50", device="meta")
    assert resnet.out_channels == [256, 512, 1024, 2048]


@pytest.mark.parametrize("arch, kw", [("resnet50", dict(layers=(1, 1, 1, 1))), ("swin_b", TINY_SWIN)])
def test_hierarchical_students_train_with_batch_size_one(arch, kw):
    model = _model(arch=arch, img_size=64, encoder_kwargs=kw, mask_block=16)
    losses = model.loss(_batch(1, 64))
    sum(losses[k] for k in LOSSES).backward()
    assert all(torch.isfinite(losses[k]) for k in LOSSES)
    assert model.student.encoder.stems["dsm"].weight.grad.abs().sum() > 0


def _tiny_config(tmp_path, base="cmid_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", **model):
    return write_tiny_pretrain_config(tmp_path, base, {**TINY, **model})


@pytest.mark.slow
def test_pretrain_cli_resumes_exports_and_segments(tmp_path, data):
    cfg, work = _tiny_config(tmp_path), tmp_path / "work"
    assert main(["pretrain", str(cfg), "--work-dir", str(work)]) == 0
    argv = ["pretrain", str(cfg), "--work-dir", str(work), "--resume", "--cfg-options", "train_cfg.max_epochs=2"]
    assert main(argv) == 0
    log = "\n".join(p.read_text() for p in work.rglob("*.log"))
    assert "resumed epoch: 1" in log
    for name in ("loss_mim_l1", "loss_mim_fft", "loss_global", "loss_local", "local_teacher_temp"):
        assert name in log, name
    meta = backbones.checkpoint.read_meta(work / "encoder.pth")
    assert meta["method"] == "cmid" and meta["epochs"] == 2 and meta["iters"] == 4  # 2 iterations per epoch
    encoder = backbones.build("cmid_vit_t16", ("rgb", "dsm"), checkpoint=work / "encoder.pth")
    assert encoder.patch_size == 8 and len(encoder.vit.blocks) == 2  # geometry read from the checkpoint
    train, test = data
    task = get_task("segmentation", head_channels=16, norm="GN")
    budget = TrainBudget(max_iters=3, batch_size=1, eval_batch_size=1, warmup_iters=0)  # batch 1 downstream
    build = lambda: backbones.build("cmid_vit_t16", checkpoint=work / "encoder.pth")  # noqa: E731
    result = finetune(FinetunePlan(
        task, build, Subset(train, [0, 1, 2]), Subset(test, [0, 1]), ("rgb", "dsm"), budget, 0, tmp_path / "seg"
    ))  # fmt: skip
    assert len(result.loss_history) == 3 and np.isfinite(result.loss_history).all()
    assert 0 <= result.metrics["mIoU"] <= 100


@pytest.mark.slow  # over 10 s on 2 cores; `make test` runs it
def test_pretrain_with_batch_size_one(tmp_path):
    cfg, work = _tiny_config(tmp_path), tmp_path / "b1"
    # A name of its own: mmengine keys the default scope by "<config name>_<second>", so a run with an earlier
    # test's config name in the same second would find that name taken and inherit a finetune runner's scope.
    argv = ["pretrain", str(cfg), "--work-dir", str(work), "--cfg-options", "train_dataloader.batch_size=1",
            "experiment_name=cmid_batch1"]  # fmt: skip
    assert main(argv) == 0
    log = "\n".join(p.read_text() for p in work.rglob("*.log"))
    assert "Epoch(train) [1][8/8]" in log and "nan" not in log.lower()


@pytest.mark.slow
def test_resnet50_config_exports_an_encoder_that_builds(tmp_path):
    cfg = _tiny_config(tmp_path, "cmid_resnet50_rgb-dsm_1xb32-2e_synthetic64.py", arch="resnet50",
                       encoder_kwargs=dict(layers=(1, 1, 1, 1)))  # fmt: skip
    work = tmp_path / "r50"
    assert main(["pretrain", str(cfg), "--work-dir", str(work)]) == 0
    meta = backbones.checkpoint.read_meta(work / "encoder.pth")
    assert (meta["method"], meta["arch"], meta["img_size"], meta["patch_size"]) == ("cmid", "resnet50", 32, 32)
    encoder = backbones.build("cmid_resnet50", checkpoint=work / "encoder.pth", layers=(1, 1, 1, 1)).eval()
    feats = encoder({"rgb": torch.rand(1, 3, 64, 64), "dsm": torch.rand(1, 1, 64, 64)})
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2] and not math.isnan(float(feats[-1].mean()))
    # Batch 1 downstream: fine at 64 px with a GroupNorm head (BatchNorm needs > 1 value: ResNet's
    # stride-32 map is 1 x 1 below 64 px, and so is any BN head's pooled branch).
    train = SyntheticBenchmark(tmp_path / "d64", "train", seed=0, size=64, n=3)
    test = SyntheticBenchmark(tmp_path / "d64", "test", seed=0, size=64, n=1)
    build = lambda: backbones.build("cmid_resnet50", checkpoint=work / "encoder.pth", layers=(1, 1, 1, 1))  # noqa: E731
    budget = TrainBudget(max_iters=2, batch_size=1, eval_batch_size=1, warmup_iters=0)
    task = get_task("segmentation", head_channels=16, norm="GN")
    result = finetune(FinetunePlan(task, build, train, test, ("rgb", "dsm"), budget, 0, tmp_path / "seg"))
    assert np.isfinite(result.loss_history).all() and 0 <= result.metrics["mIoU"] <= 100


@pytest.mark.slow
def test_two_process_ddp_gathers_queue_keys(tmp_path):
    """Two gloo ranks: each step enqueues the keys of both ranks (4 samples x 2 ranks, one direction)."""
    cfg, work = _tiny_config(tmp_path), tmp_path / "ddp"
    run_two_ranks("pretrain", str(cfg), "--work-dir", str(work), "--ddp", "pytorch")
    log = next(work.rglob("*.log")).read_text()
    assert "Distributed training: True" in log and "Epoch(train) [1][1/1]" in log
    state = torch.load(work / "epoch_1.pth", map_location="cpu", weights_only=False)["state_dict"]
    assert int(state["queue.ptr"]) == 8
    assert (work / "encoder.pth").exists()
