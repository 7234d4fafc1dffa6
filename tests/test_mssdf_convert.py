import pytest
import torch

import backbones
from backbones import CheckpointError
from backbones.mssdf.convert import convert_official_mssdf, sinusoid_table_1d
from backbones.vit import VIT_ARCHS, MultiModalViT
from benchmark.cli import main


def official_pretrain_state(dim=192, depth=2, device="cpu", teacher=True):
    """Key names and shapes of the official pretraining checkpoint (PretrainVisionTransformer, qkv_bias, CLS)."""
    g = torch.Generator().manual_seed(0)

    def t(*shape):
        return torch.empty(*shape, device=device) if device == "meta" else torch.randn(*shape, generator=g) * 0.02

    enc = {"patch_embed.proj.weight": t(dim, 3, 16, 16), "patch_embed.proj.bias": t(dim), "norm.weight": t(dim),
           "norm.bias": t(dim), "cls_token": t(1, 1, dim), "cls_embed.weight": t(1, dim)}  # fmt: skip
    for i in range(depth):
        b = f"blocks.{i}."
        enc.update({
            b + "norm1.weight": t(dim), b + "norm1.bias": t(dim), b + "attn.qkv.weight": t(3 * dim, dim),
            b + "attn.q_bias": t(dim), b + "attn.v_bias": t(dim), b + "attn.proj.weight": t(dim, dim),
            b + "attn.proj.bias": t(dim), b + "norm2.weight": t(dim), b + "norm2.bias": t(dim),
            b + "mlp.fc1.weight": t(4 * dim, dim), b + "mlp.fc1.bias": t(4 * dim),
            b + "mlp.fc2.weight": t(dim, 4 * dim), b + "mlp.fc2.bias": t(dim),
        })  # fmt: skip
    state = {f"encoder.{k}": v for k, v in enc.items()}
    if teacher:
        state.update({f"ema_teacher.{k}": v + 1 if device != "meta" else v for k, v in enc.items()})
    state.update({"encoder_to_decoder.weight": t(384, dim), "mask1_token": t(1, 1, 384), "fusion_token": t(1, 384),
                  "decoder.blocks.0.norm1.weight": t(384), "cls_head.1.weight": t(384, dim)})  # fmt: skip
    return {"model": state, "epoch": 499}


def official_mmpretrain_state(dim=192, depth=2):
    g = torch.Generator().manual_seed(1)
    state = {
        "patch_embed.projection.weight": torch.randn(dim, 3, 16, 16, generator=g),
        "patch_embed.projection.bias": torch.randn(dim, generator=g),
        "cls_token": torch.randn(1, 1, dim, generator=g),
        "pos_embed": torch.randn(1, 1 + 400, dim, generator=g),
        "ln1.weight": torch.ones(dim),
        "ln1.bias": torch.zeros(dim),
    }
    for i in range(depth):
        for name, shape in (("ln1", (dim,)), ("ln2", (dim,)), ("attn.qkv", (3 * dim, dim)), ("attn.proj", (dim, dim)),
                            ("ffn.layers.0.0", (4 * dim, dim)), ("ffn.layers.1", (dim, 4 * dim))):  # fmt: skip
            state[f"layers.{i}.{name}.weight"] = torch.randn(*shape, generator=g)
            state[f"layers.{i}.{name}.bias"] = torch.randn(shape[0], generator=g)
    return {"state_dict": state}


