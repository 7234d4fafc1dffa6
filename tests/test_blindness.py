"""The instrument must see: a backbone with a real head start beats random init by more than the CI, and
the same backbone under other training seeds (instrument noise alone) is not declared different."""

import pytest
import torch
from mmengine.config import ConfigDict
from torch.utils.data import Subset

import backbones
from benchmark.analysis.intervals import paired_difference
from rsbench.registry import MODELS
from rsdatasets.synthetic import SyntheticBenchmark
from tasks import FinetunePlan, TrainBudget, finetune, get_task
from tasks.features import FeatureCache

pytestmark = pytest.mark.usefixtures("one_thread")
GEOMETRY = dict(img_size=32, patch_size=8, depth=2)
BUDGET = TrainBudget(epochs=None, max_iters=60, batch_size=8, lr=2e-3, warmup_iters=5, val_checks=0)


@pytest.fixture(scope="module")
def splits(synth_root):
    pool = SyntheticBenchmark(synth_root, "pool", seed=0, size=32, n=128)
    train = SyntheticBenchmark(synth_root, "train", seed=0, size=32, n=64)
    test = SyntheticBenchmark(synth_root, "test", seed=0, size=32, n=48)
    return pool, train, test


@pytest.fixture(scope="module")
def supervised_state(splits):
    """An encoder trained for this test on the pool's labels (the supervised control, in miniature)."""
    pool, _, _ = splits
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(type="SupervisedPretrain", _scope_="rsbench", arch="vit_t16", img_size=32,
                                    patch_size=8, encoder_kwargs=dict(depth=2)))  # fmt: skip
    optim = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(150):
        idx = torch.randint(0, len(pool), (16,)).tolist()
        samples = [pool[i] for i in idx]
        inputs = {k: torch.stack([s[k] for s in samples]) for k in ("rgb", "dsm", "dsm_valid")}
        targets = {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in ("label", "mask")}
        losses = model.loss(inputs, targets)
        optim.zero_grad()
        (losses["loss_scene"] + losses["loss_seg"]).backward()
        optim.step()
    return {k: v.clone() for k, v in model.export_encoder().state_dict().items()}


def _factory(state=None, init_seed=123):
    """Build the encoder with its own fixed init (the training seed must not change a fixed backbone), and
    leave the global generator where it was, so the head init and batch order follow the training seed."""

    def build():
        saved = torch.get_rng_state()
        torch.manual_seed(init_seed)
        encoder = backbones.build("random_init_vit_t16", ("rgb", "dsm"), **GEOMETRY)
        torch.set_rng_state(saved)
        if state is not None:
            missing, unexpected = encoder.load_state_dict(state, strict=False)
            assert not unexpected and all(k.startswith("pyramid.") for k in missing)
        return encoder

    return build


def _cells(factory, train, test, seeds, tmp_path, key):
    task = get_task("segmentation", head_channels=16)
    cache = FeatureCache()
    stats = []
    for seed in seeds:
        result = finetune(FinetunePlan(
            task, factory, train, test, ("rgb", "dsm"), BUDGET, seed, tmp_path / f"{key}{seed}", protocol="frozen",
            feature_cache=cache, feature_key=key
        ))  # fmt: skip
        stats.append(result.tile_stats)
    return task, stats


@pytest.mark.slow
def test_a_backbone_with_a_head_start_beats_random_init_beyond_the_ci(splits, supervised_state, tmp_path):
    _, train, test = splits
    few = Subset(train, range(8))  # a small label fraction: 8 of 64 tiles
    task, control = _cells(_factory(supervised_state), few, test, (0, 1, 2), tmp_path, "control")
    _, random = _cells(_factory(), few, test, (0, 1, 2), tmp_path, "random")
    diff = paired_difference(task.resample_primary, control, random)
    assert diff.resolved and diff.low > 0, diff


@pytest.mark.slow
def test_instrument_noise_alone_is_not_declared_a_difference(splits, tmp_path):
    _, train, test = splits
    few = Subset(train, range(8))
    # The same fixed encoder; the two arms differ only in the training seeds of their heads and batches.
    task, arm_a = _cells(_factory(), few, test, (0, 1, 2), tmp_path, "a")
    _, arm_b = _cells(_factory(), few, test, (3, 4, 5), tmp_path, "b")
    assert any(a["intersect"].sum() != b["intersect"].sum() for a, b in zip(arm_a, arm_b))  # the arms do differ
    diff = paired_difference(task.resample_primary, arm_a, arm_b)
    assert not diff.resolved and diff.low < 0 < diff.high, diff
