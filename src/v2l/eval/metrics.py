"""Reconstruction metrics: PSNR and SSIM (torchmetrics) and ST-LPIPS (shift-tolerant LPIPS, Ghildyal & Liu, ECCV 2022).

Standard LPIPS is not possible offline (its AlexNet/VGG backbone comes from torchvision's downloader). The
`stlpips-pytorch` package ships the complete ST-LPIPS weights (AlexNet backbone + linear heads) but imports
torchvision, which does not exist for this CPU torch; so we define the same network here and load its weight file
(key for key). Every output calls it ST-LPIPS, never LPIPS.
"""

from __future__ import annotations

import torch

from ..backbones.stlpips import STLPIPS, stlpips_weights_path  # noqa: F401 - the metric's network, re-exported


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [−1, 1] (computed on [0, 1])."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    a, b = (x.float().clamp(-1, 1) + 1) / 2, (y.float().clamp(-1, 1) + 1) / 2
    return peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Gaussian window 11, σ 1.5) of images in [−1, 1] (computed on [0, 1])."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = (x.float().clamp(-1, 1) + 1) / 2, (y.float().clamp(-1, 1) + 1) / 2
    return structural_similarity_index_measure(a, b, data_range=1.0, reduction="none")
