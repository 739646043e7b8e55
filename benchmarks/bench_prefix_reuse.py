"""Reusing a prompt's KV cache for a batch of continuations: a deep copy repeated over the batch (the plain way) against
views of the prefix's tensors, and scoring N candidates as N rows against one row under a tree attention mask.

    python benchmarks/bench_prefix_reuse.py

Writes benchmarks/results/prefix_reuse.json. The two ways are timed alternately in the same run (ratios, not absolute
times, are what carries over between machines).
"""

from __future__ import annotations

import time

import torch

from common import update_results
from v2l.backbones import LanguageModel
from v2l.backbones.language_model import deepcopy_cache, fork_cache


def best(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(lm: LanguageModel, length: int) -> dict:
    import v2l.backbones.language_model as mod

    ids = (lm.encode(" Input: goldfish, fish, aquarium, pond, koi, output: goldfish.") * 200)[:length]
    prefix = lm.prefix_cache(ids)
    cands = [
        lm.encode(n) + lm.encode(".")
        for n in (" goldfish", " European fire salamander", " bullfrog", " tailed frog", " American alligator")
    ]
    row = {"prefix_tokens": length, "candidates": len(cands)}
    row["expand_deepcopy_s"] = best(lambda: deepcopy_cache(prefix.cache, len(cands)))
    row["expand_views_s"] = best(lambda: fork_cache(prefix.cache, len(cands)))

    def score():
        return lm.score_tokens(ids, cands, prefix=prefix)

    lm._tree_ok = False
    rows = score()
    t_rows = best(score)
    lm._tree_ok = None
    tree = score()
    t_tree = best(score)
    real = mod.fork_cache  # the plain way end to end: a deep copy repeated over N rows
    mod.fork_cache = deepcopy_cache
    lm._tree_ok = False
    try:
        t_plain = best(score)
    finally:
        mod.fork_cache, lm._tree_ok = real, None
    row.update(
        {
            "score_rows_views_s": t_rows,
            "score_tree_s": t_tree,
            "score_rows_deepcopy_s": t_plain,
            "speedup_tree_vs_deepcopy_rows": t_plain / t_tree,
            "max_abs_logprob_diff": max(
                float((a.logprobs - b.logprobs).abs().max()) for a, b in zip(rows, tree, strict=True)
            ),
            "same_greedy": all(a.greedy == b.greedy for a, b in zip(rows, tree, strict=True)),
        }
    )
    return row


def main() -> None:
    lm = LanguageModel.load(progress=False)
    out = {}
    for length in (500, 2000):
        out[f"prefix{length}"] = measure(lm, length)
        print(out[f"prefix{length}"], flush=True)
    update_results(
        "prefix_reuse",
        {
            "command": "python benchmarks/bench_prefix_reuse.py",
            "llm": lm.name,
            "threads": torch.get_num_threads(),
            **out,
        },
    )


if __name__ == "__main__":
    main()
