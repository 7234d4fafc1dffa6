"""The supervised control's recipe: RGB-only samples and the height head (backbones/supervised)."""

from __future__ import annotations

import pytest
import torch

from backbones.supervised.model import SupervisedPretrain
from rsdatasets.pretrain_pool import LabelledPool


def _model(**kwargs) -> SupervisedPretrain:
    torch.manual_seed(0)
    return SupervisedPretrain(arch="vit_t16", img_size=32, patch_size=8, encoder_kwargs=dict(depth=1), **kwargs)


def _batch(b: int = 4) -> tuple[dict, dict]:
    inputs = {"rgb": torch.rand(b, 3, 32, 32), "dsm": torch.rand(b, 1, 32, 32) * 20,
              "dsm_valid": torch.ones(b, 1, 32, 32, dtype=torch.bool)}  # fmt: skip
    targets = {"label": torch.randint(0, 6, (b,)), "mask": torch.randint(0, 6, (b, 32, 32)),
               "ndsm": torch.rand(b, 1, 32, 32) * 10}  # fmt: skip
    return inputs, targets


def test_rgb_only_samples_see_rgb_alone_in_training_and_never_at_inference():
    from backbones.normalize import normalize_modalities

    model = _model(rgb_only_prob=1.0)
    x = normalize_modalities(_batch()[0])
    rgb_alone = model.student.patch_embeds["rgb"](x["rgb"])
    model.train()
    torch.testing.assert_close(model._embed(x), rgb_alone)
    model.eval()  # the exported encoder's own fusion: the mean over the modalities it is given
    torch.testing.assert_close(model._embed(x), model.student.embed(x))
    assert not torch.allclose(model.student.embed(x), rgb_alone)
    half = _model(rgb_only_prob=0.5).train()
    torch.manual_seed(3)
    mixed = half._embed({k: v.repeat(8, 1, 1, 1) for k, v in x.items()})  # 32 samples: both kinds occur
    alone = half.student.patch_embeds["rgb"](x["rgb"].repeat(8, 1, 1, 1))
    same = torch.isclose(mixed, alone).flatten(1).all(1)
    assert 0 < int(same.sum()) < len(same)
    with pytest.raises(ValueError, match="rgb_only_prob"):
        _model(rgb_only_prob=1.5)


def test_height_head_learns_from_ndsm_and_its_gradient_reaches_the_encoder():
    model = _model(height_weight=1.0).train()
    inputs, targets = _batch()
    losses = model.loss(inputs, targets)
    assert set(losses) == {"loss_scene", "loss_seg", "loss_height", "acc_scene"}
    assert torch.isfinite(losses["loss_height"]) and losses["loss_height"] > 0
    losses["loss_height"].backward()
    assert model.student.patch_embeds["rgb"].proj.weight.grad.abs().sum() > 0
    inputs["dsm_valid"][:] = False  # no measured height anywhere: only valid pixels count
    inputs["dsm_valid"][:, :, :4, :4] = True
    targets["ndsm"][:, :, 4:, :] = float("nan")
    assert torch.isfinite(model.loss(inputs, targets)["loss_height"])
    inputs["dsm_valid"][:] = False  # an all-nodata batch: zero, not NaN
    assert model.loss(inputs, targets)["loss_height"].item() == 0.0
    assert "loss_height" not in _model().loss(*_batch())  # off by default


def test_labelled_pool_yields_the_targets_asked_for_and_names_missing_ones(synth_root):
    pool = LabelledPool(split="pool", root=str(synth_root), size=32, n=8, targets=("label", "mask", "ndsm"))
    sample = pool[0]
    assert set(sample["data_samples"]) == {"label", "mask", "ndsm"}
    assert sample["data_samples"]["ndsm"].shape[-2:] == sample["inputs"]["rgb"].shape[-2:]
    with pytest.raises(KeyError, match="no keys"):
        LabelledPool(split="pool", root=str(synth_root), size=32, n=8, targets=("label", "heights"))
