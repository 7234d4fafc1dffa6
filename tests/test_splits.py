import itertools

import numpy as np
import pytest

from benchmark.running.splits import nested_label_subsets, subset_size

FRACTIONS = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0]


def _strata(n=600, seed=0):
    # unequal strata, like dominant classes of a real split
    rng = np.random.default_rng(seed)
    return rng.choice(6, size=n, p=[0.35, 0.25, 0.15, 0.12, 0.08, 0.05])


@pytest.mark.parametrize("split_seed", [0, 1, 7])
def test_subsets_are_nested_for_every_fraction_pair(split_seed):
    subsets = nested_label_subsets(_strata(), FRACTIONS, split_seed)
    for small, large in itertools.combinations(sorted(FRACTIONS), 2):
        assert set(subsets[small]) <= set(subsets[large]), (small, large)
    assert len(subsets[1.0]) == 600


def test_sizes_are_the_requested_fraction():
    subsets = nested_label_subsets(_strata(), FRACTIONS, 0)
    for f in FRACTIONS:
        assert len(subsets[f]) == max(1, round(f * 600))
        assert len(np.unique(subsets[f])) == len(subsets[f])


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.25, 0.5])
def test_subsets_are_stratified(fraction):
    strata = _strata()
    idx = nested_label_subsets(strata, [fraction], 3)[fraction]
    k = len(idx)
    for s in np.unique(strata):
        expected = k * np.mean(strata == s)
        assert abs(np.sum(strata[idx] == s) - expected) <= 2, (s, np.sum(strata[idx] == s), expected)


def test_split_seed_controls_the_subset():
    strata = _strata()
    a = nested_label_subsets(strata, [0.1], 0)[0.1]
    b = nested_label_subsets(strata, [0.1], 0)[0.1]
    c = nested_label_subsets(strata, [0.1], 1)[0.1]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_subset_of_a_fraction_does_not_depend_on_the_other_fractions():
    strata = _strata()
    alone = nested_label_subsets(strata, [0.25], 5)[0.25]
    together = nested_label_subsets(strata, [0.01, 0.25, 1.0], 5)[0.25]
    assert np.array_equal(alone, together)


@pytest.mark.parametrize("bad", [0, -0.1, 1.5])
def test_bad_fraction_is_refused(bad):
    with pytest.raises(ValueError, match="label fraction"):
        subset_size(bad, 100)
