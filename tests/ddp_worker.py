"""Run by tests/test_distributed.py under torchrun (or alone): trains the tiny tokenizer and writes the logged rows."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from v2l.codebooks import Codebook
from v2l.data import ImageFolder
from v2l.tokenizer import get_config
from v2l.training import TokenizerTrainData, TrainConfig, train


def main(codebook_dir: str, images: str, gids_file: str, out: str, steps: str) -> None:
    torch.set_num_threads(1)
    codebook = Codebook.load(codebook_dir)
    ds = ImageFolder(images)
    gids = load_file(gids_file)["global_ids"]
    data = TokenizerTrainData(ds, list(range(len(ds))), gids, resolution=16)
    cfg = TrainConfig(
        preset="tiny",
        steps=int(steps),
        batch_size=4,
        lr=2e-3,
        warmup_steps=2,
        disc_start=10**9,
        perceptual_weight=1.0,
        checkpoint_every=10**9,
        log_every=1,
    )
    rows = train(cfg, get_config("tiny"), codebook, data, out, progress=False)
    rank = int(__import__("os").environ.get("RANK", "0"))
    if rank == 0:
        Path(out, "rows.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    main(*sys.argv[1:])
