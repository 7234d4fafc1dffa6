"""Pretraining pools over any dataset that yields the requested modalities: unlabelled, or labelled for the control."""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import Dataset

from rsbench.registry import DATASETS

from . import build_dataset
from .transforms import CoRegisteredAugment


def _augmentation(augment: bool | dict | None) -> CoRegisteredAugment | None:
    if not augment:
        return None
    return CoRegisteredAugment(**(augment if isinstance(augment, dict) else {}))


@DATASETS.register_module()
class PretrainPool(Dataset):
    """Samples ``{"inputs": {modality: tensor, "<modality>_valid": mask}}`` from a dataset split.

    Labels are dropped on purpose: pretraining must never see them. The default is the
    synthetic benchmark's ``pool`` split, which is disjoint from its labelled splits.
    ``augment=True`` (or a dict of ``CoRegisteredAugment`` options) applies MSSDF's official
    flip / colour jitter / resized crop, co-registered across modalities.
    """

    #: Sample keys kept besides the modalities (none: an unlabelled pool).
    target_keys: tuple[str, ...] = ()

    def __init__(self, dataset: str = "synthetic", split: str = "pool", modalities: Sequence[str] = ("rgb", "dsm"),
                 max_samples: int | None = None, augment: bool | dict | None = None, **kwargs) -> None:  # fmt: skip
        self.source = build_dataset(dataset, split, **kwargs)
        self.source_cfg = dict(name=dataset, split=split, **kwargs)  # how to build a sibling split (probes)
        # The first max_samples tiles: a short run (the demo's) keeps its epoch-based schedule intact.
        self.length = len(self.source) if max_samples is None else min(int(max_samples), len(self.source))
        if self.length < 1:
            raise ValueError(f"{type(self).__name__}: max_samples must be >= 1, got {max_samples}")
        self.modalities = tuple(modalities)
        first = self.source[0]
        missing = [m for m in (*self.modalities, *self.target_keys) if m not in first]
        if missing:
            raise KeyError(f"dataset {dataset!r} split {split!r} has no keys {missing}; it has {sorted(first)}")
        self.keys = [*self.modalities, *(f"{m}_valid" for m in self.modalities if f"{m}_valid" in first)]
        self.augment = _augmentation(augment)
        self.metainfo = {"dataset": dataset, "split": split, "modalities": self.modalities,
                         "augment": self.augment.config() if self.augment else None}  # fmt: skip

    def __len__(self) -> int:
        return self.length

    def _sample(self, index: int) -> dict:
        if not -self.length <= index < self.length:
            raise IndexError(f"{type(self).__name__} index {index} out of range for {self.length} samples")
        sample = self.source[index % self.length]
        sample = {k: sample[k] for k in (*self.keys, *self.target_keys)}
        return self.augment(sample) if self.augment else sample

    def __getitem__(self, index: int) -> dict:
        sample = self._sample(index)
        return {"inputs": {k: sample[k] for k in self.keys}}


@DATASETS.register_module()
class LabelledPool(PretrainPool):
    """The pool with its labels: ``{"inputs": ..., "data_samples": {"label": ..., "mask": ...}}``.

    Only for the supervised control (``backbones/supervised``), the synthetic counterpart of the
    papers' "ImageNet supervised" row: the generator knows every pool tile's labels. No
    self-supervised method may use this class.
    """

    def __init__(self, *args, targets: Sequence[str] = ("label", "mask"), **kwargs) -> None:
        self.target_keys = tuple(targets)  # e.g. + "ndsm" for the control's height head; checked by the pool
        super().__init__(*args, **kwargs)

    def __getitem__(self, index: int) -> dict:
        sample = self._sample(index)
        return {"inputs": {k: sample[k] for k in self.keys}, "data_samples": {k: sample[k] for k in self.target_keys}}
