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
                 **kwargs) -> None:  # fmt: skip
        self.source = build_dataset(dataset, split, **kwargs)
        self.modalities = tuple(modalities)
        first = self.source[0]
        missing = [m for m in self.modalities if m not in first]
        if missing:
            raise KeyError(f"dataset {dataset!r} split {split!r} has no modalities {missing}; it has {sorted(first)}")
        self.keys = [*self.modalities, *(f"{m}_valid" for m in self.modalities if f"{m}_valid" in first)]
        self.metainfo = {"dataset": dataset, "split": split, "modalities": self.modalities}

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        sample = self.source[index]
        return {"inputs": {k: sample[k] for k in self.keys}}
