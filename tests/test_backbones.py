import pytest
import torch
from conftest import isolate_registry

import backbones
from backbones import CheckpointError, UnknownBackboneError
from rsbench.registry import BACKBONES


def _inputs(size=32, batch=2, modalities=("rgb", "dsm")):
    channels = {"rgb": 3, "dsm": 1, "ms": 4}
    return {m: torch.randn(batch, channels[m], size, size) for m in modalities}


def test_registry_lists_random_init_vits():
    names = backbones.list_backbones()
    assert {"random_init_vit_t16", "random_init_vit_s16", "random_init_vit_b16"} <= set(names)
    assert backbones.list_backbones("random_init_vit_t*") == ["random_init_vit_t16"]
    spec = backbones.get_spec("random_init_vit_t16")
    assert spec.method == "random_init" and spec.arch == "vit_t16"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownBackboneError, match="random_init_vit_t16"):
        backbones.build("random_init_vit_t61")


@pytest.mark.parametrize("modalities", [("rgb",), ("rgb", "dsm"), ("rgb", "dsm", "ms")])
def test_contract_four_scales(modalities):
    model = backbones.build("random_init_vit_t16", modalities=modalities, img_size=64, patch_size=8, depth=4)
    feats = model(_inputs(64, 2, modalities))
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]  # strides 4, 8, 16, 32
    assert [f.shape[1] for f in feats] == model.out_channels
    assert model.modalities == modalities and model.patch_size == 8


def test_patch16_gives_the_same_strides():
    model = backbones.build("random_init_vit_t16", modalities=("rgb",), img_size=64, patch_size=16, depth=4)
    assert [f.shape[-1] for f in model(_inputs(64, 1, ("rgb",)))] == [16, 8, 4, 2]
    with pytest.raises(ValueError, match="patch_size 4"):
        backbones.build("random_init_vit_t16", patch_size=4)


def test_other_input_size_than_built_for():
    model = backbones.build("random_init_vit_t16", modalities=("rgb",), img_size=32, patch_size=8, depth=4)
    feats = model(_inputs(64, 1, ("rgb",)))  # the position embedding is resampled
    assert feats[0].shape[-2:] == (16, 16)


def test_dsm_changes_the_features():
    model = backbones.build("random_init_vit_t16", img_size=32, patch_size=8, depth=4).eval()
    x = _inputs(32, 1)
    y = dict(x, dsm=x["dsm"] + 1.0)
    assert not torch.allclose(model(x)[2], model(y)[2])


def test_missing_modality_is_a_clear_error():
    model = backbones.build("random_init_vit_t16", img_size=32, patch_size=8, depth=4)
    with pytest.raises(KeyError, match="dsm"):
        model(_inputs(32, 1, ("rgb",)))


def test_checkpoint_round_trip_and_refusals(tmp_path):
    torch.manual_seed(0)
    a = backbones.build("random_init_vit_t16", img_size=32, patch_size=8, depth=4)
    path = backbones.save_encoder_checkpoint(a, tmp_path / "enc.pth", method="random_init")
    b = backbones.build("random_init_vit_t16", img_size=32, patch_size=8, depth=4, checkpoint=path)
    assert torch.equal(a.vit.blocks[3].mlp.fc1.weight, b.vit.blocks[3].mlp.fc1.weight)
    assert b.load_report.missing == [] and b.load_report.unexpected == []
    assert backbones.file_hash(path) == backbones.file_hash(path) != backbones.file_hash(None)

    with pytest.raises(CheckpointError, match="shape mismatch"):
        backbones.build("random_init_vit_s16", img_size=32, patch_size=8, checkpoint=path)
    with pytest.raises(CheckpointError, match="does not fit"):  # no ms embedding in the file
        backbones.build(
            "random_init_vit_t16", ("rgb", "dsm", "ms"), img_size=32, patch_size=8, depth=4, checkpoint=path
        )
    with pytest.raises(CheckpointError, match="missing 96 keys"):  # a 12-block model from a 4-block file
        backbones.build("random_init_vit_t16", img_size=32, patch_size=8, checkpoint=path)
    with pytest.raises(CheckpointError, match="does not exist"):
        backbones.build("random_init_vit_t16", checkpoint=tmp_path / "nope.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be read"):
        backbones.build("random_init_vit_t16", checkpoint=tmp_path / "bad.pth")


def test_plugin_module_registers_a_backbone(tmp_path, monkeypatch):
    (tmp_path / "my_plugin.py").write_text(
        "from backbones import register_backbone\n"
        "from backbones.vit import MultiModalViT\n"
        "@register_backbone('toy_vit', method='toy', arch='vit_t16')\n"
        "def toy_vit(modalities=('rgb',), **kw):\n"
        "    '''A toy.'''\n"
        "    return MultiModalViT('vit_tiny_patch16_224', modalities=modalities, depth=4, **kw)\n"
    )
    isolate_registry(monkeypatch, BACKBONES)  # the plugin's entry vanishes after
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("RSBENCH_PLUGINS", "my_plugin")
    assert "toy_vit" in backbones.list_backbones()
    model = backbones.build("toy_vit", modalities=("rgb",), img_size=32, patch_size=8)
    assert len(model.vit.blocks) == 4
    assert backbones.get_entry("toy_vit").method == "toy"  # the registration's metadata is in the mmengine Registry


@pytest.mark.parametrize("name, kw", [("mae_vit_t16", dict(img_size=32, patch_size=8, depth=1)),
                                      ("random_init_resnet50", {})])  # fmt: skip
def test_an_rgb_dsm_encoder_loads_into_an_rgb_only_run(tmp_path, name, kw):
    """RGB-only tasks (change detection, depth) reuse an RGB+DSM encoder: the DSM input layer is set aside."""
    torch.manual_seed(0)
    both = backbones.build(name, ("rgb", "dsm"), **kw)
    path = backbones.save_encoder_checkpoint(both, tmp_path / "enc.pth", img_size=32)
    rgb = backbones.build(name, ("rgb",), checkpoint=path, **kw)
    assert rgb.load_report.unused_modalities == ["dsm"] and not rgb.load_report.unexpected
    ours, theirs = rgb.state_dict(), both.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in ours.items() if not k.startswith("pyramid."))
    state = torch.load(path, weights_only=True)
    state["state_dict"]["blocks_extra.weight"] = torch.zeros(1)  # anything else is still refused
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="unexpected 1"):
        backbones.build(name, ("rgb",), checkpoint=path, **kw)
