"""The official CMID releases -> rsbench encoders, on state dicts with the official key names and shapes.

The official ResNet-50 is timm's ``resnet50``; the official Swin is the mmcls ``SwinTransformer``
that mmpretrain still ships with the same key layout, so the tests build the "official" side
from those two libraries and compare features, not only key names.
"""

import pytest
import timm
import torch
from mmpretrain.models.backbones import SwinTransformer

import backbones
from backbones import CheckpointError
from backbones.cmid.convert import build_target, check_fits, convert_official_cmid, load_converted
from backbones.cnn import MultiModalResNet, MultiModalSwin
from benchmark.cli import main

SMALL_SWIN = dict(embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8])


def _official_resnet(**kw):
    torch.manual_seed(0)
    return timm.create_model("resnet50", pretrained=False, **{"num_classes": 0, "global_pool": "", **kw}).eval()


def _full_pretraining_checkpoint(encoder_state, teacher_offset=1.0):
    """The layout of the official pretraining checkpoint: ``{"model": {...}}`` with every part of the model."""
    state = {f"online_encoder.model.{k}": v for k, v in encoder_state.items()}
    state.update({f"branch_encoder.{k}": v + teacher_offset if v.is_floating_point() else v
                  for k, v in encoder_state.items()})  # fmt: skip
    state.update({"online_encoder.mask_token": torch.zeros(1, 64, 1, 1), "queue": torch.randn(256, 16),
                  "online_projector.layer.0.0.weight": torch.randn(8, 8),
                  "mim2org.decoder_pred.0.weight": torch.randn(4)})  # fmt: skip
    return {"model": state, "epoch": 199}


@pytest.mark.parametrize("layout", ["backbone_only", "module_prefix", "full_checkpoint"])
def test_resnet_conversion_reproduces_the_official_features(layout):
    official = _official_resnet(layers=(1, 1, 1, 1))
    state = official.state_dict()
    blob = {
        "backbone_only": state,
        "module_prefix": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
        "full_checkpoint": _full_pretraining_checkpoint(state),
    }[layout]
    converted, report = convert_official_cmid(blob, dsm_init="none")
    assert report["arch"] == "resnet50" and report["unused"] == []
    ours = MultiModalResNet("resnet50", ("rgb",), layers=(1, 1, 1, 1)).eval()
    load_converted(ours, converted, "official.pth")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = official.forward_intermediates(x, intermediates_only=True)[1:]  # after layer1 .. layer4
        got = ours({"rgb": x})
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(expected, got))


def test_teacher_and_dsm_stem():
    state = _official_resnet(layers=(1, 1, 1, 1)).state_dict()
    student, report = convert_official_cmid(_full_pretraining_checkpoint(state))
    teacher, _ = convert_official_cmid(_full_pretraining_checkpoint(state), teacher=True)
    assert torch.allclose(teacher["stems.rgb.weight"], student["stems.rgb.weight"] + 1)  # branch_encoder taken
    assert torch.allclose(student["stems.dsm.weight"], state["conv1.weight"].sum(1, keepdim=True))
    assert report["derived"] == ["stems.dsm (RGB filters summed over colour)"]
    with pytest.raises(CheckpointError, match="backbone-only"):
        convert_official_cmid(state, teacher=True)


def test_swin_conversion_reproduces_the_official_features():
    torch.manual_seed(0)
    official = SwinTransformer(arch=SMALL_SWIN, img_size=224, out_indices=(3,), drop_path_rate=0.0)
    official.eval()
    with torch.no_grad():  # random norms and biases too, so a misplaced one shows
        for name, p in official.named_parameters():
            p.copy_(torch.rand_like(p) + 0.5 if "norm" in name else torch.randn_like(p) * 0.05)
    state = official.state_dict()
    for key in (
        "stages.0.blocks.1.attn.w_msa.relative_position_bias_table",
        "stages.0.downsample.reduction.weight",
        "stages.2.blocks.0.ffn.layers.0.0.weight",
        "norm3.weight",
        "patch_embed.projection.weight",
    ):
        assert key in state  # the official (mmcls) key names
    converted, report = convert_official_cmid(_full_pretraining_checkpoint(state, 0.0), dsm_init="none")
    assert report["arch"] == "swin_b" and report["unused"] == []
    ours = MultiModalSwin(modalities=("rgb",), embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)).eval()
    load_converted(ours, converted, "official.pth")
    x = torch.rand(1, 3, 224, 224)  # 56, 28, 14, 7: whole windows, shifted windows in every stage but the last
    with torch.no_grad():
        expected, got = official(x)[-1], ours({"rgb": x})[-1]
    assert torch.allclose(expected, got, atol=1e-4), (expected - got).abs().max()


@pytest.mark.slow
def test_full_size_releases_fit_the_registered_encoders():
    """Swin-B and ResNet-50 at full size (targets on the meta device): every converted key and shape fits."""
    swin = SwinTransformer(arch="base", img_size=224, out_indices=(3,), drop_path_rate=0.0)  # ~1 s; no meta init
    converted, report = convert_official_cmid(swin.state_dict())
    assert report["unused"] == []
    check_fits(converted, build_target("swin_b", ("rgb", "dsm"), device="meta").state_dict(), "swin_b.pth")
    converted, report = convert_official_cmid(_official_resnet(device="meta", num_classes=1000).state_dict())
    assert report["unused"] == ["fc.bias", "fc.weight"]  # a classifier left in the file is reported, not loaded
    check_fits(converted, build_target("resnet50", ("rgb", "dsm"), device="meta").state_dict(), "resnet50.pth")


def test_refusals_are_one_clear_error():
    r18 = timm.create_model("resnet18", pretrained=False, num_classes=0, device="meta").state_dict()
    converted, _ = convert_official_cmid(r18)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        check_fits(converted, build_target("resnet50", ("rgb", "dsm"), device="meta").state_dict(), "r18.pth")
    r101 = timm.create_model("resnet101", pretrained=False, num_classes=0, device="meta").state_dict()
    with pytest.raises(CheckpointError, match="unexpected"):
        check_fits(convert_official_cmid(r101)[0], build_target("resnet50", ("rgb", "dsm"), "meta").state_dict(), "x")
    with pytest.raises(CheckpointError, match="not an official CMID backbone"):
        convert_official_cmid({"blocks.0.attn.qkv.weight": torch.zeros(3)})


@pytest.mark.slow  # over 2 s on 2 cores; `make test` runs it
def test_cli_converts_a_file_and_the_backbone_loads_it(tmp_path, capsys):
    src, dst = tmp_path / "cmid_resnet50_backbone.pth", tmp_path / "cmid_resnet50.pth"
    torch.save(_official_resnet().state_dict(), src)
    assert main(["convert", "cmid", str(src), str(dst)]) == 0
    assert "resnet50" in capsys.readouterr().out
    encoder = backbones.build("cmid_resnet50", checkpoint=dst).eval()
    assert encoder.load_report.missing == [] and backbones.checkpoint.read_meta(dst)["method"] == "cmid"
    feats = encoder({"rgb": torch.rand(1, 3, 64, 64), "dsm": torch.rand(1, 1, 64, 64)})
    assert [f.shape[1] for f in feats] == [256, 512, 1024, 2048]

    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=0).state_dict(), tmp_path / "r18.pth")
    assert main(["convert", "cmid", str(tmp_path / "r18.pth"), str(tmp_path / "out.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert "shape mismatch" in err and len(err.splitlines()) <= 2 and "Traceback" not in err
