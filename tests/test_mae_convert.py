import pytest
import timm
import torch

import backbones
from backbones import CheckpointError
from backbones.mae.convert import convert_official_mae
from backbones.timm_convert import build_target, fit_to_encoder
from benchmark.cli import main


def official_mae_state(dim=192, depth=2, grid=4, decoder=True, device="cpu", dec_dim=32, dec_depth=1):
    """Key names and shapes of facebookresearch/mae's MaskedAutoencoderViT (patch 16, qkv bias, CLS).

    ``decoder=False`` is the encoder-only ``mae_pretrain_vit_*.pth``; ``True`` the ``mae_visualize_*`` layout.
    """
    g = torch.Generator().manual_seed(0)

    def t(*shape):
        return torch.empty(*shape, device=device) if device == "meta" else torch.randn(*shape, generator=g) * 0.05

    def blocks(prefix, d, n):
        out = {}
        for i in range(n):
            b = f"{prefix}.{i}."
            out.update({
                b + "norm1.weight": 1 + t(d), b + "norm1.bias": t(d), b + "attn.qkv.weight": t(3 * d, d),
                b + "attn.qkv.bias": t(3 * d), b + "attn.proj.weight": t(d, d), b + "attn.proj.bias": t(d),
                b + "norm2.weight": 1 + t(d), b + "norm2.bias": t(d), b + "mlp.fc1.weight": t(4 * d, d),
                b + "mlp.fc1.bias": t(4 * d), b + "mlp.fc2.weight": t(d, 4 * d), b + "mlp.fc2.bias": t(d),
            })  # fmt: skip
        return out

    n = grid * grid + 1
    state = {"cls_token": t(1, 1, dim), "pos_embed": t(1, n, dim), "patch_embed.proj.weight": t(dim, 3, 16, 16),
             "patch_embed.proj.bias": t(dim), **blocks("blocks", dim, depth), "norm.weight": 1 + t(dim),
             "norm.bias": t(dim)}  # fmt: skip
    if decoder:
        state.update({"mask_token": t(1, 1, dec_dim), "decoder_embed.weight": t(dec_dim, dim),
                      "decoder_embed.bias": t(dec_dim), "decoder_pos_embed": t(1, n, dec_dim),
                      **blocks("decoder_blocks", dec_dim, dec_depth), "decoder_norm.weight": t(dec_dim),
                      "decoder_norm.bias": t(dec_dim), "decoder_pred.weight": t(16 * 16 * 3, dec_dim),
                      "decoder_pred.bias": t(16 * 16 * 3)})  # fmt: skip
    return {"model": state}


@pytest.mark.parametrize(
    "dim, depth, arch, decoder",
    [(768, 12, "vit_b16", False), (1024, 24, "vit_l16", True)],  # mae_pretrain_vit_base, mae_visualize_vit_large
)
def test_official_release_shapes_fill_the_encoder(dim, depth, arch, decoder):
    blob = official_mae_state(dim, depth, grid=14, decoder=decoder, device="meta", dec_dim=512, dec_depth=8)
    state, report = convert_official_mae(blob, img_size=320)
    assert (report["embed_dim"], report["depth"], report["source_grid"]) == (dim, depth, (14, 14))
    assert report["layout"] == ("pretrain+decoder" if decoder else "pretrain")
    assert len(report["dropped"]) == (1 + 2 + 1 + 12 * 8 + 2 + 2 if decoder else 0)  # mask token + decoder
    assert state["vit.pos_embed"].shape == (1, 1 + 20 * 20, dim)  # resampled to 320 px
    assert state["patch_embeds.dsm.proj.weight"].shape == (dim, 1, 16, 16)
    assert any("patch_embeds.dsm" in line for line in report["initialised"])
    with torch.device("meta"):
        model = build_target(report, img_size=320)
    assert model.arch == arch and len(model.vit.blocks) == depth
    assert fit_to_encoder(state, model, "release") == {"missing": [], "unexpected": []}


def test_mae_vit_l16_is_registered():
    spec = backbones.get_spec("mae_vit_l16")
    assert spec.method == "mae" and spec.arch == "vit_l16"


