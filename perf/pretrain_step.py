"""Pretraining step cost: MSSDF and CMID against MAE on the same encoder, batch and inputs; where MSSDF's time goes.

Times full optimiser steps (forward, backward, AdamW, teacher EMA where the method has one) of each method's
CPU configuration (ViT-Ti/8, 64 px RGB + DSM, batch 32 by default) on the same synthetic pool batch, after
warm-up, interleaved so that machine noise hits every method alike; counts each step's matmul/conv FLOPs
(torch's FlopCounterMode), the floor the method itself sets; then profiles one MSSDF step by part.
The target (issue "Performance"): MSSDF at most 2.0x MAE. Last line: the time and FLOP ratios.

    python perf/pretrain_step.py              # ~1 minute on 2 cores
    python perf/pretrain_step.py --steps 10 --batch 64
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from mmengine.config import Config

import backbones  # noqa: F401  (declares the package the pretraining methods register from)
from rsbench.registry import MODELS
from rsdatasets import build_dataset

CONFIGS = {
    "mae": "configs/pretrain/mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py",
    "mssdf": "configs/pretrain/mssdf_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py",
    "cmid": "configs/pretrain/cmid_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py",
}


def build(method: str) -> torch.nn.Module:
    cfg = Config.fromfile(CONFIGS[method])
    model = MODELS.build(cfg.model)
    model.train()
    if hasattr(model, "diagnostic_interval"):
        model.diagnostic_interval = 0  # timed separately below: it runs every 10th step only
    return model


def step_fn(model, batch, optimiser):
    def step():
        losses = model.loss(batch)
        loss = sum(v for k, v in losses.items() if k.startswith("loss"))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if hasattr(model, "teacher"):
            model.teacher.update_parameters(model.student)

    return step


def step_flops(model, batch) -> float:
    """Matmul/conv FLOPs of one forward + backward (torch's FlopCounterMode): the method's own compute floor."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        losses = model.loss(batch)
        sum(v for k, v in losses.items() if k.startswith("loss")).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mssdf_parts(model, batch) -> dict[str, float]:
    """Seconds per part of one MSSDF forward + backward (median of 3), by running the parts on their own."""
    from backbones.normalize import normalize_modalities

    x = normalize_modalities(batch)
    b, _, hh, ww = x["rgb"].shape
    h, w = hh // model.patch_size, ww // model.patch_size
    masks = dict(zip(model.modalities, model._masks(batch)))
    targets = {m: model._teacher_targets(m, x[m]) for m in model.modalities}
    parts = {
        "masking (scores, bands, sampling)": lambda: model._masks(batch),
        "teacher forward (2 modalities, no grad)": lambda: [model._teacher_targets(m, x[m]) for m in model.modalities],
    }

    def student_and_decoders():
        enc, valid, pred, rec = model._reconstruction(x, masks, targets, h, w)
        sum(rec.values()).backward()

    def student_only():
        out = [model._student_tokens(m, x[m], masks[m])[0] for m in model.modalities]
        sum(o.sum() for o in out).backward()

    parts["student encoder fwd+bwd"] = student_only
    parts["student + fusion + reconstruction decoders fwd+bwd"] = student_and_decoders
    parts["content diagnostic (every 10th step)"] = lambda: model.content_diagnostic(
        x, masks, targets, model._reconstruction(x, masks, targets, h, w)[3], h, w
    )
    out = {}
    for name, fn in parts.items():
        fn()
        out[name] = timed(fn, 3)
        model.zero_grad(set_to_none=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per method (after 2 warm-up steps)")
    args = parser.parse_args()
    torch.manual_seed(0)
    pool = build_dataset("synthetic", "pool", size=64)
    samples = [pool[i] for i in range(args.batch)]
    batch = {k: torch.stack([s[k] for s in samples]) for k in ("rgb", "dsm", "dsm_valid")}
    steps, flops = {}, {}
    for method in CONFIGS:
        model = build(method)
        flops[method] = step_flops(model, batch)
        optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        steps[method] = step_fn(model, batch, optimiser)
        steps[method]()
        steps[method]()  # warm-up
    times = {m: [] for m in steps}
    for _ in range(args.steps):  # interleaved
        for method, fn in steps.items():
            times[method].append(timed(fn, 1))
    median = {m: statistics.median(t) for m, t in times.items()}
    print(f"{torch.get_num_threads()} torch threads, batch {args.batch}, ViT-Ti/8 at 64 px, RGB + DSM")
    for method, sec in median.items():
        print(f"  {method:6s} {sec * 1000:7.1f} ms/step  {args.batch / sec:6.1f} samples/s  "
              f"{flops[method] / 1e9:6.1f} GFLOP/step ({flops[method] / flops['mae']:.2f}x MAE's), "
              f"{flops[method] / sec / 1e9:5.1f} GFLOP/s")  # fmt: skip
    print("MSSDF step by part (each part on its own; they overlap, so they do not sum to the step):")
    for name, sec in mssdf_parts(build("mssdf"), batch).items():
        print(f"  {name:55s} {sec * 1000:7.1f} ms")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    ratio = {m: median[m] / median["mae"] for m in ("mssdf", "cmid")}
    floor = {m: flops[m] / flops["mae"] for m in ("mssdf", "cmid")}
    print(f"MSSDF/MAE {ratio['mssdf']:.2f}x time, {floor['mssdf']:.2f}x FLOPs (target <= 2.0x time), "
          f"CMID/MAE {ratio['cmid']:.2f}x time, {floor['cmid']:.2f}x FLOPs")  # fmt: skip


if __name__ == "__main__":
    main()
