"""Corruptions of test samples: deterministic for a seed, never touching the clean split, increasing with severity."""

import pickle

import numpy as np
import pytest
import torch

from rsdatasets.corruptions import (
    DETERMINISTIC,
    RGB_ABSENT,
    SEVERITIES,
    CorruptedDataset,
    applicable,
    corrupt,
    severity_value,
)

ALL = [(name, s) for name, levels in SEVERITIES.items() for s in range(1, len(levels) + 1)]
CHANGED_KEY = {"gaussian_noise": "rgb", "gaussian_blur": "rgb", "haze": "rgb", "jpeg": "rgb", "dsm_holes": "dsm_valid",
               "misregistration": "rgb_t2", "missing_dsm": "dsm", "missing_rgb": "rgb"}  # fmt: skip


@pytest.fixture(scope="module")
def dataset(synth_root):
    from rsdatasets.synthetic import SyntheticBenchmark

    return SyntheticBenchmark(synth_root, "test", seed=0, size=32, n=4)


@pytest.fixture(scope="module")
def sample(dataset):
    return dataset[1]


def _copy(sample):
    return {k: v.clone() if torch.is_tensor(v) else v for k, v in sample.items()}


def _same(a, b) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


@pytest.mark.parametrize("name,severity", ALL)
def test_a_corruption_is_deterministic_keeps_types_and_leaves_the_clean_sample_untouched(sample, name, severity):
    before = _copy(sample)
    first = corrupt(sample, name, severity, seed=0, index=3)
    second = corrupt(sample, name, severity, seed=0, index=3)
    assert _same(sample, before), "the clean sample was modified"
    assert _same(first, second), "same (corruption, severity, index, seed), different output"
    for key, value in sample.items():
        if torch.is_tensor(value):
            assert first[key].dtype == value.dtype and first[key].shape == value.shape, key
    for key in ("rgb", "rgb_t2"):
        assert 0 <= float(first[key].min()) and float(first[key].max()) <= 1, key
    assert first["dsm_valid"].dtype == torch.bool
    assert not torch.equal(first[CHANGED_KEY[name]], sample[CHANGED_KEY[name]]) or name.startswith("missing_")
    # Heights stay 0 wherever the DSM is nodata (the data convention the DSM normalisation relies on too).
    assert float(first["dsm"][~first["dsm_valid"] & sample["dsm_valid"]].abs().sum()) == 0


@pytest.mark.parametrize("name", [n for n in SEVERITIES if n not in DETERMINISTIC and not n.startswith("missing_")])
def test_another_seed_gives_another_corruption(sample, name):
    a = corrupt(sample, name, 2, seed=0, index=3)
    b = corrupt(sample, name, 2, seed=1, index=3)
    c = corrupt(sample, name, 2, seed=0, index=2)  # and another tile index
    key = CHANGED_KEY[name]
    if name == "misregistration":  # only a few shift directions exist: one of several seeds must differ
        others = [corrupt(sample, name, 4, seed=s, index=3)[key] for s in range(1, 6)]
        assert any(not torch.equal(corrupt(sample, name, 4, seed=0, index=3)[key], o) for o in others)
        return
    assert not torch.equal(a[key], b[key]) and not torch.equal(a[key], c[key])


@pytest.mark.parametrize("name", ["gaussian_blur", "jpeg"])
def test_deterministic_corruptions_do_not_depend_on_the_seed(sample, name):
    assert _same(corrupt(sample, name, 2, seed=0, index=3), corrupt(sample, name, 2, seed=5, index=1))


@pytest.mark.parametrize("name", ["gaussian_noise", "gaussian_blur", "haze", "jpeg"])
def test_severity_increases_the_change_of_the_image(sample, name):
    # Blur is measured on high frequencies (what it removes); the others by the mean absolute change.
    def change(out):
        if name == "gaussian_blur":
            lap = lambda x: (x[..., 1:-1, 2:] + x[..., 1:-1, :-2] + x[..., 2:, 1:-1] + x[..., :-2, 1:-1]  # noqa: E731
                             - 4 * x[..., 1:-1, 1:-1]).abs().mean()  # fmt: skip
            return float(lap(sample["rgb"]) - lap(out["rgb"]))
        return float((out["rgb"] - sample["rgb"]).abs().mean())

    changes = [change(corrupt(sample, name, s, seed=0, index=3)) for s in range(1, 6)]
    assert changes[0] > 0 and all(np.diff(changes) > 0), changes


def test_dsm_holes_grow_with_severity_and_come_as_blobs(sample):
    valid = sample["dsm_valid"]
    shares = []
    for s in range(1, 6):
        out = corrupt(sample, "dsm_holes", s, seed=0, index=3)
        holes = valid & ~out["dsm_valid"]
        assert not (out["dsm_valid"] & ~valid).any(), "a hole never makes nodata valid"
        shares.append(float(holes.float().mean()))
    assert all(np.diff(shares) > 0), shares
    assert abs(shares[2] - severity_value("dsm_holes", 3) * float(valid.float().mean())) < 0.1
    # Blobs: most hole pixels have a hole neighbour (salt-and-pepper at 20 % would have ~20 %).
    holes = (valid & ~corrupt(sample, "dsm_holes", 3, seed=0, index=3)["dsm_valid"])[0]
    neighbour = holes[1:-1, 1:-1] & (holes[2:, 1:-1] | holes[:-2, 1:-1] | holes[1:-1, 2:] | holes[1:-1, :-2])
    assert float(neighbour.sum()) > 0.8 * float(holes[1:-1, 1:-1].sum())


