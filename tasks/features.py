"""The frozen-encoder protocol: encoder features computed once, cached, and fed to a trainable probe.

A backbone says what its frozen encoder is (``frozen_parts()``: the ViT's blocks and patch
embeddings, a CNN's stages; its task-side pyramid is not part of it). Under the frozen protocol the
encoder's maps for every sample of a split are computed once per (checkpoint, dataset split,
modalities, view) and kept in a :class:`FeatureCache`; training then costs only the task's probe
(``tasks.probe``), so it can train to convergence. PANGAEA and torchgeo-bench evaluate frozen
encoders the same way; torchgeo-bench reports its feature cache as its dominant speed-up.

Features are computed in eval mode and without gradients, in chunks of samples when the cache is
filled and on the training batch when ``cache=None`` recomputes them every step. On the CPU kernels
used here a sample's features do not depend on the other samples of its batch, so both give the same
bits (``tests/test_protocol.py`` checks it; a platform where they differ fails that test).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from backbones.normalize import normalize_modalities
from rsbench.watchdog import beat

#: Sample / batch key of the cached encoder features of the (first-date) inputs; views add a suffix.
FEATURES = "features"
#: Batch key of the input image size (B x 2), which tasks need once the images themselves are gone.
IMAGE_HW = "image_hw"


def frozen_parts(backbone: nn.Module) -> tuple[Callable[[dict], list[Tensor]], list[nn.Module]]:
    """(encode: normalised inputs -> the encoder's maps, the encoder's modules) of a backbone.

    Backbones that do not say (``frozen_parts`` missing) are frozen whole: their output is the feature.
    """
    if hasattr(backbone, "frozen_parts"):
        return backbone.frozen_parts()
    return backbone.forward, [backbone]


class FrozenBackbone(nn.Module):
    """The backbone as a cell sees it under the frozen protocol: the encoder's maps, fixed.

    ``forward(inputs)`` returns the cached features (``inputs["features"]``) when the batch carries
    them, and otherwise computes them from the images under ``no_grad``. The encoder stays in eval
    mode whatever ``train()`` says (no dropout, no statistics updates) and never trains; the task's
    probe (``tasks.probe``) is all that learns.
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self._encode, self._frozen = frozen_parts(backbone)
        backbone.requires_grad_(False)
        for attr in ("modalities", "patch_size", "backbone_name", "method", "arch"):
            if hasattr(backbone, attr):
                setattr(self, attr, getattr(backbone, attr))
        #: channels of the encoder's maps (a ViT's embedding width four times; a CNN's stage widths)
        self.out_channels = list(getattr(backbone, "encoder_channels", backbone.out_channels))
        self.train()

    def train(self, mode: bool = True) -> FrozenBackbone:
        # The encoder is the only child and stays in eval mode; the runner calls train() every
        # iteration, and walking the encoder's modules each time cost more than a probe's step.
        self.training = mode
        if self.backbone.training:
            self.backbone.eval()
        return self

    @torch.no_grad()
    def encode(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        """Encoder maps of normalised inputs (the encoder in eval mode, no gradients)."""
        self.backbone.eval()
        # contiguous: the cache stacks samples into contiguous tensors, and a probe's kernels must see one layout
        return [f.contiguous() for f in self._encode(dict(inputs))]

    def forward(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        return list(inputs[FEATURES]) if FEATURES in inputs else self.encode(inputs)


def view_inputs(sample: Mapping, view: Mapping[str, str]) -> dict[str, Tensor]:
    """A one-sample batch of a view: ``{modality: sample[key]}`` plus nodata masks, normalised."""
    batch = {}
    for modality, key in view.items():
        batch[modality] = sample[key][None]
        if f"{key}_valid" in sample:
            batch[f"{modality}_valid"] = sample[f"{key}_valid"][None]
    return normalize_modalities(batch)


class FeatureCache:
    """Encoder features of whole dataset splits, in memory, least recently used dropped beyond ``max_bytes``.

    Keys say what the features are of: checkpoint hash, backbone and its options, dataset entry,
    split, modalities and view; the sweep builds them (``benchmark.sweep``).
    """

    def __init__(self, max_bytes: int = 6 * 2**30) -> None:
        self.max_bytes = max_bytes
        self._store: OrderedDict[str, list[Tensor]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: str, compute: Callable[[], list[Tensor]]) -> list[Tensor]:
        if key in self._store:
            self.hits += 1
            self._store.move_to_end(key)
            return self._store[key]
        self.misses += 1
        value = compute()
        self._store[key] = value
        while len(self._store) > 1 and self.nbytes() > self.max_bytes:
            self._store.popitem(last=False)
        return value

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for levels in self._store.values() for t in levels)


def compute_split_features(backbone: FrozenBackbone, dataset: Dataset, view: Mapping[str, str],
                           chunk: int = 32) -> list[Tensor]:  # fmt: skip
    """Encoder maps of every sample of ``dataset`` for ``view``, stacked per level (N x C x h x w)."""
    levels: list[list[Tensor]] = []
    for start in range(0, len(dataset), chunk):
        beat(f"feature pass, sample {start} of {len(dataset)}")
        samples = [view_inputs(dataset[i], view) for i in range(start, min(start + chunk, len(dataset)))]
        feats = backbone.encode({k: torch.cat([s[k] for s in samples]) for k in samples[0]})
        if not levels:
            levels = [[] for _ in feats]
        for store, f in zip(levels, feats):
            store.append(f)
    return [torch.cat(level) for level in levels]


def root_and_indices(dataset: Dataset) -> tuple[Dataset, list[int]]:
    """The dataset a (nested) Subset draws from, and the subset's indices into it."""
    indices = list(range(len(dataset)))
    while isinstance(dataset, Subset):
        indices = [dataset.indices[i] for i in indices]
        dataset = dataset.dataset
    return dataset, indices


class WithFeatures(Dataset):
    """``dataset``'s samples with their image inputs replaced by cached encoder features.

    ``views`` maps a feature key (``features``, ``features_t2``) to the view it was computed from
    and its per-level tensors over the *root* dataset (``dataset`` may be a Subset of it). The
    view's image keys are dropped from the sample (nothing downstream may read the pixels), the
    targets stay, and ``image_hw`` records the input size.
    """

    def __init__(self, dataset: Dataset, views: Mapping[str, tuple[Mapping[str, str], Sequence[Tensor]]]) -> None:
        self.dataset = dataset
        self.root, self.indices = root_and_indices(dataset)
        self.views = dict(views)
        self.drop = {k for view, _ in self.views.values() for key in view.values() for k in (key, f"{key}_valid")}
        # Targets and sizes per root sample, decoded once: a probe's step is cheaper than decoding a sample.
        self._kept: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def metainfo(self) -> dict:
        return getattr(self.dataset, "metainfo", {})

    def __getitem__(self, i: int) -> dict:
        root_index = self.indices[i]
        if root_index not in self._kept:
            sample = self.root[root_index]
            first_view = next(iter(self.views.values()))[0]
            image = sample[next(iter(first_view.values()))]
            kept = {k: v for k, v in sample.items() if k not in self.drop}
            kept[IMAGE_HW] = torch.tensor(image.shape[-2:])
            self._kept[root_index] = kept
        out = dict(self._kept[root_index])
        for key, (_, levels) in self.views.items():
            out[key] = [level[root_index] for level in levels]
        return out
