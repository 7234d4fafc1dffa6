import math
from types import SimpleNamespace

import pytest
import torch
from conftest import run_two_ranks, write_tiny_pretrain_config
from mmengine.config import ConfigDict
from mmengine.logging import MessageHub

import backbones
from backbones.hooks import MaskingCurriculumHook, TeacherEMAHook
from backbones.mssdf.model import linear_hsic, visible_index
from benchmark.cli import main
from rsbench.registry import MODELS

TINY = dict(type="MSSDF", _scope_="rsbench", arch="vit_t16", img_size=32, patch_size=8, encoder_kwargs=dict(depth=2),
            decoder_dim=32, decoder_heads=2, fusion_depth=1, decoder_depth=1, proj_dim=16)  # fmt: skip
LOSSES = {"loss_rec_rgb", "loss_rec_dsm", "loss_align", "loss_hsic", "loss_mod"}


def _batch(b, size=32):
    g = torch.Generator().manual_seed(0)
    return {
        "rgb": torch.rand(b, 3, size, size, generator=g),
        "dsm": torch.rand(b, 1, size, size, generator=g) * 20,
        "dsm_valid": torch.ones(b, 1, size, size, dtype=torch.bool),
    }


def test_visible_index_pads_and_marks_real_tokens():
    mask = torch.tensor([[True, False, True, False], [True, True, True, False]])
    index, valid = visible_index(mask)
    assert index[0].tolist() == [1, 3] and valid[0].tolist() == [True, True]
    assert index[1, 0].item() == 3 and valid[1].tolist() == [True, False]


@pytest.mark.parametrize("batch", [1, 3])
def test_all_loss_terms_are_finite_and_train(batch):
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(TINY))
    losses = model.loss(_batch(batch))
    diagnostics = {"content_ratio_rgb", "content_ratio_dsm"} if batch > 1 else set()  # needs a second sample
    assert set(losses) == LOSSES | {"feat_std_images"} | diagnostics
    assert losses["feat_std_images"] >= 0
    assert all(torch.isfinite(losses[k]) and losses[k] > 0 for k in diagnostics)
    losses = {k: v for k, v in losses.items() if k.startswith("loss")}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.student.patch_embeds["dsm"].proj.weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())


def test_teacher_starts_as_the_student_and_follows_by_cosine_ema():
    model = MODELS.build(ConfigDict(TINY))
    s, t = model.student.state_dict(), model.teacher.module.state_dict()
    assert all(torch.equal(s[k], t[k]) for k in s)
    hook = TeacherEMAHook(momentum=0.996, end_momentum=1.0)
    assert hook.teacher_coefficient(0.0) == pytest.approx(0.996)
    assert hook.teacher_coefficient(0.5) == pytest.approx(0.998)
    assert hook.teacher_coefficient(1.0) == pytest.approx(1.0)
    before = model.teacher.module.vit.blocks[0].mlp.fc1.weight.clone()
    with torch.no_grad():
        model.student.vit.blocks[0].mlp.fc1.weight.add_(1.0)
    runner = SimpleNamespace(model=model, iter=0, max_iters=10, message_hub=MessageHub.get_instance("t_ema"))
    model.teacher.steps += 1  # past mmengine's first call, which copies instead of averaging
    hook.after_train_iter(runner, 0)
    after = model.teacher.module.vit.blocks[0].mlp.fc1.weight
    assert torch.allclose(after, before + 0.004, atol=1e-6)  # 0.996 * old + 0.004 * (old + 1)


def test_curriculum_hook_walks_the_schedule_by_fractional_epoch():
    model = SimpleNamespace(dsm_extra_p=None)
    hub = MessageHub.get_instance("t_curr")
    loader = [None] * 10  # 10 iterations per epoch
    hook = MaskingCurriculumHook(epoch_scale=125)  # a 4-epoch run walking the 500-epoch schedule
    for it, p in [(0, 0.1), (1, 0.2), (3, 0.4), (4, 0.6), (5, 0.7), (39, 0.7)]:  # epoch it/10 * 125
        hook.before_train_iter(SimpleNamespace(model=model, iter=it, train_dataloader=loader, message_hub=hub), it)
        assert model.dsm_extra_p == pytest.approx(p), it
    paper = MaskingCurriculumHook()  # scale 1: the official per-epoch values at whole epochs
    for epoch, p in [(0, 0.1), (9.9, 0.1), (10, 0.2), (59, 0.6), (60, 0.7), (499, 0.7)]:
        runner = SimpleNamespace(model=model, iter=int(epoch * 10), train_dataloader=loader, message_hub=hub)
        paper.before_train_iter(runner, 0)
        assert model.dsm_extra_p == pytest.approx(p), epoch


def test_hsic_of_independent_noise_is_small_and_of_copies_is_not():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 8, generator=g), torch.randn(256, 8, generator=g)
    assert linear_hsic(x, y) < 0.5 * linear_hsic(x, x)
    assert linear_hsic(x[:1], y[:1]).item() == 0.0


def _config(tmp_path):
    model = {k: v for k, v in TINY.items() if k not in ("type", "_scope_")}
    return write_tiny_pretrain_config(tmp_path, "mssdf_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", model)


@pytest.mark.slow
def test_pretrain_cli_resumes_and_exports_a_loadable_encoder(tmp_path):
    cfg, work = _config(tmp_path), tmp_path / "work"
    assert main(["pretrain", str(cfg), "--work-dir", str(work)]) == 0
    assert (work / "epoch_1.pth").exists() and (work / "encoder.pth").exists()
    argv = ["pretrain", str(cfg), "--work-dir", str(work), "--resume", "--cfg-options", "train_cfg.max_epochs=2"]
    assert main(argv) == 0
    meta = backbones.checkpoint.read_meta(work / "encoder.pth")
    assert meta["method"] == "mssdf" and meta["epochs"] == 2 and meta["iters"] == 4  # 2 iters per epoch, resumed
    encoder = backbones.build("mssdf_vit_t16", ("rgb", "dsm"), checkpoint=work / "encoder.pth", depth=2)
    assert encoder.patch_size == 8 and encoder.grid_size == (4, 4)  # geometry read from the checkpoint
    feats = encoder(_batch(2))
    assert [f.shape[-1] for f in feats] == [8, 4, 2, 1] and all(torch.isfinite(f).all() for f in feats)
    assert not math.isnan(float(feats[0].mean()))


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path):
    """Two gloo ranks pretrain a few iterations; InfoNCE negatives are gathered across them."""
    cfg, work = _config(tmp_path), tmp_path / "ddp"
    run_two_ranks("pretrain", str(cfg), "--work-dir", str(work), "--ddp", "pytorch")
    log = next(work.rglob("*.log")).read_text()
    assert "Distributed training: True" in log and "Distributed launcher: pytorch" in log
    assert "Epoch(train) [1][1/1]" in log  # 8 samples / (batch 4 x 2 ranks): one iteration per epoch
    assert (work / "encoder.pth").exists()


@pytest.mark.slow  # over 10 s on 2 cores; `make test` runs it
def test_gradient_accumulation_through_the_config(tmp_path):
    """mmengine's accumulative_counts: 8 samples, batch 4, 2 iterations, one optimiser step per 2."""
    cfg, work = _config(tmp_path), tmp_path / "accum"
    argv = ["pretrain", str(cfg), "--work-dir", str(work), "--cfg-options", "optim_wrapper.accumulative_counts=2"]
    assert main(argv) == 0
    log = next(work.rglob("*.log")).read_text()
    assert "accumulative_counts=2" in log and "Epoch(train) [1][2/2]" in log