def test_pretrain_layout_maps_every_encoder_weight():
    blob = official_pretrain_state()
    state, report = convert_official_mssdf(blob)
    src = blob["model"]
    assert report["layout"] == "pretrain" and report["depth"] == 2 and report["embed_dim"] == 192
    assert report["unused"] == []  # every student key was used
    assert torch.equal(state["vit.blocks.1.mlp.fc2.weight"], src["encoder.blocks.1.mlp.fc2.weight"])
    qkv_bias = state["vit.blocks.0.attn.qkv.bias"]
    assert torch.equal(qkv_bias[:192], src["encoder.blocks.0.attn.q_bias"])
    assert torch.equal(qkv_bias[192:384], torch.zeros(192))  # BEiT-style attention has no key bias
    assert torch.equal(qkv_bias[384:], src["encoder.blocks.0.attn.v_bias"])
    assert torch.equal(state["vit.cls_token"], src["encoder.cls_token"] + src["encoder.cls_embed.weight"][None])
    assert torch.allclose(state["vit.pos_embed"][0, 1:], sinusoid_table_1d(400, 192))
    assert torch.equal(
        state["patch_embeds.dsm.proj.weight"], src["encoder.patch_embed.proj.weight"].sum(1, keepdim=True)
    )
    teacher, _ = convert_official_mssdf(blob, teacher=True)
    assert torch.equal(teacher["vit.norm.weight"], src["ema_teacher.norm.weight"])


def test_sinusoid_table_matches_the_formula():
    table = sinusoid_table_1d(5, 8)
    assert table[3, 2].item() == pytest.approx(torch.sin(torch.tensor(3 / 10000 ** (2 / 8))).item(), abs=1e-6)
    assert table[3, 3].item() == pytest.approx(torch.cos(torch.tensor(3 / 10000 ** (2 / 8))).item(), abs=1e-6)


@pytest.mark.parametrize("depth", [12, 24])  # vit_base_500.pth and the 768-wide, 24-deep "large" release
def test_official_release_shapes_fit_the_encoder(depth):
    state, report = convert_official_mssdf(official_pretrain_state(dim=768, depth=depth, device="meta"))
    assert report["depth"] == depth
    with torch.device("meta"):
        model = MultiModalViT(VIT_ARCHS["vit_b16"], ("rgb", "dsm"), 320, 16, depth=depth)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("pyramid.")}
    assert set(state) == set(own)
    assert all(state[k].shape == own[k].shape for k in own)


def test_mmpretrain_layout():
    state, report = convert_official_mssdf(official_mmpretrain_state(), dsm_init="none")
    assert report["layout"] == "mmpretrain" and report["unused"] == []
    assert state["vit.blocks.1.mlp.fc1.weight"].shape == (768, 192)
    assert "patch_embeds.dsm.proj.weight" not in state


def test_bad_checkpoints_are_refused_with_the_reason():
    with pytest.raises(CheckpointError, match="not an official MSSDF checkpoint"):
        convert_official_mssdf({"model": {"foo": torch.zeros(1)}})
    blob = official_pretrain_state()
    del blob["model"]["encoder.blocks.1.mlp.fc1.bias"]
    with pytest.raises(CheckpointError, match=r"lacks key 'encoder.blocks.1.mlp.fc1.bias'"):
        convert_official_mssdf(blob)


def test_convert_cli_then_build_and_run(tmp_path, capsys):
    src, dst = tmp_path / "vit_tiny_500.pth", tmp_path / "mssdf_tiny.pth"
    torch.save(official_pretrain_state(), src)
    assert main(["convert", "mssdf", str(src), str(dst), "--img-size", "64"]) == 0
    assert "pretrain layout, vit_t16, depth 2" in capsys.readouterr().out
    model = backbones.build("mssdf_vit_t16", ("rgb", "dsm"), checkpoint=dst)
    assert len(model.vit.blocks) == 2 and model.grid_size == (4, 4)
    feats = model({"rgb": torch.rand(1, 3, 64, 64), "dsm": torch.rand(1, 1, 64, 64)})
    assert all(torch.isfinite(f).all() for f in feats)
    (tmp_path / "broken.pth").write_bytes(b"\x00garbage")
    assert main(["convert", "mssdf", str(tmp_path / "broken.pth"), str(tmp_path / "x.pth")]) == 2
    assert "could not be read" in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists()
