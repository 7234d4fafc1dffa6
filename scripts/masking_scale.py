"""Which value scale should MSSDF's information score use? A measurement for docs/deviations.md.

The score of a patch is s * mean|Sobel| + s^2 * variance (RGB grey + DSM, summed). The official code
scores uint8 copies of its images (s = 255), where the variance term dominates; on [0, 1] values
(s = 1) the gradient term does. The method's intent is that the score finds the patches that carry
information, so this script asks, on synthetic pool tiles whose labels the generator knows: how well
does each scale's score rank the patches that contain a class boundary (more than one segmentation
class, i.e. an object edge) above those that do not (ROC AUC, 0.5 = chance)? It also prints each
term's share of the score's variance across patches and how many patches change masking band.

    python scripts/masking_scale.py            # last line: the AUC of both scales and the choice
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import rankdata

from backbones.mssdf.masking import band_weights, patch_scores
from rsdatasets import build_dataset


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC via the rank-sum (Mann-Whitney U) identity."""
    ranks = rankdata(scores)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=256)
    parser.add_argument("--patch-size", type=int, default=8)
    args = parser.parse_args()
    pool = build_dataset("synthetic", "pool", size=64)
    samples = [pool[i] for i in range(args.tiles)]
    rgb = torch.stack([s["rgb"] for s in samples]).double()
    dsm = torch.stack([s["dsm"] for s in samples]).double()
    valid = torch.stack([s["dsm_valid"] for s in samples])
    p = args.patch_size
    masks = torch.stack([s["mask"] for s in samples])
    b, h, w = masks.shape
    blocks = masks.reshape(b, h // p, p, w // p, p).permute(0, 1, 3, 2, 4).reshape(b, -1, p * p)
    boundary = (blocks != blocks[..., :1]).any(-1).reshape(-1).numpy()
    print(f"{b} pool tiles, {boundary.size} patches of {p} px, {100 * boundary.mean():.1f} % hold a class boundary")
    results = {}
    for scale in (1.0, 255.0):
        full = patch_scores(rgb, dsm, p, valid, value_scale=scale)
        # the two terms apart: a tiny scale isolates the linear (gradient) term, the rest is the variance term
        grad = patch_scores(rgb, dsm, p, valid, value_scale=1e-6) * (scale / 1e-6)
        var_term = full - grad
        share = float(grad.var() / (grad.var() + var_term.var()))
        results[scale] = auc(full.reshape(-1).numpy(), boundary)
        bands = band_weights(full)
        results[f"bands{scale}"] = bands
        print(f"scale {scale:>5g}: boundary AUC {results[scale]:.3f}; gradient term {100 * share:.1f} % and "
              f"variance term {100 * (1 - share):.1f} % of the terms' variance")  # fmt: skip
    changed = float((results["bands1.0"] != results["bands255.0"]).double().mean())
    best = max((1.0, 255.0), key=lambda s: results[s])
    print(f"{100 * changed:.1f} % of patches fall in another masking band at scale 255 than at scale 1")
    print(f"boundary AUC: scale 1 {results[1.0]:.3f}, scale 255 {results[255.0]:.3f} -> default score_scale={best:g}")


if __name__ == "__main__":
    main()
