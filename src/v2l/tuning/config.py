"""LoRA tuning settings (paper appendix A, "Tuning LLaMA-2 with the V2L Tokenizer"): validated when built.

The paper's values are the defaults: LoRA on the query and key projections, r = 4, α = 32; Adam at 3e-4, a linear
warm-up (5 epochs in the paper) then a half-cycle cosine decay; 12 classes. The paper does not give LoRA dropout
(peft's default, 0, is ours) nor the batch size. The warm-up is given in epochs, as the paper gives it; the CPU recipe
trains for far fewer epochs than the paper's 100K iterations, so its warm-up is a fraction of an epoch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..config import check_choice, check_range
from ..errors import ConfigError

MIXED_PRECISION = ("no", "bf16", "fp16")


@dataclass
class TuneConfig:
    llm: str = "smollm2-135m"  # the causal LM the adapter is for (a preset, a folder or a hub id)
    tokenizer: str = "cpu"  # the V2L tokenizer whose tokens it reads (a folder or `cpu`)
    data: str = "tiny-imagenet-200"
    split: str = "train"
    classes: int = 12  # how many of v2l's 160 training classes (`tuning_classes`); the paper: 12 ImageNet classes
    wnids: tuple[str, ...] = ()  # the classes by name instead (overrides `classes`)
    per_class: int = 100  # training images per class (0 = all)
    prefix_words: int = 0  # global words in the text prefix (0 = all the tokenizer gives, K_g)
    targets: tuple[str, ...] = ("q_proj", "k_proj")  # the paper: query and key projections
    r: int = 4
    alpha: float = 32.0
    dropout: float = 0.0
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's defaults (the paper names Adam only)
    epochs: int = 1
    warmup_epochs: float = 0.1  # the paper: 5 epochs of linear warm-up
    batch_size: int = 8  # global, across all processes
    seed: int = 0
    mixed_precision: str = "no"  # "bf16" uses the CPU's bfloat16 units (AMX / AVX-512 BF16) or a GPU's
    log_every: int = 5
    checkpoint_every: int = 25
    keep_checkpoints: int = 2

    def __post_init__(self):
        own = "TuneConfig"
        self.targets, self.wnids, self.betas = tuple(self.targets), tuple(self.wnids), tuple(self.betas)
        check_range("classes", self.classes, low=1, high=160, owner=own, cli=True)
        check_range("per_class", self.per_class, low=0, owner=own, cli=True)
        check_range("prefix_words", self.prefix_words, low=0, owner=own, cli=True)
        check_range("r", self.r, low=1, high=4096, owner=own, cli=True)
        check_range("alpha", self.alpha, low=0.0, owner=own, cli=True)
        check_range("dropout", self.dropout, low=0.0, high=0.99, owner=own, cli=True)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(
                f"--lr {self.lr!r} is invalid (TuneConfig.lr): use a positive learning rate such as 3e-4."
            )
        if len(self.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            raise ConfigError(f"TuneConfig.betas {self.betas!r} is invalid: use two numbers in [0, 1).")
        check_range("epochs", self.epochs, low=1, high=10_000, owner=own, cli=True)
        check_range("warmup_epochs", self.warmup_epochs, low=0.0, high=float(self.epochs), owner=own, cli=True)
        check_range("batch_size", self.batch_size, low=1, high=65536, owner=own, cli=True)
        check_range("seed", self.seed, low=0, owner=own, cli=True)
        check_range("log_every", self.log_every, low=1, owner=own, cli=True)
        check_range("checkpoint_every", self.checkpoint_every, low=1, owner=own, cli=True)
        check_range("keep_checkpoints", self.keep_checkpoints, low=1, owner=own)
        check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION, owner=own, cli=True)
        if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise ConfigError(
                f"--targets {','.join(map(str, self.targets))!r} is invalid: name the LLM's modules to adapt, "
                "such as q_proj,k_proj."
            )
        for w in self.wnids:
            if not isinstance(w, str) or not w:
                raise ConfigError(f"TuneConfig.wnids holds {w!r}: use class ids such as n01443537.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def steps(self, images: int) -> int:
        """Optimiser steps of the run: every epoch is ⌈images / batch⌉ batches (the last one may be smaller)."""
        return self.epochs * math.ceil(images / self.batch_size)

    def warmup_steps(self, images: int) -> int:
        return round(self.warmup_epochs * math.ceil(images / self.batch_size))


def lr_factor(step: int, warmup: int, total: int) -> float:
    """The paper's schedule: linear warm-up over `warmup` steps, then a half-cycle cosine from 1 to 0 at `total`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))
