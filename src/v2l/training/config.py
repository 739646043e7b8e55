"""Training settings (paper §4.1, appendix A): optimiser, schedule, loss weights, checkpoints. Validated when built."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..config import check_choice, check_range
from ..errors import ConfigError
from .losses import PERCEPTUAL_LOSSES

MIXED_PRECISION = ("no", "bf16", "fp16")
TRAIN_ONLY = ("all", "decoder")  # what the generator's optimiser updates


@dataclass
class TrainConfig:
    preset: str = "cpu"
    steps: int = 3000
    batch_size: int = 32  # global, across all processes
    lr: float = 5e-4  # paper: Adam 5e-4 (official code 4.5e-4)
    betas: tuple[float, float] = (0.5, 0.9)  # VQ-GAN / official code; the paper does not say
    warmup_steps: int = 150  # paper: 5 of 100 epochs; we keep the same 5 % proportion
    min_lr_ratio: float = 0.0  # half-cycle cosine to 0
    grad_clip: float = 1.0
    perceptual_weight: float = 1.0  # λ1 (§3.2)
    perceptual: str = "auto"  # auto (real LPIPS when installed with its weights, else effnet), lpips, effnet, stlpips
    gan_weight: float = 0.1  # λ2 (§3.2)
    disc_start: int = 2000  # step at which the GAN loss starts (official code: 10,000 on ImageNet)
    disc_layers: int = 2
    lecam_weight: float = 0.0  # φ: LeCAM regulariser on the discriminator (SPAE §4.1 uses 1e-4; 0 = off)
    seed: int = 0
    mixed_precision: str = "no"  # "bf16" / "fp16" on GPU
    log_every: int = 10
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    snapshot_steps: tuple[int, ...] = ()  # also export the model as a tokenizer folder at these steps (ablations
    # trained for fewer steps are compared with the main run at the same step)
    num_workers: int = 0
    init: str = ""  # a tokenizer folder (or `cpu`) whose weights start the run; "" = random initialisation
    train_only: str = "all"  # "decoder": the encoder and projector stay as `init` left them (see trainer.py)

    def __post_init__(self):
        own = "TrainConfig"
        self.betas = tuple(self.betas)
        self.snapshot_steps = tuple(self.snapshot_steps)
        check_range("steps", self.steps, low=1, owner=own, cli=True)
        check_range("batch_size", self.batch_size, low=1, owner=own, cli=True)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr {self.lr!r} is invalid ({own}.lr): use a positive learning rate such as 5e-4.")
        if len(self.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            raise ConfigError(f"{own}.betas {self.betas!r} is invalid: use two numbers in [0, 1).")
        check_range("warmup_steps", self.warmup_steps, low=0, owner=own, cli=True)
        check_range("min_lr_ratio", self.min_lr_ratio, low=0.0, high=1.0, owner=own)
        check_range("grad_clip", self.grad_clip, low=0.0, owner=own)
        check_range("perceptual_weight", self.perceptual_weight, low=0.0, owner=own, cli=True)
        check_range("gan_weight", self.gan_weight, low=0.0, owner=own, cli=True)
        check_range("disc_start", self.disc_start, low=0, owner=own, cli=True)
        check_range("disc_layers", self.disc_layers, low=1, owner=own)
        check_range("lecam_weight", self.lecam_weight, low=0.0, owner=own, cli=True)
        check_range("seed", self.seed, low=0, owner=own, cli=True)
        check_range("log_every", self.log_every, low=1, owner=own, cli=True)
        check_range("checkpoint_every", self.checkpoint_every, low=1, owner=own, cli=True)
        check_range("keep_checkpoints", self.keep_checkpoints, low=1, owner=own)
        check_range("num_workers", self.num_workers, low=0, owner=own)
        check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION, owner=own, cli=True)
        check_choice("train_only", self.train_only, TRAIN_ONLY, owner=own, cli=True)
        if self.train_only != "all" and not self.init:
            raise ConfigError(
                f"--train-only {self.train_only} fine-tunes a trained model: pass --init with its "
                "folder (or cpu for the shipped one)."
            )
        check_choice("perceptual", self.perceptual, PERCEPTUAL_LOSSES.names(), owner=own, cli=True)
        for st in self.snapshot_steps:
            check_range("snapshot_steps", st, low=1, high=self.steps, owner=own)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
