"""ST-LPIPS's network (shift-tolerant LPIPS, Ghildyal & Liu, ECCV 2022): the evaluation metric of `v2l.eval.metrics`
and an optional perceptual training loss (`v2l.training.losses`), so it sits with the other frozen networks.

Standard LPIPS is not possible offline (its AlexNet/VGG backbone comes from torchvision's downloader). The
`stlpips-pytorch` package ships the complete ST-LPIPS weights (AlexNet backbone + linear heads) but imports
torchvision, which does not exist for this CPU torch; so we define the same network here and load its weight file
(key for key).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MissingPackageError


class _BlurDownsample(nn.Module):
    """Binomial [1, 2, 1] blur with reflection padding 2, then stride 2 (anti-aliased down-sampling)."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        filt = (a[:, None] * a[None, :]) / 16.0
        self.register_buffer("filt", filt[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x):
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


def _seq(start: int, *mods: nn.Module) -> nn.Sequential:
    s = nn.Sequential()
    for i, m in enumerate(mods):
        s.add_module(str(start + i), m)
    return s


class _ShiftTolerantAlexNet(nn.Module):
    def __init__(self):
        super().__init__()
        relu = lambda: nn.ReLU(inplace=False)  # noqa: E731
        self.slice1 = _seq(0, nn.Conv2d(3, 64, 11, 1, 2), _BlurDownsample(64), relu())
        self.slice2 = _seq(3, nn.MaxPool2d(3, 1), _BlurDownsample(64), nn.Conv2d(64, 192, 5, padding=2), relu())
        self.slice3 = _seq(7, nn.MaxPool2d(3, 1), _BlurDownsample(192), nn.Conv2d(192, 384, 3, padding=1), relu())
        self.slice4 = _seq(11, nn.Conv2d(384, 256, 3, padding=1), relu())
        self.slice5 = _seq(13, nn.Conv2d(256, 256, 3, padding=1), relu())

    def forward(self, x):
        outs = []
        for s in (self.slice1, self.slice2, self.slice3, self.slice4, self.slice5):
            x = s(x)
            outs.append(x)
        return outs


class _Scaling(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])

    def forward(self, x):
        return (x - self.shift) / self.scale


class _Lin(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.model = nn.Sequential()
        self.model.add_module("0", nn.Identity())  # dropout in the original; identity at evaluation
        self.model.add_module("1", nn.Conv2d(c, 1, 1, bias=False))

    def forward(self, x):
        return self.model(x)


def stlpips_weights_path() -> Path:
    spec = importlib.util.find_spec("stlpips_pytorch")  # located, not imported: it imports torchvision
    if spec is None or spec.origin is None:
        raise MissingPackageError(
            "ST-LPIPS needs the weights of stlpips-pytorch: run `pip install --no-deps stlpips-pytorch==0.0.2`."
        )
    return Path(spec.origin).parent / "weights" / "vST0.0" / "alex_shift_tolerant.pth"


class STLPIPS(nn.Module):
    """ST-LPIPS (AlexNet, shift-tolerant, v0.1 scaling): per-image distance of images in [−1, 1]; lower is closer."""

    name = "st-lpips-alex"  # as a training loss (`--perceptual stlpips`), recorded in the run's config

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        self.scaling_layer = _Scaling()
        self.net = _ShiftTolerantAlexNet()
        self.lins = nn.ModuleList([_Lin(c) for c in (64, 192, 384, 256, 256)])
        sd = torch.load(weights or stlpips_weights_path(), map_location="cpu", weights_only=True)
        sd = {k.replace("lin", "lins.", 1) if k.startswith("lin") else k: v for k, v in sd.items()}
        self.load_state_dict(sd, strict=True)
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = self.net(self.scaling_layer(x.float())), self.net(self.scaling_layer(y.float()))
        total = 0.0
        for lin, a, b in zip(self.lins, fx, fy, strict=True):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((a - b) ** 2).mean(dim=(2, 3))
        return total.flatten()
