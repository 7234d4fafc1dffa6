"""Per-patch reference of MSSDF information-aware masking (used only by tests and ``perf/masking.py``).

Written the way the official MSSDF dataset code scores patches: a Python loop over the patches, one
``cv2.cvtColor`` / ``cv2.Sobel`` call per patch, ``np.percentile`` bands and ``rng.choice`` weighted
sampling. It is slow (~20 ms per 320x320 image) and exists only as the readable definition that the
batched :mod:`backbones.mssdf.masking` is checked against. The semantics, shared by both:

* grey = 0.299 R + 0.587 G + 0.114 B (``cv2.cvtColor`` for float32; ``cvtColor`` rejects float64, so
  float64 input uses the same formula in numpy, which lets tests compare both paths in float64);
* DSM: invalid pixels take the mean of the valid ones, then a per-image min-max over valid pixels maps
  heights to [0, 1] (a constant or fully invalid DSM becomes all zeros);
* Sobel: OpenCV's 3x3 kernels on the *whole* image with ``BORDER_REFLECT_101`` at the image border,
  evaluated per patch on the patch plus a 1-pixel halo of the padded image, so an edge on a patch
  boundary counts for both neighbours (the official code filters each isolated patch instead);
* per patch: grad = mean of sqrt(gx^2 + gy^2), var = population variance of the patch;
  score = s * (grad_rgb + grad_dsm) + s^2 * (var_rgb + var_dsm) with s = ``value_scale`` (1 for
  [0, 1] inputs; 255 reproduces the official uint8 scale, where the variance term dominates).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

GREY_COEFFS = np.array([0.299, 0.587, 0.114])


def _numpy(x) -> np.ndarray:
    """Accept torch tensors (any device) or arrays without importing torch here."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def scale_dsm_reference(dsm: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Fill nodata with the valid mean, then min-max scale over valid pixels to [0, 1] (float64)."""
    d = np.asarray(dsm, dtype=np.float64)
    v = np.ones(d.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if not v.any():
        return np.zeros_like(d)
    d = np.where(v, d, d[v].mean())
    lo, hi = d.min(), d.max()
    return (d - lo) / (hi - lo) if hi > lo else np.zeros_like(d)


def _grad_and_var(halo_grey: np.ndarray) -> tuple[float, float]:
    """Mean Sobel magnitude and variance of the patch inside a 1-pixel halo."""
    gx = cv2.Sobel(halo_grey, cv2.CV_64F, 1, 0, ksize=3)[1:-1, 1:-1]
    gy = cv2.Sobel(halo_grey, cv2.CV_64F, 0, 1, ksize=3)[1:-1, 1:-1]
    inner = halo_grey[1:-1, 1:-1].astype(np.float64)
    return float(np.hypot(gx, gy).mean()), float(inner.var())


def patch_scores_reference(
    rgb, dsm, patch_size: int = 16, dsm_valid=None, value_scale: float = 1.0
) -> np.ndarray:
    """(B, N) float64 information scores, one patch at a time (see the module docstring)."""
    rgb, dsm = _numpy(rgb), _numpy(dsm)
    valid = None if dsm_valid is None else _numpy(dsm_valid)
    if rgb.dtype != np.float64:
        rgb = rgb.astype(np.float32)
    b, _, h, w = rgb.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not a multiple of patch_size={p}")
    border = cv2.BORDER_REFLECT_101
    scores = np.zeros((b, (h // p) * (w // p)), dtype=np.float64)
    for i in range(b):
        img = np.ascontiguousarray(rgb[i].transpose(1, 2, 0))
        img = cv2.copyMakeBorder(img, 1, 1, 1, 1, border)
        d = scale_dsm_reference(dsm[i, 0], None if valid is None else valid[i, 0])
        d = cv2.copyMakeBorder(d, 1, 1, 1, 1, border)
        k = 0
        for y in range(0, h, p):
            for x in range(0, w, p):
                halo = img[y : y + p + 2, x : x + p + 2]
                if halo.dtype == np.float64:
                    grey = halo @ GREY_COEFFS
                else:
                    grey = cv2.cvtColor(halo, cv2.COLOR_RGB2GRAY)
                g_rgb, v_rgb = _grad_and_var(grey)
                g_dsm, v_dsm = _grad_and_var(d[y : y + p + 2, x : x + p + 2])
                scores[i, k] = value_scale * (g_rgb + g_dsm) + value_scale**2 * (v_rgb + v_dsm)
                k += 1
    return scores


def band_weights_reference(
    scores,
    low_q: float = 0.2,
    high_q: float = 0.8,
    weights: Sequence[float] = (0.8, 0.5, 0.3),
    prefer: str = "mask_flat",
) -> np.ndarray:
    """Per image: score < Q_low -> weights[0], score > Q_high -> weights[2], else weights[1]."""
    if prefer not in ("mask_flat", "mask_informative"):
        raise ValueError(f"prefer must be 'mask_flat' or 'mask_informative', got {prefer!r}")
    scores = np.atleast_2d(_numpy(scores)).astype(np.float64)
    w_low, w_mid, w_high = weights if prefer == "mask_flat" else tuple(weights)[::-1]
    out = np.empty_like(scores)
    for i, s in enumerate(scores):
        q_low, q_high = np.percentile(s, [100 * low_q, 100 * high_q])
        out[i] = w_mid
        out[i][s < q_low] = w_low
        out[i][s > q_high] = w_high
    return out


def sample_mask_reference(weights, mask_ratio: float = 0.75, rng: np.random.Generator | None = None):
    """round(mask_ratio * N) patches per image, without replacement, with probability ~ weight."""
    rng = np.random.default_rng() if rng is None else rng
    weights = np.atleast_2d(_numpy(weights)).astype(np.float64)
    b, n = weights.shape
    k = round(mask_ratio * n)
    mask = np.zeros((b, n), dtype=bool)
    for i in range(b):
        ids = rng.choice(n, size=k, replace=False, p=weights[i] / weights[i].sum())
        mask[i, ids] = True
    return mask


def info_aware_mask_reference(
    rgb,
    dsm,
    patch_size: int = 16,
    dsm_valid=None,
    mask_ratio: float = 0.75,
    low_q: float = 0.2,
    high_q: float = 0.8,
    weights: Sequence[float] = (0.8, 0.5, 0.3),
    prefer: str = "mask_flat",
    value_scale: float = 1.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Scores -> bands -> weighted sampling, the whole pipeline of the per-patch reference."""
    scores = patch_scores_reference(rgb, dsm, patch_size, dsm_valid, value_scale)
    return sample_mask_reference(
        band_weights_reference(scores, low_q, high_q, weights, prefer), mask_ratio, rng
    )


def cross_modal_masks_reference(
    base_mask, p: float, rng: np.random.Generator | None = None, independent_base=None
) -> tuple[np.ndarray, np.ndarray]:
    """RGB keeps the base mask; every DSM patch still visible is also masked with probability p."""
    rng = np.random.default_rng() if rng is None else rng
    rgb_mask = np.atleast_2d(_numpy(base_mask)).astype(bool)
    dsm_mask = (rgb_mask if independent_base is None else np.atleast_2d(_numpy(independent_base))).astype(
        bool
    )
    dsm_mask = dsm_mask.copy()
    for i in range(dsm_mask.shape[0]):
        for j in range(dsm_mask.shape[1]):
            if not dsm_mask[i, j] and rng.random() < p:
                dsm_mask[i, j] = True
    return rgb_mask.copy(), dsm_mask
