"""An unlabelled pretraining pool over any dataset that yields the requested modalities."""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import Dataset

from ..registry import DATASETS
from . import build_dataset


@DATASETS.register_module()
class PretrainPool(Dataset):
    """Samples ``{"inputs": {modality: tensor, "<modality>_valid": mask}}`` from a dataset split.

    Labels are dropped on purpose: pretraining must never see them. The default is the
    synthetic benchmark's ``pool`` split, which is disjoint from its labelled splits.
    """

    def __init__(self, dataset: str = "synthetic", split: str = "pool", modalities: Sequence[str] = ("rgb", "dsm"),
                 max_samples: int | None = None, **kwargs) -> None:  # fmt: skip
        self.source = build_dataset(dataset, split, **kwargs)
        # The first max_samples tiles: a short run (the demo's) keeps its epoch-based schedule intact.
        self.length = len(self.source) if max_samples is None else min(int(max_samples), len(self.source))
        if self.length < 1:
            raise ValueError(f"PretrainPool: max_samples must be >= 1, got {max_samples}")
        self.modalities = tuple(modalities)
        first = self.source[0]
        missing = [m for m in self.modalities if m not in first]
        if missing:
            raise KeyError(f"dataset {dataset!r} split {split!r} has no modalities {missing}; it has {sorted(first)}")
        self.keys = [*self.modalities, *(f"{m}_valid" for m in self.modalities if f"{m}_valid" in first)]
        self.metainfo = {"dataset": dataset, "split": split, "modalities": self.modalities}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not -self.length <= index < self.length:
            raise IndexError(f"PretrainPool index {index} out of range for {self.length} samples")
        sample = self.source[index % self.length]
        return {"inputs": {k: sample[k] for k in self.keys}}
