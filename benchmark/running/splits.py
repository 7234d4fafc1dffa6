"""Label-fraction subsets of a training split: nested, seeded and stratified."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset, Subset


def subset_size(fraction: float, n: int) -> int:
    """Number of training samples for ``fraction`` of ``n`` (at least one)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    return max(1, min(n, int(round(fraction * n))))


def stratified_order(strata: Sequence[int] | np.ndarray, split_seed: int | Sequence[int]) -> np.ndarray:
    """A seeded ordering of sample indices whose every prefix is stratified.

    Within each stratum the samples are shuffled; the r-th of n_s samples gets the key
    (r + u) / n_s with u ~ U(0, 1), and all samples are sorted by key. Any prefix then
    holds each stratum in proportion to its size (within about one sample), and taking
    prefixes of the same ordering makes smaller subsets nested in larger ones.
    """
    strata = np.asarray(strata)
    rng = np.random.default_rng(split_seed)
    keys = np.empty(len(strata), dtype=np.float64)
    for value in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == value))
        keys[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.argsort(keys, kind="stable")


def nested_label_subsets(
    strata: Sequence[int] | np.ndarray, fractions: Sequence[float], split_seed: int, every_stratum: bool = False
) -> dict[float, np.ndarray]:
    """Sorted training-sample indices for each fraction; smaller fractions nest in larger ones.

    ``every_stratum=True`` (classification: a classifier needs every class) adds, to a prefix that misses
    a stratum, that stratum's first sample in the same order; the subsets stay nested (a larger prefix
    holds every first sample it passes) and the row's ``n_train`` says how many were used.
    """
    strata = np.asarray(strata)
    order = stratified_order(strata, split_seed)
    out = {}
    for f in fractions:
        picked = order[: subset_size(f, len(order))]
        if every_stratum:
            missing = set(np.unique(strata)) - set(strata[picked])
            firsts = [i for i in order if strata[i] in missing and not missing.discard(strata[i])]
            picked = np.concatenate([picked, np.asarray(firsts, dtype=picked.dtype)])
        out[float(f)] = np.sort(picked)
    return out


def carve_validation(strata: Sequence[int] | np.ndarray, n_val: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a labelled subset (given by its samples' strata) into fit and validation positions.

    The ``n_val`` validation samples are a stratified prefix of a second seeded ordering (its own
    random stream, so the carve does not repeat the subset's order); both parts are sorted positions
    into the subset. Model selection sees only labels the cell was given: the subset's own.
    """
    order = stratified_order(strata, [int(split_seed), 1])
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class LabelSubset(Subset):
    """The labelled part of a training split; keeps the parent's metainfo and records the fraction."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], fraction: float,
                 strata: Sequence[int] | np.ndarray | None = None) -> None:  # fmt: skip
        super().__init__(dataset, list(indices))
        self.fraction = fraction
        self.strata = None if strata is None else np.asarray(strata)  # of the subset's samples, in order

    @property
    def metainfo(self) -> dict:
        return {**getattr(self.dataset, "metainfo", {}), "label_fraction": self.fraction, "n_train": len(self)}
