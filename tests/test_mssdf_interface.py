"""MSSDF is evaluated through the input it was pretrained on, and every loss term reaches the encoder."""

import pytest
import torch
from mmengine.config import ConfigDict

import backbones
from backbones.hooks import TeacherEMAHook, momentum_for_budget
from backbones.normalize import normalize_modalities
from backbones.vit import MultiModalViT
from rsbench.registry import MODELS

TINY = dict(type="MSSDF", _scope_="rsbench", arch="vit_t16", img_size=32, patch_size=8, encoder_kwargs=dict(depth=2),
            decoder_dim=32, decoder_heads=2, fusion_depth=1, decoder_depth=1, proj_dim=16)  # fmt: skip


def _batch(b=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "rgb": torch.rand(b, 3, size, size, generator=g),
        "dsm": torch.rand(b, 1, size, size, generator=g) * 20,
        "dsm_valid": torch.ones(b, 1, size, size, dtype=torch.bool),
    }


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MODELS.build(ConfigDict(TINY)).eval()


def test_pretraining_and_downstream_forward_give_the_same_encoder_tokens(model, tmp_path):
    x = normalize_modalities(_batch())
    nothing_masked = torch.zeros(4, 16, dtype=torch.bool)
    # The exported encoder, as the harness builds it from the checkpoint (late fusion is recorded in it).
    geometry = model.student.checkpoint_geometry()
    path = backbones.save_encoder_checkpoint(model.export_encoder(), tmp_path / "encoder.pth", **geometry)
    downstream = backbones.build("mssdf_vit_t16", ("rgb", "dsm"), checkpoint=path, img_size=32, patch_size=8).eval()
    assert downstream.fusion == "late"
    per_modality = []
    for m in ("rgb", "dsm"):
        tokens, index, valid = model._student_tokens(m, x[m], nothing_masked)
        assert valid.all() and (index == torch.arange(16)).all()
        encoder_maps = downstream.encode(downstream.patch_embeds[m](x[m]))
        final = encoder_maps[-1].flatten(2).transpose(1, 2)  # B x N x C, the final (normed) tokens
        torch.testing.assert_close(tokens, final, rtol=0, atol=0)
        per_modality.append(encoder_maps)
    # RGB + DSM downstream: the two sequences through the shared encoder, averaged after it, never their embeddings
    fused = downstream.encode_inputs(x)
    for level, (a, b) in enumerate(zip(*per_modality)):
        torch.testing.assert_close(fused[level], (a + b) / 2, rtol=0, atol=0)
    averaged_embeddings = downstream.encode(downstream.embed(x))[-1]
    assert not torch.allclose(fused[-1], averaged_embeddings, atol=1e-3)


def test_mean_fusion_is_what_the_other_methods_pretrain_on():
    vit = MultiModalViT("vit_tiny_patch16_224", ("rgb", "dsm"), 32, 8, depth=2)
    x = normalize_modalities(_batch(2))
    torch.testing.assert_close(vit.encode_inputs(x)[-1], vit.encode(vit.embed(x))[-1])
    with pytest.raises(ValueError, match="unknown fusion"):
        MultiModalViT("vit_tiny_patch16_224", ("rgb",), 32, 8, depth=2, fusion="sum")


@pytest.mark.parametrize("term", ["loss_rec_rgb", "loss_rec_dsm", "loss_align", "loss_hsic", "loss_mod"])
def test_every_loss_term_reaches_the_encoder(term):
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(TINY)).train()
    losses = model.loss(_batch(6))
    losses[term].backward()
    encoder = [p for p in model.student.vit.blocks.parameters()]
    norm = torch.sqrt(sum((p.grad**2).sum() for p in encoder if p.grad is not None))
    assert norm > 0, f"{term} puts no pressure on the encoder"


def test_hsic_acts_on_the_decoder_outputs_not_on_a_head_of_its_own():
    model = MODELS.build(ConfigDict(TINY))
    assert not hasattr(model, "specific_proj")
    torch.manual_seed(0)
    model.loss(_batch(4))["loss_hsic"].backward()
    assert model.rec_head.weight.grad is not None and model.rec_head.weight.grad.abs().sum() > 0


def test_content_diagnostic_tells_content_from_position():
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(TINY))
    x = normalize_modalities(_batch(4))
    masks = dict(zip(model.modalities, model._masks(_batch(4))))
    targets = {m: model._teacher_targets(m, x[m]) for m in model.modalities}
    _, _, _, rec = model._reconstruction(x, masks, targets, 4, 4)
    ratios = model.content_diagnostic(x, masks, targets, rec, 4, 4)
    assert set(ratios) == {"content_ratio_rgb", "content_ratio_dsm"}
    # A batch of four copies of one image: rolling it changes nothing, so the ratio is exactly 1.
    same = {k: v[:1].expand_as(v).contiguous() for k, v in x.items()}
    targets = {m: model._teacher_targets(m, same[m]) for m in model.modalities}
    _, _, _, rec = model._reconstruction(same, masks, targets, 4, 4)
    for value in model.content_diagnostic(same, masks, targets, rec, 4, 4).values():
        assert value.item() == pytest.approx(1.0, abs=1e-6)


def test_teacher_momentum_is_chosen_for_the_budget_and_recorded():
    assert momentum_for_budget(128) == pytest.approx(1 - 2 * 2.995732 / 128, abs=1e-5)  # ~0.953
    assert momentum_for_budget(100_000) > 0.9999
    hook = TeacherEMAHook(momentum="auto")

    class Runner:
        max_iters = 128
        logger = __import__("logging").getLogger("t")

    runner = Runner()
    hook.before_train(runner)
    assert hook.momentum == pytest.approx(momentum_for_budget(128))
    assert runner.teacher_momentum["requested"] == "auto"
    assert runner.teacher_momentum["init_left"] == pytest.approx(0.05, abs=0.002)
    with pytest.raises(ValueError, match="teacher momentum"):
        TeacherEMAHook(momentum=1.5)