def _shift(x, dx, dy):
    """x shifted by (dx, dy) pixels, edges replicated (written here as the check's independent reference)."""
    h, w = x.shape[-2:]
    ys = np.clip(np.arange(h) - dy, 0, h - 1)
    xs = np.clip(np.arange(w) - dx, 0, w - 1)
    return x[:, ys][:, :, xs]


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_misregistration_shifts_the_second_date_by_the_severity_s_distance(sample, severity):
    out = corrupt(sample, "misregistration", severity, seed=0, index=3)
    d = int(severity_value("misregistration", severity))
    found = [(dx, dy) for dx in range(-d, d + 1) for dy in range(-d, d + 1)
             if torch.equal(out["rgb_t2"], _shift(sample["rgb_t2"], dx, dy))]  # fmt: skip
    assert found, "not a whole-pixel shift of the second date"
    dx, dy = found[0]
    assert abs(np.hypot(dx, dy) - d) <= 0.75
    for key in ("rgb", "change", "mask"):  # the first date and the labels stay registered
        assert torch.equal(out[key], sample[key])


@pytest.mark.parametrize("name,key", [("missing_dsm", "dsm"), ("missing_rgb", "rgb")])
def test_missing_modality_shares_are_nested_over_severities_and_differ_by_seed(sample, name, key):
    def missing(severity, seed):
        return {i for i in range(60) if not torch.equal(corrupt(sample, name, severity, seed, i)[key], sample[key])}

    one, two, three = (missing(s, 0) for s in (1, 2, 3))
    assert one <= two <= three and len(three) == 60
    assert 5 <= len(one) <= 25 and 20 <= len(two) <= 40, (len(one), len(two))
    assert missing(1, 1) != one


def test_an_absent_modality_is_what_the_normalisation_maps_to_zero_and_an_encoder_accepts_it(sample):
    from backbones import build
    from backbones.normalize import IMAGENET_MEAN, normalize_modalities
    from tasks import get_task

    assert RGB_ABSENT == IMAGENET_MEAN
    for name, key in (("missing_dsm", "dsm"), ("missing_rgb", "rgb")):
        out = corrupt(sample, name, 3, seed=0, index=0)
        assert not out[f"{key}_valid"].any()
        batch = get_task("segmentation").collate([out, out], ("rgb", "dsm"))
        inputs = normalize_modalities(batch["inputs"])
        assert float(inputs[key].abs().max()) == 0.0
        assert float(inputs["dsm" if key == "rgb" else "rgb"].abs().max()) > 0  # the other stream is intact
        model = build("random_init_vit_t16", ("rgb", "dsm"), img_size=32, patch_size=8, depth=1).eval()
        with torch.no_grad():
            maps = model(inputs)
        assert len(maps) == 4 and all(torch.isfinite(m).all() for m in maps)


def test_applicable_keeps_targets_clean_and_a_modality_to_fall_back_on():
    segmentation, depth, change = ("rgb", "dsm"), ("rgb",), ("rgb", "rgb_t2")
    assert applicable("missing_dsm", segmentation) and applicable("missing_rgb", segmentation)
    assert applicable("dsm_holes", segmentation) and not applicable("misregistration", segmentation)
    # Depth reads RGB only; its dsm_valid is part of the target and must never be corrupted.
    assert not any(applicable(n, depth) for n in ("missing_dsm", "missing_rgb", "dsm_holes", "misregistration"))
    assert applicable("gaussian_noise", depth) and applicable("jpeg", depth)
    # Change detection: RGB at both dates; without RGB there is nothing left to compare.
    assert applicable("misregistration", change) and not applicable("missing_rgb", change)
    assert not applicable("missing_dsm", ("dsm",))
    with pytest.raises(KeyError, match="unknown corruption"):
        applicable("snow", segmentation)


def test_unknown_corruptions_and_severities_are_refused(sample):
    with pytest.raises(KeyError, match="known:"):
        corrupt(sample, "snow", 1, 0, 0)
    with pytest.raises(ValueError, match="severities 1..3"):
        corrupt(sample, "missing_dsm", 4, 0, 0)
    without = {k: v for k, v in sample.items() if k != "rgb_t2"}
    with pytest.raises(KeyError, match="rgb_t2"):
        corrupt(without, "misregistration", 1, 0, 0)


def test_corrupted_dataset_wraps_a_split_without_touching_it(dataset):
    wrapped = CorruptedDataset(dataset, "gaussian_noise", 2, seed=7, inputs=("rgb", "dsm"))
    assert len(wrapped) == len(dataset) and wrapped.metainfo == dataset.metainfo
    assert _same(wrapped[2], corrupt(dataset[2], "gaussian_noise", 2, 7, 2))
    assert _same(wrapped[-1], wrapped[len(dataset) - 1])
    assert _same(dataset[2], dataset[2]) and not torch.equal(wrapped[2]["rgb"], dataset[2]["rgb"])
    clone = pickle.loads(pickle.dumps(wrapped))  # DataLoader workers receive a pickled copy
    assert _same(clone[1], wrapped[1])
    with pytest.raises(ValueError, match="does not apply"):
        CorruptedDataset(dataset, "dsm_holes", 1, inputs=("rgb",))
    with pytest.raises(IndexError):
        wrapped[len(dataset)]
