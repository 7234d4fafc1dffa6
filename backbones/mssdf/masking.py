"""MSSDF information-aware masking, batched in torch (CPU or GPU).

Hand-written on purpose: no maintained library implements MSSDF's masking (the official repository,
github.com/CVEO/MSSDF, scores patches in a per-sample numpy/OpenCV loop inside its dataset), so it is
re-derived here as plain tensor ops. ``masking_reference.py`` is the readable per-patch definition the
tests compare against; its docstring states the exact semantics (grey formula, DSM scaling and nodata
fill, whole-image Sobel with BORDER_REFLECT_101, score = grad + variance summed over RGB and DSM).

Pipeline: :func:`patch_scores` -> :func:`band_weights` (Q20/Q80 bands) -> :func:`sample_mask`
(Gumbel-top-k) -> :func:`cross_modal_masks` (extra DSM masking with probability ``p``, scheduled by
:func:`curriculum_p`). :func:`info_aware_mask` and :func:`mssdf_masks` chain them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

GREY_COEFFS = (0.299, 0.587, 0.114)
PREFERENCES = ("mask_flat", "mask_informative")


def _exact_matmul(device: torch.device) -> bool:
    """Matmul is the fastest CPU grey conversion, but only if fp32 matmul is not downcast."""
    if device.type != "cpu":
        return False  # CUDA may use TF32; elementwise ops are cheap there anyway
    prec = getattr(getattr(torch.backends.mkldnn, "matmul", None), "fp32_precision", "none")
    return prec in ("none", "ieee")


def _chunk_sums(
    rgb: Tensor,
    dsm: Tensor,
    valid: Tensor | None,
    p: int,
    fold: float,
    coeffs: Tensor | None,
    sum_x: Tensor,
    sum_m: Tensor,
) -> None:
    """Patch sums for a few images at once, so every intermediate stays in cache.

    Writes sum_x[k] = sum of the grey (k=0) / scaled DSM (k=1) values per patch and
    sum_m[k] = sum of |grad|/sqrt2 + fold * value^2, both (2, c, h/p, w/p). ``coeffs`` is the (1, 3)
    grey matrix when the matmul path is allowed, else None (elementwise grey).
    """
    c, _, h, w = rgb.shape
    # x[0] = grey image, x[1] = scaled DSM: one buffer, so the Sobel ops below run once for both.
    x = torch.empty((2, c, h, w), dtype=rgb.dtype, device=rgb.device)
    if coeffs is not None:
        torch.matmul(coeffs, rgb.reshape(c, 3, h * w), out=x[0].view(c, 1, h * w))
    else:
        torch.mul(rgb[:, 0], GREY_COEFFS[0], out=x[0])
        x[0].add_(rgb[:, 1], alpha=GREY_COEFFS[1]).add_(rgb[:, 2], alpha=GREY_COEFFS[2])
    d = dsm.reshape(c, h * w)
    x1 = x[1].view(c, h * w)
    if valid is not None:  # nodata -> mean of the valid pixels (never 0 or a wrapped value)
        vf = valid.reshape(c, h * w).to(x.dtype)  # 0/1: arithmetic on it is ~3x faster than where()
        torch.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0, out=x1).mul_(vf)  # NaN nodata can't leak
        mean = x1.sum(1, keepdim=True) / vf.sum(1, keepdim=True).clamp_min(1)
        x1.addcmul_(vf.sub_(1), mean, value=-1)  # invalid pixels: 0 + mean, valid ones: unchanged
        d = x1  # the fill lies inside [min, max] of the valid pixels, so min/max are unchanged
    lo = d.amin(1, keepdim=True)
    span = (d.amax(1, keepdim=True) - lo).clamp_min_(torch.finfo(x.dtype).tiny)
    torch.sub(d, lo, out=x1).div_(span)  # a constant DSM gives exactly 0 / tiny = 0

    # Sobel via the 2x2 box sum q: with a=q[y,x], b=q[y,x-1], c=q[y-1,x], d=q[y-1,x-1] (padded
    # coordinates) gx = (a-d) + (c-b) and gy = (a-d) - (c-b), hence gx^2 + gy^2 = 2((a-d)^2 + (c-b)^2).
    # BORDER_REFLECT_101 on the image is exactly edge replication of q, so no padded image is needed.
    hs = torch.add(x[..., 1:], x[..., :-1])
    q = x.new_empty((2, c, h + 1, w + 1))
    torch.add(hs[..., 1:, :], hs[..., :-1, :], out=q[..., 1:-1, 1:-1])
    del hs
    q[..., 0, 1:-1] = q[..., 1, 1:-1]
    q[..., -1, 1:-1] = q[..., -2, 1:-1]
    q[..., 0] = q[..., 1]
    q[..., -1] = q[..., -2]
    mag = F.mse_loss(q[..., 1:, 1:], q[..., :-1, :-1], reduction="none")
    mag.add_(F.mse_loss(q[..., :-1, 1:], q[..., 1:, :-1], reduction="none"))
    del q
    # |grad| / sqrt 2. The clamp costs a light pass but saves several: sqrt of exact zeros (every
    # flat area) takes a ~10x slower path on CPU; sqrt(tiny) ~ 1e-19 (f32) is far below any score.
    mag.clamp_min_(torch.finfo(x.dtype).tiny).sqrt_()
    # Fold the squares into the same map: one pooled channel gives mean|grad| and E[x^2] together.
    mag.addcmul_(x, x, value=fold)

    # Patch sums: first the p rows of each patch (a reduction over whole contiguous rows, the fast
    # direction), then the p columns on 16x less data. Faster than avg_pool2d or a matmul with ones.
    ph, pw = h // p, w // p
    torch.sum(x.view(2, c, ph, p, w).sum(3).view(2, c, ph, pw, p), 4, out=sum_x)
    torch.sum(mag.view(2, c, ph, p, w).sum(3).view(2, c, ph, pw, p), 4, out=sum_m)


@torch.no_grad()
def patch_scores(
    rgb: Tensor,
    dsm: Tensor,
    patch_size: int = 16,
    dsm_valid: Tensor | None = None,
    value_scale: float = 1.0,
    chunk_size: int | None = None,
) -> Tensor:
    """Information score per patch, (B, N) with N = (H/p)(W/p) in row-major patch order.

    score = s * (mean|Sobel(grey)| + mean|Sobel(dsm)|) + s^2 * (var(grey) + var(dsm)): one score
    covering both modalities. ``rgb`` (B,3,H,W) in [0, 1]; ``dsm`` (B,1,H,W) raw heights, min-max
    scaled per image over ``dsm_valid`` (B,1,H,W bool, True = valid). Invalid pixels take the valid
    mean, so nodata borders create no fake gradients. NaN heights must be marked invalid (with a
    mask, non-finite heights read as 0 before the fill; without one, NaN propagates).
    ``value_scale`` s = 1 scores [0, 1] intensities (the variance term is then small next to the
    gradient term); 255 reproduces the official code's uint8 scale. Float32 results (float64 when
    an input is float64, which tests use to match the reference to ~1e-15). ``chunk_size`` images
    are processed together: default 8 on CPU, where that keeps intermediates in cache, and the
    whole batch elsewhere.
    """
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb must be (B,3,H,W), got {tuple(rgb.shape)}")
    b, _, h, w = rgb.shape
    if tuple(dsm.shape) != (b, 1, h, w):
        raise ValueError(f"dsm must be {(b, 1, h, w)}, got {tuple(dsm.shape)}")
    if dsm_valid is not None and tuple(dsm_valid.shape) != (b, 1, h, w):
        raise ValueError(f"dsm_valid must be {(b, 1, h, w)}, got {tuple(dsm_valid.shape)}")
    if h % patch_size or w % patch_size or min(h, w) < 2:
        raise ValueError(f"image size {h}x{w} must be a multiple of patch_size={patch_size} and >= 2")
    dtype = torch.float64 if torch.float64 in (rgb.dtype, dsm.dtype) else torch.float32
    dev = rgb.device
    chunk = chunk_size or (8 if dev.type == "cpu" else max(b, 1))
    coeffs = torch.tensor([GREY_COEFFS], dtype=dtype, device=dev) if _exact_matmul(dev) else None
    p, s = patch_size, value_scale
    sums = torch.empty((2, 2, b, h // p, w // p), dtype=dtype, device=dev)  # (x | mag, modality, ...)
    for i in range(0, b, chunk):
        sl = slice(i, i + chunk)
        valid = None if dsm_valid is None else dsm_valid[sl].to(device=dev, dtype=torch.bool)
        rgb_c, dsm_c = rgb[sl].to(dtype), dsm[sl].to(device=dev, dtype=dtype)
        _chunk_sums(rgb_c, dsm_c, valid, p, s / math.sqrt(2), coeffs, sums[0, :, sl], sums[1, :, sl])
    # per modality: s*sqrt2*mean(|grad|/sqrt2 + s/sqrt2 * x^2) - s^2*E[x]^2 = s*mean|grad| + s^2*var
    mean_x = sums[0] / (p * p)
    score = sums[1].sum(0) * (s * math.sqrt(2) / (p * p)) - (mean_x * mean_x).sum(0) * (s * s)
    return score.reshape(b, -1)


def band_weights(
    scores: Tensor,
    low_q: float = 0.2,
    high_q: float = 0.8,
    weights: Sequence[float] = (0.8, 0.5, 0.3),
    prefer: str = "mask_flat",
) -> Tensor:
    """Masking weight per patch from its score band within its own image.

    Per image (row): score < Q(low_q) -> ``weights[0]``, score > Q(high_q) -> ``weights[2]``, else
    ``weights[1]`` (quantiles interpolated linearly, as ``np.percentile``). With the default
    ``prefer="mask_flat"`` (the official code) flat, low-information patches are masked most, so the
    visible tokens carry the information; ``"mask_informative"`` reverses the weights.
    """
    if prefer not in PREFERENCES:
        raise ValueError(f"prefer must be one of {PREFERENCES}, got {prefer!r}")
    if not 0.0 <= low_q <= high_q <= 1.0:
        raise ValueError(f"need 0 <= low_q <= high_q <= 1, got {low_q}, {high_q}")
    if len(weights) != 3 or min(weights) <= 0:
        raise ValueError(f"weights must be three positive numbers, got {weights}")
    w_low, w_mid, w_high = weights if prefer == "mask_flat" else tuple(weights)[::-1]
    s = scores if scores.is_floating_point() else scores.float()
    qs = torch.quantile(s, torch.tensor([low_q, high_q], dtype=s.dtype, device=s.device), dim=1)
    out = torch.full_like(s, w_mid)
    out = torch.where(s < qs[0].unsqueeze(1), torch.full_like(s, w_low), out)
    return torch.where(s > qs[1].unsqueeze(1), torch.full_like(s, w_high), out)


def sample_mask(
    weights: Tensor, mask_ratio: float = 0.75, generator: torch.Generator | None = None
) -> Tensor:
    """(B, N) bool, True = masked: round(mask_ratio * N) patches per image, without replacement.

    Gumbel-top-k: the k largest log(w) + Gumbel keys are distributed exactly like k successive
    weighted draws without replacement (``rng.choice(N, k, replace=False, p=w/w.sum())``), but for the
    whole batch in one ``topk``. Zero-weight patches are only taken when fewer than k are positive.
    ``generator`` must live on ``weights.device``.
    """
    b, n = weights.shape
    k = round(mask_ratio * n)
    if not 0 <= k <= n:
        raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}")
    expo = torch.empty((b, n), dtype=torch.float64, device=weights.device).exponential_(generator=generator)
    keys = weights.to(torch.float64).log() - expo.log()  # -log(Exp(1)) is a standard Gumbel
    mask = torch.zeros((b, n), dtype=torch.bool, device=weights.device)
    return mask.scatter_(1, keys.topk(k, dim=1).indices, True)


def info_aware_mask(
    rgb: Tensor,
    dsm: Tensor,
    patch_size: int = 16,
    dsm_valid: Tensor | None = None,
    mask_ratio: float = 0.75,
    low_q: float = 0.2,
    high_q: float = 0.8,
    weights: Sequence[float] = (0.8, 0.5, 0.3),
    prefer: str = "mask_flat",
    value_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Base mask (B, N) bool: :func:`patch_scores` -> :func:`band_weights` -> :func:`sample_mask`."""
    scores = patch_scores(rgb, dsm, patch_size, dsm_valid, value_scale)
    return sample_mask(band_weights(scores, low_q, high_q, weights, prefer), mask_ratio, generator)


