"""The measurement protocol: budgets by epochs, validation carved from the labelled subset, the test split read
once at the end, the frozen protocol's feature cache (bit for bit), co-registered augmentation."""

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, Subset

import backbones
from benchmark.running.splits import carve_validation, nested_label_subsets
from rsdatasets.transforms import CoRegisteredAugment
from tasks import FinetunePlan, TrainBudget, finetune, get_task
from tasks.features import FeatureCache, FrozenBackbone, WithFeatures, compute_split_features

pytestmark = pytest.mark.usefixtures("one_thread")


def _backbone(modalities=("rgb",)):
    return lambda: backbones.build("random_init_vit_t16", modalities, img_size=32, patch_size=8, depth=2)


class Recorder(Dataset):
    """A dataset that logs every read with the training iteration it happened at."""

    def __init__(self, base, clock: dict, log: list) -> None:
        self.base, self.clock, self.log = base, clock, log

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.log.append(self.clock["iter"])
        return self.base[i]


# ---- budgets and validation ----


def test_epochs_budget_with_a_floor_and_a_cap():
    b = TrainBudget(epochs=10, min_iters=50, max_iters=400, batch_size=8)
    assert b.iterations(4) == 50  # 10 epochs of 4 samples = 5 steps: the floor
    assert b.iterations(80) == 100
    assert b.iterations(1000) == 400  # the cap
    assert TrainBudget(max_iters=123).iterations(7) == 123  # epochs=None: a fixed budget
    assert TrainBudget().validation_size(4) == 0  # too small to spare a sample: last iterate
    assert TrainBudget().validation_size(20) == 4 and TrainBudget().validation_size(400) == 80
    assert TrainBudget(val_checks=0).validation_size(400) == 0


def test_validation_is_carved_from_the_labelled_subset_stratified_and_seeded():
    strata = np.repeat(np.arange(4), 25)
    subset = nested_label_subsets(strata, [0.4], split_seed=3)[0.4]
    fit, val = carve_validation(strata[subset], 8, split_seed=3)
    assert len(val) == 8 and len(fit) == len(subset) - 8 and not set(fit) & set(val)
    assert sorted(np.bincount(strata[subset][val]).tolist()) == [2, 2, 2, 2]  # every stratum in proportion
    again = carve_validation(strata[subset], 8, split_seed=3)
    assert (again[0] == fit).all() and (again[1] == val).all()
    assert not (carve_validation(strata[subset], 8, split_seed=4)[1] == val).all()


def test_selection_reads_validation_during_training_and_test_only_at_the_end(data, tmp_path):
    train, test = data
    clock, val_log, test_log = {"iter": 0}, [], []
    budget = TrainBudget(max_iters=12, batch_size=4, warmup_iters=0, val_checks=3)

    def progress(i, total):
        clock["iter"] = i

    result = finetune(FinetunePlan(
        get_task("segmentation", head_channels=16), _backbone(), Subset(train, range(16)),
        Recorder(test, clock, test_log), ("rgb",), budget, 0, tmp_path,
        val_set=Recorder(Subset(train, range(16, 20)), clock, val_log)
    ), progress=progress)  # fmt: skip
    assert sorted(set(val_log)) == [4, 8, 12]  # checked three times while training
    assert set(test_log) == {12} and len(test_log) == len(test)  # read once, after the last iteration
    assert result.iterations == 12 and result.n_val == 4
    assert result.selected_iter in (4, 8, 12) and result.selection.startswith("best val mIoU of 3 checks")
    assert [i for i, _ in result.val_history] == [4, 8, 12]
    best = max(v for _, v in result.val_history)
    assert dict(result.val_history)[result.selected_iter] == best


def test_without_a_validation_split_the_last_iterate_is_tested(data, tmp_path):
    train, test = data
    budget = TrainBudget(max_iters=3, batch_size=4, warmup_iters=0)
    result = finetune(FinetunePlan(
        get_task("classification"), _backbone(), Subset(train, range(4)), Subset(test, range(4)), ("rgb",), budget,
        0, tmp_path
    ))  # fmt: skip
    assert result.selected_iter == 3 and result.selection.startswith("last iterate")


def test_a_diverging_cell_stops_at_the_first_non_finite_loss(data, tmp_path):
    from tasks.engine import NonFiniteLossError

    train, test = data
    budget = TrainBudget(max_iters=20, batch_size=4, warmup_iters=0, lr=1e12)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at iter \d+"):
        finetune(FinetunePlan(
            get_task("segmentation", head_channels=16), _backbone(), Subset(train, range(8)), Subset(test, range(4)),
            ("rgb",), budget, 0, tmp_path
        ))  # fmt: skip


# ---- the frozen protocol and its feature cache ----


def test_cached_features_are_the_uncached_ones_bit_for_bit(data):
    train, _ = data
    torch.manual_seed(0)
    frozen = FrozenBackbone(_backbone(("rgb", "dsm"))())
    cache = FeatureCache()
    view = {"rgb": "rgb", "dsm": "dsm"}
    levels = cache.get("k", lambda: compute_split_features(frozen, train, view))
    assert cache.get("k", lambda: pytest.fail("recomputed")) is levels and cache.hits == 1
    task = get_task("segmentation")
    # what the uncached path computes inside a training batch of 8 samples, in another order
    order = [5, 0, 31, 7, 2, 19, 11, 3]
    batch = task.collate([train[i] for i in order], ("rgb", "dsm"))["inputs"]
    from backbones.normalize import normalize_modalities

    live = frozen.encode(normalize_modalities(batch))
    cached = task.collate([WithFeatures(train, {"features": (view, levels)})[i] for i in order], ("rgb", "dsm"))
    for a, b in zip(live, cached["inputs"]["features"]):
        assert torch.equal(a, b)
    assert cached["inputs"]["image_hw"].tolist() == [[32, 32]] * 8
    assert "rgb" not in cached["inputs"] and "mask" in cached["data_samples"]


