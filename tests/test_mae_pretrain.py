import pytest
import torch
from conftest import write_tiny_pretrain_config
from mmengine.config import ConfigDict

import backbones
from backbones.mae.model import random_masking
from benchmark.cli import main
from rsbench.registry import MODELS

TINY = dict(arch="vit_t16", img_size=32, patch_size=8, encoder_kwargs=dict(depth=2), decoder_dim=32, decoder_depth=1,
            decoder_heads=2)  # fmt: skip


def _batch(b):
    g = torch.Generator().manual_seed(0)
    return {"rgb": torch.rand(b, 3, 32, 32, generator=g), "dsm": torch.rand(b, 1, 32, 32, generator=g) * 10}


def test_random_masking_hides_exactly_75_percent_and_restores_order():
    ids_keep, mask, ids_restore = random_masking(4, 400, 0.75, "cpu")
    assert ids_keep.shape == (4, 100) and (mask.sum(1) == 300).all()
    for i in range(4):  # kept ids are exactly the unmasked positions
        assert set(ids_keep[i].tolist()) == set(torch.nonzero(mask[i] == 0).flatten().tolist())
    assert (ids_restore.sort(1).values == torch.arange(400)).all()


@pytest.mark.parametrize("modalities, batch", [(("rgb", "dsm"), 1), (("rgb",), 3)])
def test_loss_is_finite_and_trains_the_encoder(modalities, batch):
    model = MODELS.build(ConfigDict(type="MAE", _scope_="rsbench", modalities=modalities, **TINY))
    losses = model.loss({k: v for k, v in _batch(batch).items() if k in modalities})
    assert set(losses) == {"loss_rec"} and torch.isfinite(losses["loss_rec"])
    losses["loss_rec"].backward()
    assert model.student.vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_pretrain_and_load_the_exported_encoder(tmp_path):
    cfg = write_tiny_pretrain_config(tmp_path, "mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", TINY)
    work = tmp_path / "work"
    assert main(["pretrain", str(cfg), "--work-dir", str(work)]) == 0
    assert backbones.checkpoint.read_meta(work / "encoder.pth")["method"] == "mae"
    encoder = backbones.build("mae_vit_t16", ("rgb", "dsm"), checkpoint=work / "encoder.pth")
    feats = encoder({"rgb": torch.rand(1, 3, 32, 32), "dsm": torch.rand(1, 1, 32, 32)})
    assert [f.shape[-1] for f in feats] == [8, 4, 2, 1]


@pytest.mark.slow  # over 10 s on 2 cores; `make test` runs it
def test_pretraining_resumes_from_its_last_epoch(tmp_path):
    cfg = write_tiny_pretrain_config(tmp_path, "mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", TINY)
    work = tmp_path / "work"
    assert main(["pretrain", str(cfg), "--work-dir", str(work)]) == 0
    first = torch.load(work / "epoch_1.pth", map_location="cpu", weights_only=False)["state_dict"]
    argv = ["pretrain", str(cfg), "--work-dir", str(work), "--resume", "--cfg-options", "train_cfg.max_epochs=2"]
    assert main(argv) == 0
    meta = backbones.checkpoint.read_meta(work / "encoder.pth")
    assert meta["epochs"] == 2 and meta["iters"] == 4  # 2 iterations per epoch: epoch 1 was not redone
    assert [p["epoch"] for p in meta["probe_knn"]] == [0, 1, 2]  # the kNN history survived the resume
    resumed = backbones.build("mae_vit_t16", ("rgb", "dsm"), checkpoint=work / "encoder.pth")
    key = "vit.blocks.0.attn.qkv.weight"
    assert not torch.equal(resumed.state_dict()[key], first[f"student.{key}"])  # it trained on from epoch 1