def test_cli_convert_then_build_gives_the_official_encoder_output(tmp_path, capsys):
    blob = official_mae_state()
    src, dst = tmp_path / "mae_visualize_vit_tiny.pth", tmp_path / "mae_tiny.pth"
    torch.save(blob, src)
    assert main(["convert", "mae", str(src), str(dst), "--img-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "pretrain+decoder layout, vit_t16, depth 2" in out and "mae_vit_t16" in out
    assert "missing 0, unexpected 0" in out
    model = backbones.build("mae_vit_t16", ("rgb", "dsm"), checkpoint=dst).eval()
    assert model.load_report.missing == [] and model.grid_size == (4, 4)
    src_state = blob["model"]
    assert torch.equal(model.patch_embeds["dsm"].proj.weight, src_state["patch_embed.proj.weight"].sum(1, keepdim=True))
    # The same weights in a plain timm ViT (MAE's encoder is one) give the same final tokens.
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=64, depth=2)
    reference.load_state_dict({k: v for k, v in src_state.items() if not k.startswith(("decoder_", "mask_token"))})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = model.encode(model.patch_embeds["rgb"](x))[-1]
        theirs = reference.eval().forward_features(x)[:, 1:].transpose(1, 2).reshape(2, 192, 4, 4)
        feats = model({"rgb": torch.rand(1, 3, 64, 64), "dsm": torch.rand(1, 1, 64, 64)})
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2] and all(torch.isfinite(f).all() for f in feats)


def test_rgb_only_conversion_keeps_the_native_grid_by_default(tmp_path, capsys):
    blob = official_mae_state(decoder=False)
    state, report = convert_official_mae(blob, dsm_init="none")
    assert report["img_size"] == 64 and report["modalities"] == ["rgb"] and report["initialised"] == []
    assert torch.equal(state["vit.pos_embed"], blob["model"]["pos_embed"])
    torch.save(blob, tmp_path / "enc.pth")
    args = ["convert", "mae", str(tmp_path / "enc.pth"), str(tmp_path / "out.pth"), "--dsm-init", "none"]
    assert main([*args, "--img-size", "64"]) == 0
    assert "pretrain layout" in capsys.readouterr().out
    model = backbones.build("mae_vit_t16", ("rgb",), checkpoint=tmp_path / "out.pth")
    assert model.modalities == ("rgb",)
    with pytest.raises(CheckpointError, match="does not fit"):  # no DSM embedding in an RGB-only conversion
        backbones.build("mae_vit_t16", ("rgb", "dsm"), checkpoint=tmp_path / "out.pth")


def test_mismatches_are_refused_with_one_line(tmp_path, capsys):
    src = tmp_path / "mae.pth"
    torch.save(official_mae_state(), src)
    dst = tmp_path / "x.pth"
    assert main(["convert", "mae", str(src), str(dst), "--img-size", "64", "--patch-size", "8"]) == 2
    err = capsys.readouterr().err
    assert "shape mismatch" in err and "patch_embeds.rgb.proj.weight" in err and len(err.strip().splitlines()) <= 3
    assert not dst.exists()

    blob = official_mae_state()
    del blob["model"]["blocks.1.norm2.bias"]
    with pytest.raises(CheckpointError, match=r"missing 1 \['vit.blocks.1.norm2.bias'\]"):
        fit_to_encoder(*_converted(blob))
    blob = official_mae_state()
    blob["model"]["blocks.0.mlp.fc1.weight"] = torch.zeros(100, 192)  # not the ViT-Ti MLP width
    with pytest.raises(CheckpointError, match="shape mismatch.*blocks.0.mlp.fc1.weight"):
        fit_to_encoder(*_converted(blob))
    with pytest.raises(CheckpointError, match="matches no rsbench ViT size"):
        build_target(convert_official_mae(official_mae_state(dim=1280, depth=1))[1], img_size=64)
    with pytest.raises(CheckpointError, match="not an official MAE state dict"):
        convert_official_mae({"model": {"encoder.layers.0.weight": torch.zeros(1)}})
    (tmp_path / "broken.pth").write_bytes(b"\x00garbage")
    assert main(["convert", "mae", str(tmp_path / "broken.pth"), str(dst)]) == 2
    assert "could not be read" in capsys.readouterr().err


def _converted(blob):
    state, report = convert_official_mae(blob)
    return state, build_target(report, img_size=report["img_size"]), "test"
