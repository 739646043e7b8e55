"""The order of training batches and the learning-rate schedule.

Batches are *global* and their order is a fixed function of (seed, step): this is what lets `--resume` continue the
same loss curve after a kill, and lets 2 processes × 16 images see exactly what 1 process × 32 sees.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler

from ..errors import V2LError
from .config import TrainConfig


class GlobalBatchSampler(Sampler):
    """Global batches in a fixed order: epoch e is a permutation seeded by (seed, e); starts at any step."""

    def __init__(self, n: int, batch_size: int, seed: int, steps: int, start_step: int = 0):
        if n < batch_size:
            raise V2LError(f"{n} training images are fewer than the batch size {batch_size}: lower --batch-size.")
        self.n, self.bs, self.seed, self.steps, self.start = n, batch_size, seed, steps, start_step
        self.batch_size = batch_size  # Accelerate's split_batches reads it to cut each global batch per process
        self.per_epoch = n // batch_size  # the last partial batch of each epoch is dropped

    def batch(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.per_epoch)
        g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        return perm[k * self.bs : (k + 1) * self.bs].tolist()

    def __iter__(self):
        for step in range(self.start, self.steps):
            yield self.batch(step)

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


def lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f
