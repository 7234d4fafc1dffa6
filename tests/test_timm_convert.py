import pytest
import timm
import torch

import backbones
from backbones import CheckpointError
from backbones.timm_convert import build_target, convert_timm_vit, fit_to_encoder, unwrap_state_dict
from benchmark.cli import main

TINY = dict(pretrained=False, img_size=64, depth=2)


def _tiny_timm(**kw):
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", **{**TINY, **kw}).eval()


def _fit(state_dict, **kw):
    state, report = convert_timm_vit(state_dict, **kw)
    return state, report, fit_to_encoder(state, build_target(report, report["img_size"]), "test")


def _tokens(model, x):
    """Our encoder's outputs (B x C x h x w) at its out_indices, fed RGB only."""
    with torch.no_grad():
        return model.encode(model.patch_embeds["rgb"](x))


@pytest.mark.parametrize("name, dim, depth", [("vit_base_patch16_224", 768, 12), ("vit_large_patch16_224", 1024, 24)])
def test_timm_b_and_l_shapes_fill_the_encoder(name, dim, depth):
    with torch.device("meta"):
        source = timm.create_model(name, pretrained=False, num_classes=1000).state_dict()
    state, report = convert_timm_vit(source)
    assert (report["embed_dim"], report["depth"], report["img_size"]) == (dim, depth, 224)
    assert report["dropped"] == ["head.bias", "head.weight"]
    with torch.device("meta"):
        model = build_target(report, 224)
    assert fit_to_encoder(state, model, name) == {"missing": [], "unexpected": []}


def test_classifier_model_converts_exactly(tmp_path, capsys):
    reference = _tiny_timm(num_classes=7)
    src, dst = tmp_path / "vit_tiny.pth", tmp_path / "timm_tiny.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, src)  # DDP-wrapped
    assert main(["convert", "timm", str(src), str(dst), "--img-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "timm layout, vit_t16, depth 2" in out and "['head.bias', 'head.weight']" in out
    model = backbones.build("timm_vit_t16", ("rgb", "dsm"), checkpoint=dst).eval()
    assert backbones.checkpoint.read_meta(dst)["method"] == "timm"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        theirs = reference.forward_features(x)[:, 1:].transpose(1, 2).reshape(2, 192, 4, 4)
    assert torch.allclose(_tokens(model, x)[-1], theirs, atol=1e-5)


def test_average_pooled_model_uses_fc_norm_as_the_final_norm():
    reference = _tiny_timm(num_classes=3, global_pool="avg")  # timm: norm is Identity, fc_norm after pooling
    source = reference.state_dict()
    state, report, fit = _fit(source)
    assert fit == {"missing": [], "unexpected": []}
    assert torch.equal(state["vit.norm.weight"], source["fc_norm.weight"])
    assert any("fc_norm" in line for line in report["initialised"])
    model = build_target(report, 64).eval()
    model.load_state_dict(state, strict=False)
    x = torch.randn(1, 3, 64, 64)
    first = reference.forward_intermediates(x, indices=[0], norm=False, intermediates_only=True)[0]
    assert torch.allclose(_tokens(model, x)[0], first, atol=1e-5)  # block 0 output, before any final norm


def test_no_embed_class_and_resampled_positions():
    reference = _tiny_timm(no_embed_class=True)
    state, report, _ = _fit(reference.state_dict())
    model = build_target(report, 64).eval()
    model.load_state_dict(state, strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        theirs = reference.forward_features(x)[:, 1:].transpose(1, 2).reshape(1, 192, 4, 4)
    assert torch.allclose(_tokens(model, x)[-1], theirs, atol=1e-5)
    state, report, _ = _fit(reference.state_dict(), img_size=96)
    assert state["vit.pos_embed"].shape == (1, 1 + 6 * 6, 192)
    assert any("4x4 to 6x6" in line for line in report["initialised"])


@pytest.mark.parametrize(
    "kw, key",
    [(dict(init_values=1e-5), "blocks.0.ls1.gamma"), (dict(reg_tokens=4), "reg_token"), (dict(mlp_ratio=2), "fc1")],
)
def test_what_the_encoder_cannot_hold_is_refused(kw, key):
    with pytest.raises(
        CheckpointError, match=rf"(unexpected|shape mismatch|prefix tokens).*{key}|{key}.*prefix tokens"
    ):
        _fit(_tiny_timm(**kw).state_dict())


def test_cli_refuses_a_mismatch_and_bad_files_in_one_line(tmp_path, capsys):
    src, dst = tmp_path / "vit.pth", tmp_path / "out.pth"
    torch.save(_tiny_timm(mlp_ratio=2).state_dict(), src)
    assert main(["convert", "timm", str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert "shape mismatch" in err and "mlp.fc1" in err and not dst.exists()
    torch.save({"model": {"conv1.weight": torch.zeros(8, 3, 7, 7)}}, src)  # a ResNet, not a ViT
    assert main(["convert", "timm", str(src), str(dst)]) == 2
    assert "not a timm ViT state dict" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match=r"\(192, 4, 16, 16\): expected a convolution over 3"):
        convert_timm_vit(_tiny_timm(in_chans=4).state_dict())  # e.g. a 4-band satellite ViT
    with pytest.raises(CheckpointError, match="no state dict found"):
        unwrap_state_dict({"epoch": 3, "args": None})
    with pytest.raises(CheckpointError, match="found a VisionTransformer; save model.state_dict"):
        unwrap_state_dict(_tiny_timm())  # a pickled module instead of its weights
