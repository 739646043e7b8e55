"""The adversarial part of the loss (paper §3.2, after VQ-GAN): a PatchGAN discriminator, its hinge loss, the
adaptive weight that balances the GAN term against the reconstruction terms, and the LeCAM regulariser SPAE adds to
the discriminator (SPAE §4.1, φ = 1e-4; Tseng et al. 2021).

`PatchDiscriminator` is taming-transformers' NLayerDiscriminator with GroupNorm instead of BatchNorm, so that no
statistic depends on how a batch is split across processes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..tokenizer.network import group_count


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al.; taming-transformers' NLayerDiscriminator), GroupNorm, `n_layers` strided convs."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                nn.GroupNorm(group_count(ndf * mult), ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, x):
        return self.main(x)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_weight(nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, max_weight: float = 1e4):
    """||∇_last nll|| / ||∇_last g_loss|| (VQ-GAN eq. 7), detached."""
    g1 = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g2 = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (g1.norm() / (g2.norm() + 1e-4)).clamp(0.0, max_weight).detach()


class LeCAM(nn.Module):
    """LeCAM regularisation of the discriminator (Tseng et al., CVPR 2021, eq. 3 in the form of the authors' code):

        R = E[relu(D(x) − α_F)²] + E[relu(α_R − D(x̂))²]

    where α_R and α_F are exponential moving averages (decay 0.99, from 0) of the discriminator's mean output on real
    and on reconstructed images, updated before R is computed. The averages are buffers, saved and resumed with the
    discriminator (`TrainConfig.lecam_weight` > 0 attaches this module to it)."""

    def __init__(self, decay: float = 0.99):
        super().__init__()
        self.decay = decay
        self.register_buffer("ema", torch.zeros(2))  # α_R, α_F

    def forward(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            means = torch.stack([logits_real.detach().float().mean(), logits_fake.detach().float().mean()])
            self.ema.mul_(self.decay).add_((1 - self.decay) * means.to(self.ema.device))
        alpha_r, alpha_f = self.ema[0], self.ema[1]
        return F.relu(logits_real - alpha_f).pow(2).mean() + F.relu(alpha_r - logits_fake).pow(2).mean()
