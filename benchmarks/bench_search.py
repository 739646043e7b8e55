"""The bf16 nearest-code search of a training step, before and after its elementwise rewrite, in one run:

    python benchmarks/bench_search.py

A cpu-preset batch (16 images × 256 positions) against 49,152 unit codes of 576 dimensions (SmolLM2's embeddings, the
VQ-GAN+LLM codebook), chunks of 8,192: the previous formula (‖e‖² − 2 x·e, four chunk-sized passes) against
`nearest_codes` (x·e − ‖e‖²/2 in place, argmax), best of 3 each, and whether they pick the same codes. Writes
benchmarks/results/search.json.
"""

from __future__ import annotations

import time

import torch

from common import write_result
from v2l.tokenizer.quantizers import nearest_codes


def previous(x: torch.Tensor, codebook: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    best_val = torch.full((x.shape[0],), float("inf"))
    best_idx = torch.zeros(x.shape[0], dtype=torch.long)
    xm = x.to(torch.bfloat16)
    for start in range(0, codebook.shape[0], chunk):
        e = codebook[start : start + chunk]
        e_sq = (e.float() * e.float()).sum(-1)
        val, idx = (e_sq.unsqueeze(0) - 2.0 * (xm @ e.to(torch.bfloat16).T).float()).min(dim=-1)
        better = val < best_val
        best_val = torch.where(better, val, best_val)
        best_idx = torch.where(better, idx + start, best_idx)
    return best_idx


def best_of(fn, repeat: int = 3):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    torch.manual_seed(0)
    codebook = torch.nn.functional.normalize(torch.randn(49152, 576), dim=-1)
    x = torch.randn(4096, 576) * 0.1
    t_old, a = best_of(lambda: previous(x, codebook))
    t_new, b = best_of(lambda: nearest_codes(x, codebook, 8192, torch.bfloat16))
    write_result(
        "search",
        {
            "positions": 4096,
            "codes": 49152,
            "dim": 576,
            "chunk": 8192,
            "previous_s": t_old,
            "nearest_codes_s": t_new,
            "speedup": t_old / t_new,
            "identical": bool(torch.equal(a, b)),
        },
    )


if __name__ == "__main__":
    main()
