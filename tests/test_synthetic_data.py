"""Tests of the embedded synthetic benchmark: scene model coupling, labels, cache and dataset."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from rsdatasets import scene_model as sm
from rsdatasets.synthetic import SPLITS, SyntheticBenchmark, split_dir, synthesize

B, IMP, LOW, TREE, CAR, CLUT = sm.BUILDING, sm.IMPERVIOUS, sm.LOW_VEGETATION, sm.TREE, sm.CAR, sm.CLUTTER


@pytest.fixture(scope="module")
def scenes() -> list[dict[str, np.ndarray]]:
    """A fixed mixed bag of scenes, every layout type represented."""
    return [sm.generate_scene(np.random.default_rng([7, i]), layout=i % 6) for i in range(96)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> SyntheticBenchmark:
    return SyntheticBenchmark(tmp_path_factory.mktemp("synth"), split="train", n=24)


def _arrays(folder) -> dict[str, np.ndarray]:
    return {f.stem: np.load(f) for f in sorted(folder.glob("*.npy"))}


def test_scene_shapes_dtypes_and_ranges():
    for size, gsd in ((64, 1.0), (40, 0.5)):
        s = sm.generate_scene(np.random.default_rng(0), size=size, gsd=gsd)
        shapes = {
            "rgb": (3, size, size),
            "ms": (4, size, size),
            "dsm": (1, size, size),
            "ndsm": (1, size, size),
            "dsm_valid": (1, size, size),
            "mask": (size, size),
            "rgb_t2": (3, size, size),
            "change": (size, size),
        }
        for key, shape in shapes.items():
            assert s[key].shape == shape, key
        for key in ("rgb", "ms", "rgb_t2", "dsm", "ndsm"):
            assert s[key].dtype == np.float32, key
        for key in ("rgb", "ms", "rgb_t2"):
            assert 0.0 <= s[key].min() and s[key].max() <= 1.0
        assert s["dsm_valid"].dtype == bool
        assert s["mask"].dtype == s["change"].dtype == s["box_labels"].dtype == np.int64
        assert s["boxes"].dtype == np.float32 and s["boxes"].shape == (len(s["box_labels"]), 4)
        assert s["label"].dtype == np.int64 and s["label"].shape == ()


def test_generator_is_deterministic():
    a, b = (sm.generate_scene(np.random.default_rng([3, 1])) for _ in range(2))
    c = sm.generate_scene(np.random.default_rng([3, 2]))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["rgb"], c["rgb"])


def test_cache_deterministic_across_roots_and_seeds(tmp_path):
    first = _arrays(synthesize(tmp_path / "a", "train", seed=1, n=8))
    second = _arrays(synthesize(tmp_path / "b", "train", seed=1, n=8))
    other = _arrays(synthesize(tmp_path / "a", "train", seed=2, n=8))
    assert first.keys() == second.keys() and "rgb" in first
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    assert not np.array_equal(first["rgb"], other["rgb"])
    assert not np.array_equal(first["rgb"], _arrays(synthesize(tmp_path / "a", "val", seed=1, n=8))["rgb"])


def test_sample_i_does_not_depend_on_n(tmp_path):
    small = SyntheticBenchmark(tmp_path, "train", n=8)
    large = SyntheticBenchmark(tmp_path, "train", n=16)
    assert len(small) == 8 and len(large) == 16
    for i in range(8):
        a, b = small[i], large[i]
        for key, value in a.items():
            if torch.is_tensor(value):
                assert torch.equal(value, b[key]), (i, key)
            else:
                assert value == b[key]


def _pooled(scenes, key, cls):
    """Values of ``key`` over all valid pixels of class ``cls`` in all scenes."""
    vals = [s[key][0][(s["mask"] == cls) & s["dsm_valid"][0]] for s in scenes]
    return np.concatenate(vals)


def test_heights_are_coupled_to_classes(scenes):
    building = _pooled(scenes, "ndsm", B).mean()
    ground = np.concatenate([_pooled(scenes, "ndsm", IMP), _pooled(scenes, "ndsm", LOW)]).mean()
    trees, low = _pooled(scenes, "ndsm", TREE).mean(), _pooled(scenes, "ndsm", LOW).mean()
    assert building > ground + 3.0
    assert trees > low + 3.0
    assert 0.0 <= low <= 0.5
    assert np.allclose(_pooled(scenes, "ndsm", CAR), sm.CAR_HEIGHT, atol=0.01)
    for s in scenes:  # dsm = terrain + ndsm on valid pixels
        v = s["dsm_valid"][0]
        np.testing.assert_allclose(s["dsm"][0][v], (s["terrain"] + s["ndsm"][0])[v], atol=1e-3)
        if s["layout"] == sm.WATER:  # water lies flat
            water_dsm = s["dsm"][0][(s["mask"] == CLUT) & v]
            assert np.ptp(water_dsm) < 1e-3


def test_nir_separates_vegetation_from_water_and_impervious(scenes):
    nir = {c: np.concatenate([s["ms"][3][s["mask"] == c] for s in scenes]).mean() for c in (LOW, TREE, IMP)}
    water = np.concatenate([s["ms"][3][s["mask"] == CLUT] for s in scenes if s["layout"] == sm.WATER])
    assert min(nir[LOW], nir[TREE]) > 0.35
    assert water.mean() < 0.08
    assert min(nir[LOW], nir[TREE]) > nir[IMP] + 0.1 > water.mean() + 0.1


def test_cast_shadows_darken_the_ground_behind_buildings(scenes):
    behind, before = [], []
    for s in scenes:
        lum, mask = s["rgb"].mean(0), s["mask"]
        ground = (mask == IMP) | (mask == LOW)
        for (x0, y0, x1, y1), lab in zip(s["boxes"].astype(int), s["box_labels"]):
            if lab != 0 or y0 < 1 or y1 >= mask.shape[0]:
                continue
            xs = np.arange(x0 + 1, x1)  # the sun ray (-1, -1) from these pixels hits the roof
            below, above = (y1, xs), (y0 - 1, xs)
            behind += list(lum[below][ground[below]])
            before += list(lum[above][ground[above]])
        # the diagnostic shadow map agrees: same class is darker in shadow
        for cls in (IMP, LOW):
            shaded, lit = (mask == cls) & s["shadow"], (mask == cls) & ~s["shadow"]
            if shaded.sum() > 20 and lit.sum() > 20:
                assert lum[shaded].mean() < 0.8 * lum[lit].mean()
    assert len(behind) > 50 and len(before) > 50
    assert np.mean(behind) < 0.75 * np.mean(before)


def test_masks_and_boxes_are_consistent(scenes):
    for s in scenes:
        mask, boxes, labels = s["mask"], s["boxes"], s["box_labels"]
        h, w = mask.shape
        assert mask.min() >= 0 and mask.max() < len(sm.SEG_CLASSES)
        assert set(np.unique(labels)) <= {0, 1}
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        for (x0, y0, x1, y1), lab in zip(boxes.astype(int), labels):
            assert (mask[y0:y1, x0:x1] == (B if lab == 0 else CAR)).all()
        assert (labels == 0).sum() == 0 or (mask == B).any()
        # every building pixel belongs to some box
        covered = np.zeros_like(mask, bool)
        for x0, y0, x1, y1 in boxes[labels == 0].astype(int):
            covered[y0:y1, x0:x1] = True
        assert (covered == (mask == B)).all()


@pytest.mark.slow  # over 2 s on 2 cores; `make test` runs it
def test_layouts_map_to_their_scene_class():
    hits = np.zeros(6)
    for layout in range(6):
        for i in range(20):
            s = sm.generate_scene(np.random.default_rng([11, layout, i]), layout=layout)
            hits[layout] += s["label"] == layout
            assert s["label"] == sm.scene_class_from_composition(s["mask"])
    assert (hits / 20 >= 0.8).all(), hits
    labels = [sm.generate_scene(np.random.default_rng([12, i]))["label"] for i in range(200)]
    assert set(labels) == set(range(len(sm.SCENE_CLASSES)))


def test_scene_class_rules_on_handmade_masks():
    m = np.full((10, 10), LOW)
    assert sm.scene_class_from_composition(m) == sm.FARMLAND
    m[:4] = CLUT
    assert sm.scene_class_from_composition(m) == sm.WATER
    m[:] = TREE
    assert sm.scene_class_from_composition(m) == sm.FOREST
    m[:] = IMP
    m[:, :1] = CAR
    assert sm.scene_class_from_composition(m) == sm.PARKING
    m[:] = IMP
    m[:3, :3] = B
    assert sm.scene_class_from_composition(m) == sm.INDUSTRIAL
    m[5:] = LOW
    assert sm.scene_class_from_composition(m) == sm.RESIDENTIAL


def test_change_is_the_building_footprint_xor(scenes):
    changed = 0
    for s in scenes:
        np.testing.assert_array_equal(s["change"], (s["mask"] == B) ^ (s["mask_t2"] == B))
        if not (s["mask_t2"] != s["mask"]).any():
            assert not s["change"].any()
        changed += bool(s["change"].any())
        assert not np.array_equal(s["rgb"], s["rgb_t2"])  # new light and noise even without change
    assert 0.25 * len(scenes) < changed < 0.75 * len(scenes)


def test_nodata_is_zero_and_occurs(scenes):
    holes = 0
    for s in scenes:
        invalid = ~s["dsm_valid"][0]
        assert (s["dsm"][0][invalid] == 0).all() and (s["ndsm"][0][invalid] == 0).all()
        assert invalid.mean() < 0.2  # a small blob, never the whole tile
        holes += bool(invalid.any())
    assert 0.1 * len(scenes) < holes < 0.45 * len(scenes)


def test_synthesize_reuses_the_cache(tmp_path):
    folder = synthesize(tmp_path, "val", n=4)
    assert folder == split_dir(tmp_path, "val", n=4) and folder.name == "val_n4"
    assert folder.parent.name.startswith("synthetic-v")
    manifest = folder / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    assert synthesize(tmp_path, "val", n=4) == folder
    assert manifest.stat().st_mtime_ns == stamp
    assert [p.name for p in folder.parent.iterdir()] == ["val_n4"]  # no temp folders left


def test_interrupted_synthesis_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "save", boom)
    with pytest.raises(RuntimeError):
        synthesize(tmp_path, "test", n=2)
    assert not split_dir(tmp_path, "test", n=2).exists()
    assert list(split_dir(tmp_path, "test", n=2).parent.iterdir()) == []


def test_unknown_split_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="'bogus'.*pool, train, val, test"):
        synthesize(tmp_path, "bogus")
    with pytest.raises(ValueError, match="bogus"):
        SyntheticBenchmark(tmp_path, split="bogus")
    assert set(SPLITS) == {"pool", "train", "val", "test"}


def test_dataset_samples(dataset):
    assert len(dataset) == 24
    s = dataset[5]
    assert s["index"] == 5
    assert s["rgb"].dtype == s["ms"].dtype == s["dsm"].dtype == s["rgb_t2"].dtype == torch.float32
    assert s["rgb"].shape == (3, 64, 64) and s["ms"].shape == (4, 64, 64) and s["dsm"].shape == (1, 64, 64)
    assert s["dsm_valid"].dtype == torch.bool and s["mask"].dtype == s["change"].dtype == torch.int64
    assert s["boxes"].shape[1] == 4 and s["boxes"].shape[0] == s["box_labels"].shape[0]
    assert s["label"].dtype == torch.int64 and s["label"].ndim == 0
    assert 0 <= s["rgb"].min() and s["rgb"].max() <= 1
    # the cache round-trips the generator (up to uint8 / float16 quantisation)
    ref = sm.generate_scene(np.random.default_rng([0, SPLITS["train"][0], 5]))
    np.testing.assert_allclose(s["rgb"].numpy(), ref["rgb"], atol=1 / 255)
    np.testing.assert_array_equal(s["dsm"].numpy(), ref["dsm"])
    np.testing.assert_allclose(s["ndsm"].numpy(), ref["ndsm"], atol=0.02)
    np.testing.assert_array_equal(s["mask"].numpy(), ref["mask"])
    # detection targets: buildings only by default (cars are under the backbone stride; rsdatasets/synthetic.py)
    np.testing.assert_array_equal(s["boxes"].numpy(), ref["boxes"][ref["box_labels"] == 0])
    assert (s["box_labels"] == 0).all()
    both = SyntheticBenchmark(dataset.path.parents[1], "train", seed=0, size=64, n=24, det_classes=("building", "car"))
    np.testing.assert_array_equal(both[5]["boxes"].numpy(), ref["boxes"])
    np.testing.assert_array_equal(both[5]["box_labels"].numpy(), ref["box_labels"])
    assert both.metainfo["det_classes"] == ("building", "car") and dataset.metainfo["det_classes"] == ("building",)
    with pytest.raises(ValueError, match="unknown det_classes"):
        SyntheticBenchmark(dataset.path.parents[1], "train", seed=0, size=64, n=24, det_classes=("truck",))
    labels = dataset.scene_labels()
    assert labels.shape == (24,) and labels[5] == s["label"].item()
    dominant = dataset.dominant_classes()
    assert dominant[5] == np.bincount(s["mask"].flatten().numpy(), minlength=6).argmax()
    assert dataset[-1]["index"] == 23
    with pytest.raises(IndexError):
        dataset[24]
    assert dataset.modalities == ("rgb", "dsm", "ms") and len(dataset.seg_classes) == 6


def test_dataset_transforms_and_pickling(dataset):
    import pickle

    flipped = SyntheticBenchmark(
        dataset.path.parent.parent, "train", n=24, transforms=lambda s: {**s, "rgb": s["rgb"].flip(-1)}
    )
    assert torch.equal(flipped[2]["rgb"], dataset[2]["rgb"].flip(-1))
    clone = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(clone[1]["mask"], dataset[1]["mask"])


def test_plot_returns_a_figure(dataset):
    from matplotlib.figure import Figure

    sample = dataset[0]
    fig = dataset.plot(sample, suptitle="sample 0")
    assert isinstance(fig, Figure)
    sample["prediction"] = torch.randint(0, 6, (64, 64))
    fig = dataset.plot(sample, show_titles=False)
    assert isinstance(fig, Figure) and sum(ax.has_data() for ax in fig.axes) == 8
    fig.savefig(os.devnull, format="png")