def test_frozen_cells_give_the_same_numbers_with_and_without_the_cache(data, tmp_path):
    train, test = data
    budget = TrainBudget(max_iters=6, batch_size=4, warmup_iters=0, val_checks=2)
    task = get_task("segmentation", head_channels=16)
    fit, val, held = Subset(train, range(12)), Subset(train, range(12, 16)), Subset(test, range(8))
    runs = [finetune(FinetunePlan(
        task, _backbone(), fit, held, ("rgb",), budget, 0, tmp_path / str(i), val_set=val, protocol="frozen",
        feature_cache=cache, feature_key="k"
    ))  # fmt: skip
            for i, cache in enumerate((None, FeatureCache()))]
    assert runs[0].loss_history == runs[1].loss_history
    assert runs[0].metrics == runs[1].metrics


def test_the_frozen_encoder_never_changes_but_the_probe_trains(data, tmp_path):
    train, test = data
    built = {}
    task = get_task("segmentation", head_channels=16)
    original = task.build_model

    def build_model(backbone, modalities):
        built["model"] = original(backbone, modalities)
        built["before"] = {k: v.clone() for k, v in built["model"].state_dict().items()}
        return built["model"]

    task.build_model = build_model
    budget = TrainBudget(max_iters=4, batch_size=4, warmup_iters=0, lr=1e-2)
    finetune(FinetunePlan(
        task, _backbone(), Subset(train, range(8)), Subset(test, range(4)), ("rgb",), budget, 0, tmp_path,
        protocol="frozen", feature_cache=FeatureCache(), feature_key="k"
    ))  # fmt: skip
    after = built["model"].state_dict()
    encoder = [k for k in after if k.startswith("backbone.backbone.")]
    assert any(".vit.blocks." in k for k in encoder) and any(".patch_embeds." in k for k in encoder)
    assert all(torch.equal(after[k], built["before"][k]) for k in encoder)  # the pyramid is not used either
    assert not torch.equal(after["head.weight"], built["before"]["head.weight"])  # the linear probe learns
    assert type(built["model"]).__name__ == "SegmentationProbe"


def test_change_detection_caches_both_dates(data, tmp_path):
    train, test = data
    task = get_task("change_detection", head_channels=16)
    assert set(task.feature_views(("rgb", "dsm"))) == {"features", "features_t2"}
    budget = TrainBudget(max_iters=2, batch_size=4, warmup_iters=0)
    cache = FeatureCache()
    result = finetune(FinetunePlan(
        task, _backbone(), Subset(train, range(8)), Subset(test, range(4)), ("rgb",), budget, 0, tmp_path,
        protocol="frozen", feature_cache=cache, feature_key="k"
    ))  # fmt: skip
    assert cache.misses == 4 and "F1_change" in result.metrics  # (train, test) x (date 1, date 2)


# ---- augmentation of the pretraining pool ----


def test_augmentation_is_co_registered_and_colours_only_rgb():
    torch.manual_seed(0)
    rgb = torch.zeros(3, 32, 32)
    rgb[:, :, 20:] = 1.0  # a vertical edge in RGB ...
    dsm = torch.zeros(1, 32, 32)
    dsm[:, :, 20:] = 10.0  # ... and the same edge in height
    valid = torch.ones(1, 32, 32, dtype=torch.bool)
    valid[:, :4, :4] = False
    mask = (dsm[0] > 5).long()
    aug = CoRegisteredAugment(flip_p=1.0, jitter_p=1.0, crop_p=1.0)
    seen_flip = False
    for _ in range(20):
        out = aug({"rgb": rgb, "dsm": dsm, "dsm_valid": valid, "mask": mask})
        assert out["rgb"].shape == rgb.shape and out["dsm"].shape == dsm.shape and out["mask"].dtype == torch.int64
        edge_rgb = (out["rgb"].mean(0) > 0.5 * out["rgb"].mean(0).max())
        edge_dsm = out["dsm"][0] > 5
        assert (edge_rgb == edge_dsm).float().mean() > 0.95  # the same geometry for both modalities
        assert (out["mask"] == (out["dsm"][0] > 5).long()).float().mean() > 0.95
        seen_flip |= bool(edge_dsm[:, :10].any())  # the edge moved to the left: a horizontal flip happened
    assert seen_flip
    # a 4 x 4 nodata corner zoomed 2x: an 8 x 8 hole, and pixels interpolated from it are not valid either
    zoomed = CoRegisteredAugment._resized_crop("dsm_valid", valid, 0, 0, 16, 16, (32, 32))
    assert not zoomed[:, :8, :8].any() and zoomed[:, 10:, 10:].all() and zoomed.dtype == torch.bool
    heights = aug({"dsm": dsm, "dsm_valid": valid})
    assert heights["dsm"].max() <= 10.0 + 1e-5  # colour jitter never touches heights
