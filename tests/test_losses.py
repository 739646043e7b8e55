"""Perceptual-loss choice: real LPIPS when installed with its weights, the offline stand-ins otherwise."""

import sys
import types

import pytest
import torch

from v2l.errors import MissingPackageError, V2LError
from v2l.training import losses


def test_auto_falls_back_to_effnet_and_lpips_demand_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(losses, "lpips_available", lambda: False)
    assert losses.resolve_perceptual("auto") == "effnet"
    with pytest.raises(MissingPackageError, match="pip install lpips torchvision"):
        losses.resolve_perceptual("lpips")
    with pytest.raises(V2LError, match="auto, lpips, effnet, stlpips"):
        losses.resolve_perceptual("vgg")


def test_lpips_is_detected_only_with_package_torchvision_and_weights(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name in ("lpips", "torchvision") else real(name, *a)
    )
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert not losses.lpips_available()  # packages "there", weights missing
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / losses.VGG16_FILE).write_bytes(b"weights")
    assert losses.lpips_available()


def test_auto_uses_real_lpips_when_available(monkeypatch):
    calls = []

    class FakeLPIPS(torch.nn.Module):  # stands in for lpips.LPIPS, which needs torchvision + downloaded VGG16
        def __init__(self, net, verbose):
            super().__init__()
            calls.append(net)

        def forward(self, x, y):
            return ((x - y) ** 2).mean(dim=(1, 2, 3), keepdim=True)

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=FakeLPIPS))
    monkeypatch.setattr(losses, "lpips_available", lambda: True)
    loss = losses.perceptual_loss("auto")
    assert loss.name == "lpips-vgg" and calls == ["vgg"]  # VQ-GAN's LPIPS backbone
    x, y = torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8)
    assert loss(x, y).shape == (2,) and torch.allclose(loss(x, y), torch.ones(2))


@pytest.mark.slow
def test_stlpips_and_effnet_losses_train_the_input():
    for kind in ("stlpips", "effnet"):
        loss = losses.perceptual_loss(kind)
        x = torch.zeros(2, 3, 32, 32, requires_grad=True)
        y = torch.rand(2, 3, 32, 32) * 2 - 1
        d = loss(x, y)
        assert d.shape == (2,) and (d > 0).all()
        d.sum().backward()
        assert x.grad.abs().sum() > 0  # gradients reach the images; the network itself stays frozen
        assert not any(p.requires_grad for p in loss.parameters())
