"""Speed of MSSDF information-aware patch scoring: per-patch reference vs the batched torch path.

    python perf/masking.py [--n 64] [--size 320] [--repeats 5] [--nodata] [--profile]

Builds ``n`` seeded, structured RGB + DSM images (smooth noise, rectangles as roofs/fields, fine
texture), times ``patch_scores_reference`` and ``patch_scores`` on the same batch (best of repeats,
after a warm-up, with torch's default thread count), checks that their scores agree, and prints
``speedup: <ratio>x (...)`` as its last line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backbones.mssdf.masking import info_aware_mask, patch_scores  # noqa: E402
from backbones.mssdf.masking_reference import patch_scores_reference  # noqa: E402


def make_batch(n: int, size: int, seed: int = 0, nodata: bool = False):
    """(rgb (n,3,s,s) in [0,1], dsm (n,1,s,s) metres, valid (n,1,s,s) bool or None), all seeded."""
    g = torch.Generator().manual_seed(seed)

    def smooth(ch: int, cells: int) -> torch.Tensor:
        low = torch.rand(n, ch, cells, cells, generator=g)
        return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)

    rgb = 0.5 * smooth(3, 6) + 0.2 * smooth(3, 40) + 0.04 * torch.rand(n, 3, size, size, generator=g)
    dsm = 100 + 15 * smooth(1, 4) + 0.05 * torch.rand(n, 1, size, size, generator=g)
    for i in range(n):
        for _ in range(int(torch.randint(4, 16, (1,), generator=g))):
            x0, y0 = (int(v) for v in torch.randint(0, size - 8, (2,), generator=g))
            w, h = (int(v) for v in torch.randint(8, size // 3, (2,), generator=g))
            rgb[i, :, y0 : y0 + h, x0 : x0 + w] = torch.rand(3, 1, 1, generator=g)
            dsm[i, :, y0 : y0 + h, x0 : x0 + w] += 25 * float(torch.rand((), generator=g))
    valid = None
    if nodata:
        valid = smooth(1, 10) > 0.15
        dsm = torch.where(valid, dsm, torch.full_like(dsm, -9999.0))
    return rgb.clamp_(0, 1).contiguous(), dsm.contiguous(), valid


def best_of(fn, repeats: int, warmup=None):
    """Best wall time over ``repeats`` calls after a warm-up call; returns (seconds, last result)."""
    out = (warmup or fn)()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=64, help="images in the batch")
    ap.add_argument("--size", type=int, default=320, help="image side (multiple of --patch)")
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of the reference (best kept)")
    ap.add_argument(
        "--batched-repeats", type=int, default=0, help="timed batched runs (default 5x --repeats)"
    )
    ap.add_argument("--nodata", action="store_true", help="mark ~some DSM pixels as nodata")
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table of the batched path")
    args = ap.parse_args(argv)
    args.repeats = max(1, args.repeats)

    rgb, dsm, valid = make_batch(args.n, args.size, nodata=args.nodata)
    npatch = (args.size // args.patch) ** 2
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.n} images "
        f"{args.size}x{args.size}, patch {args.patch} ({npatch} patches), nodata={args.nodata}"
    )

    t_ref, ref = best_of(
        lambda: patch_scores_reference(rgb, dsm, args.patch, valid),
        args.repeats,
        warmup=lambda: patch_scores_reference(
            rgb[:2], dsm[:2], args.patch, None if valid is None else valid[:2]
        ),
    )
    reps = args.batched_repeats or 5 * args.repeats
    t_fast, fast = best_of(lambda: patch_scores(rgb, dsm, args.patch, valid), reps)
    t_mask, mask = best_of(lambda: info_aware_mask(rgb, dsm, args.patch, valid), reps)

    # The floor no implementation can beat: reading every input byte once (a threaded reduction).
    t_read, _ = best_of(lambda: (rgb.sum(), dsm.sum(), None if valid is None else valid.sum()), reps)
    # One elementwise pass over the batch (read rgb, write a grey image): what each extra full-size pass costs.
    grey = torch.empty_like(dsm)
    t_pass, _ = best_of(lambda: torch.sum(rgb, 1, keepdim=True, out=grey), reps)

    fast64 = fast.double().numpy()
    scale = np.abs(ref).max(axis=1, keepdims=True)
    err_scaled = float((np.abs(fast64 - ref) / scale).max())
    err_rel = float((np.abs(fast64 - ref) / np.maximum(np.abs(ref), 1e-3 * scale)).max())
    ok = err_scaled < 1e-5
    counts = mask.sum(1)
    print(f"reference: {t_ref:.3f} s ({1e3 * t_ref / args.n:.2f} ms/image), best of {args.repeats}")
    print(f"batched:   {1e3 * t_fast:.2f} ms ({1e3 * t_fast / args.n:.3f} ms/image), best of {reps}")
    print(
        f"batched scores+bands+sampling (info_aware_mask): {1e3 * t_mask:.2f} ms; "
        f"masked per image {int(counts.min())}..{int(counts.max())} of {npatch}"
    )
    print(
        f"float32 batched vs float64 reference: max |diff| / image max score {err_scaled:.2e}, "
        f"max relative (floor 1e-3 x max) {err_rel:.2e} -> {'agree' if ok else 'DISAGREE'}"
    )
    print(
        f"floor: one read of the inputs {1e3 * t_read:.2f} ms, one read-rgb-write-grey pass {1e3 * t_pass:.2f} ms; "
        f"batched = {t_fast / t_read:.1f}x the read floor; 100x the reference would need "
        f"{1e3 * t_ref / 100:.1f} ms = {t_ref / 100 / t_read:.1f}x the read floor"
    )
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(reps):
                patch_scores(rgb, dsm, args.patch, valid)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    print(
        f"speedup: {t_ref / t_fast:.1f}x (reference {t_ref:.2f} s, batched {1e3 * t_fast:.1f} ms, "
        f"{args.n} images {args.size}x{args.size})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
