"""MSSDF information-aware masking: batched torch path vs the per-patch OpenCV/numpy reference."""

import numpy as np
import pytest
import torch

from backbones.mssdf import masking
from backbones.mssdf.masking import (
    band_weights,
    cross_modal_masks,
    curriculum_p,
    info_aware_mask,
    mssdf_masks,
    patch_scores,
    sample_mask,
)
from backbones.mssdf.masking_reference import (
    band_weights_reference,
    cross_modal_masks_reference,
    patch_scores_reference,
    sample_mask_reference,
)


def _images(b=3, h=48, w=64, seed=0, dtype=torch.float64):
    """Smooth-ish RGB + DSM with rectangles, ~20% nodata (NaN heights there), in ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(b, 3, h // 8, w // 8, generator=g, dtype=dtype)
    rgb = torch.nn.functional.interpolate(rgb, size=(h, w), mode="bilinear", align_corners=False)
    rgb = (0.8 * rgb + 0.2 * torch.rand(b, 3, h, w, generator=g, dtype=dtype)).clamp(0, 1)
    rgb[:, :, 5:20, 10:30] = 0.7  # a flat roof: zero-gradient patches
    dsm = 50 + 20 * torch.rand(b, 1, h, w, generator=g, dtype=dtype)
    dsm[:, :, 5:20, 10:30] += 12
    valid = torch.rand(b, 1, h, w, generator=g) > 0.2
    return rgb, torch.where(valid, dsm, torch.full_like(dsm, float("nan"))), valid


@pytest.mark.parametrize("value_scale", [1.0, 255.0])
def test_scores_match_reference_float64(value_scale):
    rgb, dsm, valid = _images()
    ref = patch_scores_reference(rgb, dsm, 16, valid, value_scale)
    got = patch_scores(rgb, dsm, 16, valid, value_scale)
    assert got.shape == (3, 12) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-12)
    # several chunk sizes (last chunk shorter) give the same scores
    np.testing.assert_allclose(
        patch_scores(rgb, dsm, 16, valid, value_scale, chunk_size=2).numpy(), ref, rtol=1e-5, atol=1e-12
    )


def test_elementwise_path_matches_reference(monkeypatch):
    # the path used on GPU (or when fp32 matmul may be downcast): elementwise grey, no matmul
    monkeypatch.setattr(masking, "_exact_matmul", lambda device: False)
    rgb, dsm, valid = _images(seed=2)
    ref = patch_scores_reference(rgb, dsm, 16, valid)
    np.testing.assert_allclose(patch_scores(rgb, dsm, 16, valid).numpy(), ref, rtol=1e-5, atol=1e-12)


def test_scores_match_reference_float32_and_without_nodata():
    rgb, dsm, valid = _images(b=2, h=32, w=32, seed=1, dtype=torch.float32)
    dsm = torch.where(valid, dsm, 60.0)  # NaN heights are only defined when marked invalid
    ref = patch_scores_reference(rgb, dsm, 8)
    got = patch_scores(rgb, dsm, 8)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy(), ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())


def test_dsm_edge_cases_contribute_nothing():
    rgb, _, _ = _images(b=2, h=32, w=32)
    ref_rgb_only = patch_scores_reference(rgb, torch.zeros(2, 1, 32, 32, dtype=torch.float64), 16)
    flat = torch.full((2, 1, 32, 32), 7.0, dtype=torch.float64)
    none_valid = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
    np.testing.assert_allclose(patch_scores(rgb, flat, 16).numpy(), ref_rgb_only, rtol=1e-12)
    np.testing.assert_allclose(patch_scores(rgb, flat * 3, 16, none_valid).numpy(), ref_rgb_only, rtol=1e-12)
    # nodata filled with the valid mean: holes in a flat DSM make no gradient, wild values change nothing
    _, dsm, valid = _images(b=2, h=32, w=32)
    holes = torch.where(valid, flat, torch.full_like(flat, -9999.0))
    np.testing.assert_allclose(patch_scores(rgb, holes, 16, valid).numpy(), ref_rgb_only, rtol=1e-12)
    a = patch_scores(rgb, torch.where(valid, dsm, torch.full_like(dsm, -9999.0)), 16, valid)
    np.testing.assert_allclose(a.numpy(), patch_scores(rgb, dsm, 16, valid).numpy(), rtol=1e-12)


def test_band_weights_match_reference_and_prefer():
    scores = torch.rand(4, 400, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for prefer in ("mask_flat", "mask_informative"):
        np.testing.assert_array_equal(
            band_weights(scores, prefer=prefer).numpy(), band_weights_reference(scores, prefer=prefer)
        )
    w = band_weights(scores)
    assert torch.equal((w == 0.8).sum(1), torch.full((4,), 80))
    assert torch.equal((w == 0.3).sum(1), torch.full((4,), 80))
    with pytest.raises(ValueError):
        band_weights(scores, prefer="mask_everything")


def test_exact_number_masked():
    rgb, dsm, valid = _images(b=2, h=320, w=320, dtype=torch.float32)
    mask = info_aware_mask(rgb, dsm, dsm_valid=valid, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (2, 400) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [300, 300]
    w = torch.rand(5, 37, generator=torch.Generator().manual_seed(1)) + 0.1
    for ratio in (0.0, 0.4, 0.75, 1.0):
        assert sample_mask(w, ratio).sum(1).tolist() == [round(ratio * 37)] * 5


def _band_frequencies(mask: np.ndarray, bands: np.ndarray) -> np.ndarray:
    return np.array([mask[:, bands == b].mean() for b in range(3)])


@pytest.mark.parametrize("prefer", ["mask_flat", "mask_informative"])
def test_band_masking_frequencies_match_weighted_sampling(prefer):
    # one image with known bands: a permutation of 0..399 -> 80 low, 240 mid, 80 high-information
    perm = np.random.default_rng(0).permutation(400)
    scores = torch.tensor(perm, dtype=torch.float64)[None]
    bands = np.where(perm < 80, 0, np.where(perm >= 320, 2, 1))
    w = band_weights(scores, prefer=prefer)
    draws = sample_mask(w.expand(2000, -1), 0.75, torch.Generator().manual_seed(0)).numpy()
    got = _band_frequencies(draws, bands)
    # expected inclusion frequencies: Monte Carlo of the numpy sampler used by the official code
    ref_w = band_weights_reference(scores.numpy(), prefer=prefer)
    expected = _band_frequencies(
        sample_mask_reference(np.repeat(ref_w, 4000, 0), 0.75, np.random.default_rng(1)), bands
    )
    np.testing.assert_allclose(got, expected, atol=0.01)
    assert got[0] * 80 + got[1] * 240 + got[2] * 80 == pytest.approx(300)
    if prefer == "mask_flat":
        assert got[0] > got[1] + 0.05 > got[2] + 0.1  # flat patches masked most
    else:
        assert got[2] > got[1] + 0.05 > got[0] + 0.1


def test_determinism_with_generator():
    rgb, dsm, valid = _images(b=2, h=64, w=64, dtype=torch.float32)
    a = info_aware_mask(rgb, dsm, dsm_valid=valid, generator=torch.Generator().manual_seed(5))
    b = info_aware_mask(rgb, dsm, dsm_valid=valid, generator=torch.Generator().manual_seed(5))
    c = info_aware_mask(rgb, dsm, dsm_valid=valid, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    m1 = mssdf_masks(rgb, dsm, 0.3, dsm_valid=valid, generator=torch.Generator().manual_seed(5))
    m2 = mssdf_masks(rgb, dsm, 0.3, dsm_valid=valid, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(m1, m2))


@pytest.mark.parametrize("p", [0.1, 0.4])
def test_cross_modal_masks(p):
    gen = torch.Generator().manual_seed(0)
    base = sample_mask(torch.ones(200, 400), 0.75, gen)
    rgb_mask, dsm_mask = cross_modal_masks(base, p, gen)
    assert torch.equal(rgb_mask, base)
    assert bool((dsm_mask >= base).all())  # DSM mask contains the base mask
    extra = (dsm_mask & ~base).sum() / (~base).sum()
    assert float(extra) == pytest.approx(p, abs=0.02)
    # reference gives the same rate
    _, ref_dsm = cross_modal_masks_reference(base.numpy(), p, np.random.default_rng(0))
    assert (ref_dsm & ~base.numpy()).sum() / (~base.numpy()).sum() == pytest.approx(p, abs=0.02)
    # independent base for the DSM
    other = sample_mask(torch.ones(200, 400), 0.75, gen)
    rgb_mask, dsm_mask = cross_modal_masks(base, p, gen, independent_base=other)
    assert torch.equal(rgb_mask, base) and bool((dsm_mask >= other).all())
    assert not bool((dsm_mask >= base).all())
    with pytest.raises(ValueError):
        cross_modal_masks(base, 1.5)


def test_mssdf_masks_independent():
    rgb, dsm, valid = _images(b=2, h=64, w=64, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    rgb_mask, dsm_mask = mssdf_masks(rgb, dsm, 0.0, independent=True, dsm_valid=valid, generator=gen)
    assert rgb_mask.sum(1).tolist() == [12, 12] and dsm_mask.sum(1).tolist() == [12, 12]
    rgb_mask, dsm_mask = mssdf_masks(rgb, dsm, 0.5, dsm_valid=valid, generator=gen)
    assert bool((dsm_mask >= rgb_mask).all())


def test_curriculum_p():
    got = [curriculum_p(e) for e in (0, 9, 10, 59, 60, 100)]
    assert got == pytest.approx([0.1, 0.1, 0.2, 0.6, 0.7, 0.7])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rgb, dsm, valid = _images(b=3, h=64, w=64, dtype=torch.float32)
    cpu = patch_scores(rgb, dsm, 16, valid)
    gpu = patch_scores(rgb.cuda(), dsm.cuda(), 16, valid.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-6)
    gen = torch.Generator(device="cuda").manual_seed(0)
    rgb_mask, dsm_mask = mssdf_masks(rgb.cuda(), dsm.cuda(), 0.2, dsm_valid=valid.cuda(), generator=gen)
    assert rgb_mask.is_cuda and rgb_mask.sum(1).tolist() == [12, 12, 12]
    assert bool((dsm_mask >= rgb_mask).all())
