"""The frozen protocol's feature cache: a frozen-encoder cell with the cache against the same cell recomputing
its encoder features at every step.

Both run the same cell (a random-init ViT-Ti/8 at 64 px, RGB + DSM, a segmentation probe on 100 labelled
synthetic tiles, the demo's probe budget) through ``tasks.finetune`` with the frozen protocol; the
uncached run passes ``feature_cache=None``, so ``FrozenBackbone`` encodes every batch again. The cached
run is timed twice: its first cell pays for filling the cache (train + test split), later cells of a
sweep with the same checkpoint, split and modalities (every other fraction, seed and the tasks sharing
the inputs) find it full. Both give the same numbers (tests/test_protocol.py). Target: >= 10x.
Last line: the ratios.

    python perf/feature_cache.py      # ~1.5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from torch.utils.data import Subset

import backbones
from rsdatasets import build_dataset
from tasks import FinetunePlan, TrainBudget, finetune, get_task
from tasks.features import FeatureCache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--labelled", type=int, default=100)
    args = parser.parse_args()
    train, test = build_dataset("synthetic", "train", size=64), build_dataset("synthetic", "test", size=64)
    fit = Subset(train, range(args.labelled))
    task = get_task("segmentation")
    budget = TrainBudget(max_iters=args.iters, batch_size=16, lr=1e-2, warmup_iters=10, val_checks=0)

    def backbone():
        return backbones.build("random_init_vit_t16", ("rgb", "dsm"), img_size=64, patch_size=8)

    work = Path(tempfile.mkdtemp(prefix="rsbench_perf_cache_"))
    times, results = {}, {}
    cache = FeatureCache()
    for name, kwargs in (("uncached", dict(feature_cache=None)), ("cached, first cell", dict(feature_cache=cache)),
                         ("cached, cache full", dict(feature_cache=cache))):  # fmt: skip
        start = time.perf_counter()
        results[name] = finetune(FinetunePlan(
            task, backbone, fit, test, ("rgb", "dsm"), budget, 0, work / name.replace(" ", "_"), protocol="frozen",
            feature_key="perf", **kwargs
        ))  # fmt: skip
        times[name] = time.perf_counter() - start
        print(f"{name:20s} {times[name]:7.1f} s  mIoU {results[name].metrics['mIoU']:.2f}", flush=True)
    same = results["uncached"].metrics == results["cached, cache full"].metrics
    print(f"same metrics with and without the cache: {same}; cache {cache.nbytes() / 2**20:.0f} MB, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    full = times["uncached"] / times["cached, cache full"]
    first = times["uncached"] / times["cached, first cell"]
    print(f"feature cache speed-up: {full:.1f}x per cell once filled, {first:.1f}x for the cell that fills it "
          f"(target >= 10x)")


if __name__ == "__main__":
    main()