def cross_modal_masks(
    base_mask: Tensor,
    p: float,
    generator: torch.Generator | None = None,
    independent_base: Tensor | None = None,
    min_visible: int = 0,
) -> tuple[Tensor, Tensor]:
    """(rgb_mask, dsm_mask): RGB keeps ``base_mask``; each still-visible DSM patch is also masked
    with probability ``p``, so the DSM branch must lean on RGB for what it lost.

    The DSM starts from ``base_mask`` (shared) or from ``independent_base`` (a second draw from the
    same scores, see :func:`mssdf_masks`). The returned ``rgb_mask`` is ``base_mask`` itself (bool).
    ``min_visible`` > 0 keeps at least that many DSM patches visible per sample (never more than the
    base mask leaves): :func:`reveal_to_floor`.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    rgb_mask = base_mask.bool()
    dsm_base = rgb_mask if independent_base is None else independent_base.bool()
    extra = torch.rand(dsm_base.shape, generator=generator, device=dsm_base.device) < p
    dsm_mask = dsm_base | extra
    if min_visible > 0:
        dsm_mask = reveal_to_floor(dsm_mask, dsm_base, min_visible, generator)
    return rgb_mask, dsm_mask


def reveal_to_floor(mask: Tensor, base: Tensor, min_visible: int, generator: torch.Generator | None = None) -> Tensor:
    """Unmask, uniformly at random, patches that ``mask`` hides but ``base`` shows, until each row has at
    least ``min_visible`` visible patches (or all of ``base``'s visible ones, if it has fewer).

    The extra masking is Bernoulli per patch, so a floor on its expectation alone would still leave some
    samples with almost nothing visible; this makes the floor hold for every sample.
    """
    candidates = mask & ~base
    target = (~base).sum(1).clamp(max=min_visible)
    need = (target - (~mask).sum(1)).clamp(min=0)
    keys = torch.rand(mask.shape, generator=generator, device=mask.device).masked_fill(~candidates, 2.0)
    rank = keys.argsort(1).argsort(1)  # 0 for the candidate with the smallest key, ...
    return mask & ~(candidates & (rank < need[:, None]))


def mssdf_masks(
    rgb: Tensor,
    dsm: Tensor,
    p: float,
    independent: bool = False,
    patch_size: int = 16,
    dsm_valid: Tensor | None = None,
    mask_ratio: float = 0.75,
    low_q: float = 0.2,
    high_q: float = 0.8,
    weights: Sequence[float] = (0.8, 0.5, 0.3),
    prefer: str = "mask_flat",
    value_scale: float = 1.0,
    generator: torch.Generator | None = None,
    min_dsm_visible: int = 0,
) -> tuple[Tensor, Tensor]:
    """(rgb_mask, dsm_mask) for one batch: scores computed once; ``independent=True`` draws a second
    base mask for the DSM from the same weights before the extra cross-modal masking, which keeps at
    least ``min_dsm_visible`` DSM patches visible per sample (:func:`cross_modal_masks`)."""
    scores = patch_scores(rgb, dsm, patch_size, dsm_valid, value_scale)
    w = band_weights(scores, low_q, high_q, weights, prefer)
    base = sample_mask(w, mask_ratio, generator)
    dsm_base = sample_mask(w, mask_ratio, generator) if independent else None
    return cross_modal_masks(base, p, generator, dsm_base, min_visible=min_dsm_visible)


#: Share of a tile's patches the scaled DSM curriculum keeps visible (``MaskingCurriculumHook(min_dsm_visible=
#: "scaled")``): 8 of 64 DSM tokens at 64 px / patch 8, half of what the 75 % base mask leaves. The official
#: cap p = 0.7 leaves 0.25 x 0.3 = 7.5 % in expectation (30 of 400 tokens at 320 px / patch 16, enough
#: context; about 5 of 64 at 64 px, and fewer in many samples, since the extra masking is per patch).
SCALED_MIN_DSM_VISIBLE = 0.125


def curriculum_p(epoch: float) -> float:
    """Extra DSM masking probability: 0.1 at epoch 0, +0.1 every 10 epochs, capped at 0.7."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return min(1 + math.floor(epoch / 10), 7) / 10
