"""Reconstruction metrics against independent references: PSNR and SSIM against scikit-image, the Fréchet distance
against the closed form for two Gaussians, and FID with the real InceptionV3."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from v2l.eval import frechet_distance, psnr, ssim
from v2l.eval.fid import feature_statistics, fid, inception_features


def _pairs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    y = (x + 0.2 * torch.randn(3, 3, 32, 32, generator=g)).clamp(-1, 1)
    return x, y


def test_psnr_and_ssim_equal_scikit_image():
    metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is a dev dependency (pip install -e .[dev])")
    x, y = _pairs()
    a, b = ((x + 1) / 2).permute(0, 2, 3, 1).double().numpy(), ((y + 1) / 2).permute(0, 2, 3, 1).double().numpy()
    want_psnr = [metrics.peak_signal_noise_ratio(a[i], b[i], data_range=1.0) for i in range(3)]
    # torchmetrics' SSIM: Gaussian window σ 1.5 (11 taps), K1 0.01, K2 0.03, no sample-covariance correction.
    want_ssim = [
        metrics.structural_similarity(
            a[i], b[i], data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        for i in range(3)
    ]
    np.testing.assert_allclose(psnr(x, y).numpy(), want_psnr, rtol=1e-4)
    np.testing.assert_allclose(ssim(x, y).numpy(), want_ssim, atol=2e-3)


def test_frechet_distance_equals_the_closed_form_for_two_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
    want = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()  # diagonal covariances
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(want, rel=1e-9)
    a = rng.normal(size=(5, 5))
    full = a @ a.T + np.eye(5)
    # A Gaussian and itself; and a shift by d, which adds exactly ‖d‖².
    assert frechet_distance(mu1, full, mu1, full) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(mu1, full, mu1 + 3.0, full) == pytest.approx(45.0, rel=1e-8)
    with pytest.raises(ValueError, match="two images"):
        feature_statistics(np.zeros((1, 4)))


def test_the_fast_trace_equals_scipys_matrix_square_root():
    """tr (Σ1 Σ2)^½ by the nuclear norm equals scipy.linalg.sqrtm's (full-rank and singular covariances), and the
    few-images path of `fid_from_features` equals the d × d formula."""
    from scipy import linalg

    from v2l.eval.fid import fid_from_features, trace_sqrt_product

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(30, 12)), rng.normal(size=(40, 12)) * 1.5 + 0.3
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    assert trace_sqrt_product(s1, s2) == pytest.approx(np.trace(np.real(linalg.sqrtm(s1 @ s2))), rel=1e-8)
    few_a, few_b = a[:5], b[:7]  # fewer images than dimensions: singular covariances
    f1, f2 = np.cov(few_a, rowvar=False), np.cov(few_b, rowvar=False)
    want = (
        ((few_a.mean(0) - few_b.mean(0)) ** 2).sum()
        + np.trace(f1)
        + np.trace(f2)
        - 2 * np.trace(np.real(linalg.sqrtm(f1 @ f2)))
    )
    assert fid_from_features(few_a, few_b) == pytest.approx(want, rel=1e-6)
    assert fid_from_features(a, b) == pytest.approx(
        frechet_distance(*feature_statistics(a), *feature_statistics(b)), rel=1e-9
    )
    assert fid_from_features(few_a, few_a) == pytest.approx(0.0, abs=1e-9)


def test_fid_with_the_real_inception_network():
    rng = np.random.default_rng(1)
    images = [
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).filter(ImageFilter.SMOOTH) for _ in range(6)
    ]
    feats = inception_features(images, batch_size=4)
    assert feats.shape == (6, 2048) and np.isfinite(feats).all() and feats.min() >= 0  # pool3 after ReLU
    blurred = [im.filter(ImageFilter.GaussianBlur(4)) for im in images]
    same, other = fid(images, images), fid(images, blurred)
    assert abs(same) < 1e-3 * other and other > 1.0
