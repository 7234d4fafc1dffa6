"""The diagnostics of backbones/diagnostics.py and benchmark/diagnose.py on tiny encoders whose answer is known."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.logging import MessageHub, MMLogger
from mmengine.optim import OptimWrapper

import backbones
from backbones.diagnostics import (
    decompose_tokens,
    knn_accuracy,
    loss_term_gradients,
    unchanged_state,
    variance_shares,
)
from backbones.hooks import LossGradientHook
from backbones.vit import MultiModalViT
from benchmark.cli import main
from benchmark.running.diagnose import FUSED, decompose_encoder
from benchmark.running.pretrain import KNNProbeHook
from rsbench.registry import MODELS

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(type="MSSDF", _scope_="rsbench", arch="vit_t16", img_size=32, patch_size=8, encoder_kwargs=dict(depth=2),
            decoder_dim=32, decoder_heads=2, fusion_depth=1, decoder_depth=1, proj_dim=16)  # fmt: skip
TERMS = ["loss_rec_rgb", "loss_rec_dsm", "loss_align", "loss_hsic", "loss_mod"]


def _batch(b=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "rgb": torch.rand(b, 3, size, size, generator=g),
        "dsm": torch.rand(b, 1, size, size, generator=g) * 20,
        "dsm_valid": torch.ones(b, 1, size, size, dtype=torch.bool),
    }


# --- the token decomposition on hand-made token arrays --------------------------------------------------


def _labels(tiles=60, positions=16, classes=4, seed=0):
    # Classes independent of position: a kNN that knows only positions is at chance (about 1 / classes).
    return torch.randint(classes, (tiles, positions), generator=torch.Generator().manual_seed(seed))


def test_position_only_tokens_are_flagged_and_their_knn_is_at_chance():
    labels = _labels()
    table = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    tokens = table[None].expand(60, -1, -1)  # every tile the same: position and nothing else
    d = decompose_tokens(tokens, labels)
    assert d["variance"]["position"] == pytest.approx(1.0, abs=1e-9)
    assert d["variance"]["tile"] == pytest.approx(0.0, abs=1e-9)
    assert d["flags"] == {"position_only": True, "position_dominated": True, "buried_content": False}
    assert d["knn_raw"] < 40.0  # chance is ~25-30 % with 4 classes; content would give ~100
    assert math.isnan(d["knn_without_position"])  # nothing is left once position is removed


def test_content_tokens_are_not_flagged_and_their_knn_is_high():
    labels = _labels()
    g = torch.Generator().manual_seed(2)
    classes, positions = torch.randn(4, 8, generator=g), torch.randn(16, 8, generator=g)
    tokens = classes[labels] + 0.2 * positions[None] + 0.1 * torch.randn(60, 16, 8, generator=g)
    d = decompose_tokens(tokens, labels)
    assert d["variance"]["position"] < 0.2
    assert not any(d["flags"].values())
    assert d["knn_raw"] > 95.0 and d["knn_without_position"] > 95.0
    assert d["knn_raw"] > d["position_prior"] + 50


def test_content_buried_under_position_is_found_by_removing_the_position_mean():
    labels = _labels()
    g = torch.Generator().manual_seed(3)
    classes, positions = torch.randn(4, 8, generator=g), torch.randn(16, 8, generator=g)
    tokens = 4.0 * positions[None] + classes[labels]
    d = decompose_tokens(tokens, labels)
    assert d["flags"]["position_dominated"] and d["flags"]["buried_content"]
    assert d["knn_without_position"] > 95.0 > d["knn_raw"]


def test_variance_shares_add_up_and_a_tile_only_array_is_all_tile():
    g = torch.Generator().manual_seed(4)
    tokens = torch.randn(10, 6, 3, generator=g)
    shares = variance_shares(tokens)
    assert sum(shares.values()) == pytest.approx(1.0)
    tile_only = torch.randn(10, 1, 3, generator=g).expand(-1, 6, -1)
    assert variance_shares(tile_only)["tile"] == pytest.approx(1.0)


def test_the_knn_is_the_probe_hooks_knn():
    g = torch.Generator().manual_seed(5)
    fit, query = torch.nn.functional.normalize(torch.randn(200, 6, generator=g), dim=1), torch.randn(50, 6, generator=g)
    fy, qy = torch.randint(5, (200,), generator=g), torch.randint(5, (50,), generator=g)
    hook = KNNProbeHook(k=10)
    assert knn_accuracy(fit, fy, query, qy, 10) == hook._knn(fit, fy, query, qy, exclude_self=False)
    assert knn_accuracy(fit, fy, fit, fy, 10, exclude_self=True) == hook._knn(fit, fy, fit, fy, exclude_self=True)


# --- hand-made encoders through the probe's reading of the val tiles --------------------------------------


def _position_only_encoder(fusion="late"):
    """A ViT whose patch embeddings are zero: every token is a function of its position alone."""
    vit = MultiModalViT("vit_tiny_patch16_224", ("rgb", "dsm"), 32, 8, depth=2, fusion=fusion)
    vit.use_fixed_sincos_positions()
    with torch.no_grad():
        for embed in vit.patch_embeds.values():
            embed.proj.weight.zero_()
            embed.proj.bias.zero_()
    return vit.eval()


@pytest.fixture(scope="module")
def val_root(tmp_path_factory):
    return tmp_path_factory.mktemp("val")


@pytest.fixture(scope="module")
def val_tiles(val_root):
    from rsdatasets import build_dataset

    return build_dataset("synthetic", "val", root=val_root, size=32, n=40)


def test_a_position_only_encoder_is_flagged_in_every_stream(val_tiles):
    torch.manual_seed(0)
    result = decompose_encoder(_position_only_encoder(), val_tiles, max_samples=40)
    assert set(result) == {"rgb", "dsm", FUSED}
    for stream, d in result.items():
        assert d["variance"]["position"] > 0.999, stream
        assert d["flags"]["position_only"], stream
        assert d["knn_raw"] <= d["position_prior"] + 3.0, stream  # no more than position tells


def test_a_random_encoder_carries_content_and_is_not_flagged(val_tiles):
    torch.manual_seed(0)
    encoder = MultiModalViT("vit_tiny_patch16_224", ("rgb", "dsm"), 32, 8, depth=2, fusion="late").eval()
    result = decompose_encoder(encoder, val_tiles, max_samples=40)
    for stream, d in result.items():
        assert d["variance"]["position"] < 0.2, stream
        assert not d["flags"]["position_only"] and not d["flags"]["position_dominated"], stream
    # RGB carries the classes (57 % against a 40 % position prior on these 40 tiles of 32 px; 80 % vs 27 % on
    # the 100 val tiles of 64 px); the DSM of a 32-px tile says little at init, hence RGB only here.
    assert result["rgb"]["knn_raw"] > result["rgb"]["position_prior"] + 10.0


def test_the_decomposition_logged_by_the_probe_hook_matches_its_token_knn(val_tiles, tmp_path):
    torch.manual_seed(0)
    encoder = MultiModalViT("vit_tiny_patch16_224", ("rgb", "dsm"), 32, 8, depth=2, fusion="late")
    hook = KNNProbeHook(max_samples=40)
    hook._data, hook.dataset_cfg = val_tiles, dict(split="val")
    runner = SimpleNamespace(model=SimpleNamespace(export_encoder=lambda: encoder), log_dir=str(tmp_path),
                             message_hub=MessageHub.get_instance("t_decompose"),
                             logger=MMLogger.get_instance("t_decompose"))  # fmt: skip
    hook._probe(runner, epoch=0)
    fused = runner.probe_decomposition[-1]["streams"][FUSED]
    assert round(fused["knn_raw"], 2) == hook.history[-1]["token"]  # the probe's tokens, the same vote
    # rsbench diagnose reads the tiles itself: the same tokens as the probe, so the same raw kNN and shares
    alone = decompose_encoder(encoder, val_tiles, max_samples=40)
    assert alone[FUSED]["knn_raw"] == fused["knn_raw"]
    assert alone[FUSED]["variance"] == pytest.approx(fused["variance"], abs=1e-12)
    assert encoder.training  # the probe and the decomposition leave the mode as they found it
    line = json.loads((tmp_path / "probe_decomposition.jsonl").read_text().splitlines()[0])
    assert line["epoch"] == 0 and set(line["streams"]) == {"rgb", "dsm", FUSED}


def test_the_diagnose_command_on_an_encoder_checkpoint(val_tiles, val_root, tmp_path, capsys):
    encoder = _position_only_encoder()
    path = backbones.save_encoder_checkpoint(encoder, tmp_path / "encoder.pth", method="mssdf", arch="vit_t16",
                                             **encoder.checkpoint_geometry())  # fmt: skip
    argv = ["diagnose", str(path), "--json", str(tmp_path / "d.json"), "--max-samples", "40",
            "--dataset-options", "size=32", "n=40", f"root={val_root}"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "position_only" in out and FUSED in out
    saved = json.loads((tmp_path / "d.json").read_text())
    assert saved["tokens"][FUSED]["flags"]["position_only"] is True
    assert saved["tokens"][FUSED]["knn_without_position"] is None  # NaN is written as null


def test_the_diagnose_command_on_a_training_checkpoint(tmp_path, capsys):
    from conftest import write_tiny_pretrain_config

    from benchmark.running.diagnose import build_from_training_checkpoint

    model_cfg = {k: v for k, v in TINY.items() if k not in ("type", "_scope_")}
    cfg = write_tiny_pretrain_config(tmp_path, "mssdf_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", model_cfg)
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(TINY))
    model.dsm_extra_p = 0.6
    ckpt = tmp_path / "epoch_1.pth"
    hub = MessageHub.get_instance("t_ckpt")
    hub.update_scalar("train/dsm_extra_p", 0.6)
    torch.save({"state_dict": model.state_dict(), "message_hub": hub.state_dict()}, ckpt)
    loaded, _ = build_from_training_checkpoint(cfg, ckpt)
    assert loaded.dsm_extra_p == 0.6  # masked as the run masked at that point
    assert torch.equal(loaded.student.vit.blocks[0].attn.qkv.weight, model.student.vit.blocks[0].attn.qkv.weight)
    out = tmp_path / "g.json"
    argv = ["diagnose", str(ckpt), "--config", str(cfg), "--max-samples", "20", "--json", str(out),
            "--cfg-options", "model.loss_weights.align=0"]  # fmt: skip
    assert main(argv) == 0
    assert "gradient norm on the encoder" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert set(saved["gradients"]["norms"]) == set(TERMS) and saved["gradients"]["norms"]["loss_align"] == 0.0
    assert set(saved["tokens"]) == {"rgb", "dsm", FUSED}


# --- gradients of the loss terms -------------------------------------------------------------------------


def test_gradient_norms_and_cosines_of_known_terms():
    w = torch.zeros(3, requires_grad=True)
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 0.0])
    losses = {"loss_a": w @ a, "loss_b": 2 * w @ b, "loss_off": 0 * (w @ a), "acc": w.sum()}
    report = loss_term_gradients(losses, [w])
    assert report["norms"] == pytest.approx({"loss_a": 1.0, "loss_b": 2 * math.sqrt(2), "loss_off": 0.0})
    assert report["cosine"]["loss_a|loss_b"] == pytest.approx(1 / math.sqrt(2))
    assert math.isnan(report["cosine"]["loss_a|loss_off"])
    assert report["total"] == pytest.approx(math.sqrt(3**2 + 2**2))
    assert w.grad is None  # a diagnostic, not a backward pass of the step


def test_every_mssdf_term_has_a_finite_encoder_gradient_and_a_switched_off_one_has_none():
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(TINY, loss_weights=dict(align=0.0))).train()
    losses = model.loss(_batch(4))
    report = loss_term_gradients(losses, list(model.export_encoder().parameters()))
    assert set(report["norms"]) == set(TERMS)
    assert report["norms"]["loss_align"] == 0.0
    assert all(math.isfinite(v) and v > 0 for k, v in report["norms"].items() if k != "loss_align")
    assert all(-1.0 - 1e-6 <= v <= 1.0 + 1e-6 for k, v in report["cosine"].items() if "align" not in k)


def _runner(model, tmp_path, it=0):
    optim = OptimWrapper(torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1))
    return SimpleNamespace(model=model, iter=it, epoch=0, optim_wrapper=optim, log_dir=str(tmp_path),
                           logger=MMLogger.get_instance("t_grad_hook"))  # fmt: skip


def test_the_gradient_hook_leaves_the_training_step_as_it_was(tmp_path):
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(TINY)).train()
    batch = {"inputs": _batch(4)}
    torch.manual_seed(123)
    expected = model.loss(_batch(4))  # the step's losses without the hook (masks drawn from seed 123)
    model._steps = 0
    hook = LossGradientHook(interval=5)
    torch.manual_seed(123)
    hook.before_train_iter(_runner(model, tmp_path), 0, batch)
    assert model._steps == 0 and all(p.grad is None for p in model.parameters())
    after = model.loss(_batch(4))
    for key, value in expected.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=0)
    logged = json.loads((tmp_path / "loss_gradients.jsonl").read_text())
    assert logged["iter"] == 0 and set(logged["norms"]) == set(TERMS)
    hook.before_train_iter(_runner(model, tmp_path, it=1), 1, batch)  # not on the interval: nothing
    assert len(hook.history) == 1


def test_unchanged_state_puts_buffers_counters_and_random_state_back():
    model = torch.nn.Linear(2, 2)
    model.register_buffer("queue", torch.zeros(3))
    model.counter = 5
    torch.manual_seed(0)
    expected = torch.rand(2)
    torch.manual_seed(0)
    with unchanged_state(model):
        torch.rand(10)
        model.queue += 1
        model.counter += 1
    assert torch.equal(torch.rand(2), expected) and model.queue.sum() == 0 and model.counter == 5


@pytest.mark.slow  # two tiny pretraining runs
def test_a_run_with_every_diagnostic_ends_with_the_same_encoder_bit_for_bit(tmp_path):
    from conftest import write_tiny_pretrain_config

    model = {k: v for k, v in TINY.items() if k not in ("type", "_scope_")}
    states = {}
    for name, hooks in (
        ("without", "dict(type='KNNProbeHook', interval=1, decompose=False)"),
        ("with", "dict(type='KNNProbeHook', interval=1), dict(type='LossGradientHook', interval=1)"),
    ):
        (tmp_path / name).mkdir()
        cfg = write_tiny_pretrain_config(tmp_path / name, "mssdf_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", model, 2)
        text = cfg.read_text().replace(f"root={str(tmp_path / name / 'data')!r}", f"root={str(tmp_path)!r}")
        teacher_and_curriculum = "dict(type='TeacherEMAHook', momentum='auto'), dict(type='MaskingCurriculumHook')"
        cfg.write_text(text + f"custom_hooks = [{teacher_and_curriculum}, {hooks}]\n")
        assert main(["pretrain", str(cfg), "--work-dir", str(tmp_path / name / "work")]) == 0
        states[name] = torch.load(tmp_path / name / "work" / "encoder.pth", weights_only=True)["state_dict"]
    assert all(torch.equal(states["with"][k], v) for k, v in states["without"].items())
    logs = list((tmp_path / "with" / "work").rglob("loss_gradients.jsonl"))
    assert logs and len(logs[0].read_text().splitlines()) == 4  # every iteration of 2 epochs x 2
    assert list((tmp_path / "with" / "work").rglob("probe_decomposition.jsonl"))
