"""Helpers shared by the benchmark scripts: timing, machine description, atomic result files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from v2l.machine import cpu_model, machine  # noqa: F401 - the one machine(), re-exported for the scripts

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parent.parent


def timed(fn, *args, repeat: int = 1, **kwargs):
    """(best seconds over `repeat` runs, last result)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best, out


def write_result(name: str, result: dict) -> Path:
    from v2l.paths import write_json_atomic

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    write_json_atomic(path, {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), **result})
    print(json.dumps(result, indent=2))
    return path


def update_results(name: str, result: dict) -> Path:
    """Merge `result` into RESULTS/name.json (other keys kept), atomically."""
    from v2l.paths import write_json_atomic

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    write_json_atomic(path, {**old, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), **result})
    return path


def pilot_setup():
    """What both fine-tune pilots (pilot_decoder_loss.py, pilot_finetune.py) start from: the tokenizer named by
    `V2L_PILOT_TOKENIZER` (default: the shipped one), 1,024 training images (seed 0) with their global ids, 200
    training-class val images (never the held-out classes) with theirs, and `codes(x)`, the encoder's local token ids
    in batches of 32 without gradients."""
    import random

    from v2l.data import WebDatasetShards, select_indices
    from v2l.tokenizer import ImageTokenizer
    from v2l.tokenizer.image_tokenizer import to_tensor
    from v2l.training import training_data

    torch.set_num_threads(2)
    torch.manual_seed(0)
    tok = ImageTokenizer.from_pretrained(os.environ.get("V2L_PILOT_TOKENIZER", "cpu"), progress=False)
    net = tok.net.eval()
    ds = training_data(tok.vl, tok.codebook, 64, net.config.num_global, per_class=100, progress=False)
    train_idx = random.Random(0).sample(range(len(ds)), 1024)
    vds = WebDatasetShards("tiny-imagenet-200", split="val", root=os.environ.get("V2L_DATA", "../shared/data"))
    vimgs = [vds[i].image for i in select_indices(vds, "train", 0, data_name="tiny-imagenet-200")[:200]]

    def codes(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([net.encode(x[i : i + 32])[1] for i in range(0, len(x), 32)])

    x_train = torch.stack([ds[i]["pixels"] for i in train_idx])
    g_train = torch.stack([ds[i]["global_ids"] for i in train_idx])
    return net, x_train, g_train, to_tensor(vimgs, 64), tok.global_ids(vimgs), codes


def decoded_psnr(net, codes: torch.Tensor, global_ids: torch.Tensor, target: torch.Tensor, batch: int = 50) -> float:
    """Mean PSNR (`v2l.eval.psnr`) of what the decoder draws from `codes` and `global_ids` against `target`, in
    batches, without gradients: the pilots' score."""
    from v2l.eval import psnr

    with torch.no_grad():
        return (
            torch.cat(
                [
                    psnr(net.decode_tokens(codes[i : i + batch], global_ids[i : i + batch]), target[i : i + batch])
                    for i in range(0, len(target), batch)
                ]
            )
            .mean()
            .item()
        )
