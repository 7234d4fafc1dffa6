"""Does a training step ever wait for data? Loader throughput against the step's consumption, in one run.

Measures, on this machine:

* the synthetic benchmark read from its cache (memory-mapped arrays; what every synthetic cell reads),
  and through the pretraining pool with MSSDF's co-registered augmentation;
* tiled GeoTIFF reads (rasterio windows) of a Potsdam-layout fake written here (RGB, DSM, labels; 6000 x
  6000 px tiles cut into 512 px crops, as the real dataset), with 0 and 2 DataLoader workers;

and the rate at which training consumes samples: an MSSDF pretraining step (ViT-Ti/8, batch 32, 64 px) and a
fine-tuning segmentation step (ViT-Ti/16 + UPerHead, batch 4, 512 px crops). Ratio = loader samples/s over
step samples/s; above 1 the step never waits. Last line: the ratios.

    python perf/dataloader.py     # ~1.5 minutes on 2 cores
"""

from __future__ import annotations

import resource
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

SIZE, CROP = 6000, 512


def rate(fn, n: int) -> float:
    fn(0)
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def fake_potsdam(root: Path) -> Path:
    import rasterio

    from rsdatasets.isprs import PALETTE

    rng = np.random.default_rng(0)

    def write(path, array, nodata=None):
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(path, "w", driver="GTiff", width=array.shape[2], height=array.shape[1],
                               count=array.shape[0], dtype=str(array.dtype), nodata=nodata, tiled=True,
                               blockxsize=256, blockysize=256) as dst:  # fmt: skip
                dst.write(array)

    classes = (np.arange(SIZE)[:, None] // 64 + np.arange(SIZE)[None] // 64) % 6
    write(root / "2_Ortho_RGB/top_potsdam_2_10_RGB.tif", rng.integers(0, 256, (3, SIZE, SIZE), dtype=np.uint8))
    write(root / "5_Labels_all/top_potsdam_2_10_label.tif",
          np.asarray(PALETTE, np.uint8)[classes].transpose(2, 0, 1).copy())  # fmt: skip
    write(root / "1_DSM/dsm_potsdam_02_10.tif", rng.normal(40, 5, (1, SIZE, SIZE)).astype(np.float32), nodata=-9999.0)
    return root


def main() -> None:
    from mmengine.config import Config

    import backbones  # noqa: F401  (declares the package the pretraining methods register from)
    from rsbench.registry import MODELS
    from rsdatasets import build_dataset
    from rsdatasets.pretrain_pool import PretrainPool
    from tasks import get_task

    threads = torch.get_num_threads()
    synthetic = build_dataset("synthetic", "train", size=64)
    pool = PretrainPool(split="pool", size=64, augment=True)
    rates = {"synthetic tiles (memory-mapped cache)": rate(lambda i: synthetic[i % len(synthetic)], 400),
             "pretraining pool + augmentation": rate(lambda i: pool[i % len(pool)], 400)}  # fmt: skip
    root = fake_potsdam(Path(tempfile.mkdtemp(prefix="rsbench_perf_potsdam_")))
    potsdam = build_dataset("potsdam", "train", root=str(root), crop=CROP, image="RGB", dsm=True, tiles=["2_10"])
    rates["Potsdam-layout GeoTIFF crops, 0 workers"] = rate(lambda i: potsdam[i % len(potsdam)], 24)
    loader = DataLoader(potsdam, batch_size=4, num_workers=2, collate_fn=lambda s: s, persistent_workers=True)
    it = iter(loader)
    next(it)
    start, n = time.perf_counter(), 0
    for batch in it:
        n += len(batch)
        if n >= 48:
            break
    rates["Potsdam-layout GeoTIFF crops, 2 workers"] = n / (time.perf_counter() - start)
    torch.set_num_threads(threads)

    cfg = Config.fromfile("configs/pretrain/mssdf_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py")
    mssdf = MODELS.build(cfg.model).train()
    mssdf.diagnostic_interval = 0
    batch = {k: torch.stack([pool[i]["inputs"][k] for i in range(32)]) for k in ("rgb", "dsm", "dsm_valid")}

    def mssdf_step(_):
        losses = mssdf.loss(batch)
        sum(v for k, v in losses.items() if k.startswith("loss")).backward()

    consume = {"MSSDF pretraining step (batch 32, 64 px)": 32 * rate(mssdf_step, 3)}

    seg = get_task("segmentation").build_model(
        backbones.build("random_init_vit_t16", ("rgb", "dsm"), img_size=CROP, patch_size=16), ("rgb", "dsm")
    ).train()
    samples = [potsdam[i] for i in range(4)]
    data = seg.data_preprocessor(get_task("segmentation").collate(samples, ("rgb", "dsm")), True)

    def seg_step(_):
        losses = seg(**data, mode="loss")
        sum(losses.values()).backward()

    consume["segmentation fine-tuning step (batch 4, 512 px)"] = 4 * rate(seg_step, 2)
    for name, r in rates.items():
        print(f"  loader   {name:45s} {r:8.1f} samples/s")
    for name, r in consume.items():
        print(f"  consumer {name:45s} {r:8.1f} samples/s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    pre = rates["pretraining pool + augmentation"] / consume["MSSDF pretraining step (batch 32, 64 px)"]
    tif0 = rates["Potsdam-layout GeoTIFF crops, 0 workers"] / consume["segmentation fine-tuning step (batch 4, 512 px)"]
    tif2 = rates["Potsdam-layout GeoTIFF crops, 2 workers"] / consume["segmentation fine-tuning step (batch 4, 512 px)"]
    print(f"loader / step: synthetic pool {pre:.1f}x, GeoTIFF crops {tif0:.1f}x (0 workers), {tif2:.1f}x (2 workers)")


if __name__ == "__main__":
    main()
