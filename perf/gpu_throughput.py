"""Pretraining throughput and model FLOPs utilisation (MFU) of MAE and MSSDF steps: ViT-B/16, 320 px, bf16.

For each method: one optimiser step's FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``
(forward + backward + the teacher's forward; matmuls and convolutions), the batch is doubled until memory
runs out or ``--max-batch`` is reached (the largest batch that fits is used), steps are timed under bf16
autocast after warm-up, and MFU = counted FLOPs per second / the device's peak dense bf16 FLOPs
(``--peak-tflops``, default 989 for an H100/H200 SXM). Also reports the share of the step that MSSDF's
information-aware masking takes on the GPU. Runs on CPU too (tiny sizes, for checking the script).

    python perf/gpu_throughput.py                         # on a GPU
    python perf/gpu_throughput.py --arch vit_t16 --img 64 --max-batch 8 --steps 2    # a CPU check
Last line: samples/s and MFU of both methods.
"""

from __future__ import annotations

import argparse
import time

import torch
from mmengine.config import ConfigDict
from torch.utils.flop_counter import FlopCounterMode

import backbones  # noqa: F401  (declares the package the pretraining methods register from)
from rsbench.registry import MODELS


def build(method: str, arch: str, img: int, device: str):
    common = dict(_scope_="rsbench", arch=arch, img_size=img, patch_size=16)
    if method == "mae":
        cfg = dict(type="MAE", **common, decoder_dim=512, decoder_depth=8, decoder_heads=16)
    else:
        cfg = dict(type="MSSDF", **common, decoder_dim=384, decoder_heads=6, fusion_depth=3, decoder_depth=4,
                   diagnostic_interval=0)  # fmt: skip
    model = MODELS.build(ConfigDict(cfg)).to(device).train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return model, optim


def batch_of(n: int, img: int, device: str) -> dict:
    return {"rgb": torch.rand(n, 3, img, img, device=device), "dsm": torch.rand(n, 1, img, img, device=device) * 30,
            "dsm_valid": torch.ones(n, 1, img, img, dtype=torch.bool, device=device)}  # fmt: skip


def step(model, optim, batch, device: str) -> None:
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        losses = model.loss(batch)
        loss = sum(v for k, v in losses.items() if k.startswith("loss"))
    optim.zero_grad(set_to_none=True)
    loss.backward()
    optim.step()
    if hasattr(model, "teacher"):
        model.teacher.update_parameters(model.student)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def largest_batch(method, arch, img, device, max_batch) -> int:
    best, n = 0, 8
    while n <= max_batch:
        model, optim = build(method, arch, img, device)
        try:
            step(model, optim, batch_of(n, img, device), device)
            sync(device)
            best = n
        except torch.OutOfMemoryError:
            break
        finally:
            del model, optim
            if device == "cuda":
                torch.cuda.empty_cache()
        n *= 2
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit_b16")
    parser.add_argument("--img", type=int, default=320)
    parser.add_argument("--max-batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the device")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    summary = {}
    for method in ("mae", "mssdf"):
        n = largest_batch(method, args.arch, args.img, device, args.max_batch)
        if n == 0:
            summary[method] = "did not fit at batch 8"
            continue
        model, optim = build(method, args.arch, args.img, device)
        batch = batch_of(n, args.img, device)
        with FlopCounterMode(display=False) as counter:
            step(model, optim, batch, device)
        flops = counter.get_total_flops()
        for _ in range(2):
            step(model, optim, batch, device)
        sync(device)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(args.steps):
            step(model, optim, batch, device)
        sync(device)
        sec = (time.perf_counter() - start) / args.steps
        mfu = flops / sec / (args.peak_tflops * 1e12)
        mem = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        line = (f"{method:6s} batch {n:4d}  {n / sec:8.1f} samples/s  {flops / n / 1e9:7.1f} GFLOP/sample  "
                f"MFU {100 * mfu:5.1f} %")  # fmt: skip
        print(f"{line}  peak GPU memory {mem:.1f} GiB", flush=True)
        if method == "mssdf":
            sync(device)
            t = time.perf_counter()
            for _ in range(args.steps):
                model._masks(batch)
            sync(device)
            share = (time.perf_counter() - t) / args.steps / sec
            print(f"mssdf masking inside the step: {100 * share:.2f} % of the step (target < 1 % on GPU)")
        summary[method] = f"{n / sec:.1f} samples/s, MFU {100 * mfu:.1f} %"
        del model, optim
    print(f"{name} {args.arch} {args.img}px bf16: MAE {summary['mae']}; MSSDF {summary['mssdf']}")


if __name__ == "__main__":
    main()
