"""Benchmark the frozen backbones on this machine.

LLM (default smollm2-135m): cold load (fresh cache: GGUF de-quantisation) and warm load; greedy tokens/s; batched
next-token predictions/s vs one prompt per call; shared-prefix KV-cache reuse vs recomputing the prefix (ratio, same
run). VL model (default conse): images/s and texts/s.

    python benchmarks/bench_backbones.py            # writes benchmarks/results/backbones.json
    python benchmarks/bench_backbones.py --micro-batch 2,4,8,16   # conse's image tower only (merged into it)

`--micro-batch`: EfficientNet-Lite0 images/s on 512 real Tiny-ImageNet train images (224×224, the codebook build's
filtering workload) for each CPU micro-batch size, interleaved rounds (median of 5), and each size's largest logit
difference from the first size's (bit-identical or float rounding).

`prefix-reuse` (was bench_prefix_reuse.py): a prompt's KV cache reused for a batch of continuations, deep copy vs views,
and tree-attention scoring: `python benchmarks/bench_backbones.py prefix-reuse` (benchmarks/results/prefix_reuse.json).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

from common import REPO, timed, update_results, write_result
from v2l.backbones import LanguageModel
from v2l.backbones.language_model import deepcopy_cache, fork_cache


def micro_batches(sizes: list[int], data_root: str, n: int = 512, rounds: int = 5) -> None:
    import statistics
    import time

    from v2l.backbones import ConSE
    from v2l.data import WebDatasetShards

    ds = WebDatasetShards("tiny-imagenet-200", split="train", root=data_root)
    step = max(1, len(ds) // n)
    vl = ConSE(top_t=3)
    pixels = vl.preprocess([ds[i * step].image for i in range(n)])
    rates: dict[int, list[float]] = {b: [] for b in sizes}
    logits: dict[int, torch.Tensor] = {}
    with torch.inference_mode():
        vl.class_logits(pixels[:8])  # warm-up
        for _ in range(rounds):  # interleaved: a noisy machine slows every size alike
            for b in sizes:
                vl.CPU_MICRO_BATCH = b
                t0 = time.perf_counter()
                logits[b] = torch.cat([vl.class_logits(p) for p in pixels.split(64)])
                rates[b].append(n / (time.perf_counter() - t0))
    ref = sizes[0]
    out = {"images": n, "rounds": rounds, "default": ConSE.CPU_MICRO_BATCH, "reference_size": ref}
    for b in sizes:
        med = statistics.median(rates[b])
        out[str(b)] = {
            "images_per_s_median": round(med, 1),
            "images_per_s": [round(r, 1) for r in rates[b]],
            "vs_reference": round(med / statistics.median(rates[ref]), 2),
            "max_abs_logit_diff_vs_reference": float((logits[b] - logits[ref]).abs().max()),
            "top1_identical_vs_reference": float((logits[b].argmax(1) == logits[ref].argmax(1)).float().mean()),
        }
    update_results("backbones", {"conse_image_micro_batch": out})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--vl", default="conse")
    ap.add_argument("--prompts", type=int, default=512, help="prompts for the next-token benchmarks")
    ap.add_argument("--data-root", default=os.environ.get("V2L_DATA") or str(REPO.parent / "shared" / "data"))
    ap.add_argument(
        "--micro-batch",
        default="",
        help="comma-separated sizes: measure conse's image tower only (the first size is the reference)",
    )
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("V2L_THREADS", "2")))
    if args.micro_batch:
        micro_batches([int(b) for b in args.micro_batch.split(",")], args.data_root)
        return

    from v2l.backbones import LanguageModel, load_vl
    from v2l.data import WebDatasetShards

    res: dict = {"llm": args.llm, "vl": args.vl}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["V2L_CACHE"] = cache
        t_cold, _ = timed(LanguageModel.load, args.llm, progress=False)
        t_warm, lm = timed(LanguageModel.load, args.llm, progress=False, repeat=3)
    res["llm_cold_load_s"], res["llm_warm_load_s"] = round(t_cold, 2), round(t_warm, 2)

    # Greedy generation: 8 prompts x 64 new tokens, batched, and one prompt at a time.
    prompts = [
        "A photo of a",
        "The capital of France is",
        "Once upon a time",
        "My favourite animal is",
        "In the morning I",
        "The weather today",
        "A red car",
        "Deep learning is",
    ]
    n_new = 64
    t, outs = timed(lm.generate, prompts, max_new_tokens=n_new, batch_size=8)
    res["greedy_tokens_per_s_batch8"] = round(sum(len(lm.encode(o)) for o in outs) / t, 1)
    t, outs = timed(lambda: [lm.generate([p], max_new_tokens=n_new)[0] for p in prompts[:2]])
    res["greedy_tokens_per_s_batch1"] = round(sum(len(lm.encode(o)) for o in outs) / t, 1)

    # Next-token top-1 for "a photo of" + token (the vocabulary-expansion workload).
    prefix = lm.encode("a photo of")
    words = lm.vocab.ids_of_kind("word")[: args.prompts]
    naive_n = 64
    t_naive, naive = timed(lambda: [lm.next_token_topk([prefix + [w]], k=1)[1][0, 0].item() for w in words[:naive_n]])
    t_batch, (_, ids_batch) = timed(lm.next_token_topk, [prefix + [w] for w in words], k=1, batch_size=256)
    t_pref, (_, ids_pref) = timed(
        lambda: lm.next_token_topk([[w] for w in words], k=1, batch_size=256, prefix=lm.prefix_cache(prefix))
    )
    res["next_token_per_s_one_prompt_per_call"] = round(naive_n / t_naive, 1)
    res["next_token_per_s_batched"] = round(len(words) / t_batch, 1)
    res["next_token_per_s_batched_prefix_cache"] = round(len(words) / t_pref, 1)
    res["batched_vs_one_per_call"] = round((len(words) / t_batch) / (naive_n / t_naive), 2)
    res["prefix_cache_vs_recompute"] = round(t_batch / t_pref, 2)
    res["prefix_cache_top1_identical"] = float((ids_batch == ids_pref).float().mean())
    res["one_per_call_top1_identical"] = float((ids_batch[:naive_n, 0] == torch.tensor(naive)).float().mean())

    # Shared-prefix reuse with a long prompt (an in-context prompt of ~300 tokens, 64 short continuations).
    long_prefix = lm.encode(" ".join(["Input: cat dog bird, output: animal."] * 30))
    conts = [[w] for w in words[:64]]
    t_re, (_, a) = timed(lm.next_token_topk, [long_prefix + c for c in conts], k=1, batch_size=64)
    t_ca, (_, b) = timed(lambda: lm.next_token_topk(conts, k=1, batch_size=64, prefix=lm.prefix_cache(long_prefix)))
    res["long_prefix_tokens"] = len(long_prefix)
    res["long_prefix_cache_vs_recompute"] = round(t_re / t_ca, 2)
    res["long_prefix_top1_identical"] = float((a == b).float().mean())
    lm = None  # free the LLM before loading the VL model

    vl = load_vl(args.vl)
    ds = WebDatasetShards("imagenet-1k-sample", root=args.data_root)
    images = [ds[i].image for i in range(64)]
    vl.encode_image(images[:4])  # warm-up (conse embeds its 1,000 class names once)
    t, _ = timed(vl.encode_image, images, batch_size=32)
    res["vl_images_per_s"] = round(len(images) / t, 1)
    texts = [f"a photo of a {w}." for w in ds.labels[:512]]
    t, _ = timed(vl.encode_text, texts, batch_size=256)
    res["vl_texts_per_s"] = round(len(texts) / t, 1)
    write_result("backbones", res)


# ---- `prefix-reuse`: a prompt's KV cache reused for a batch of continuations
def prefix_reuse_best(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def prefix_reuse_measure(lm: LanguageModel, length: int) -> dict:
    import v2l.backbones.language_model as mod

    ids = (lm.encode(" Input: goldfish, fish, aquarium, pond, koi, output: goldfish.") * 200)[:length]
    prefix = lm.prefix_cache(ids)
    cands = [
        lm.encode(n) + lm.encode(".")
        for n in (" goldfish", " European fire salamander", " bullfrog", " tailed frog", " American alligator")
    ]
    row = {"prefix_tokens": length, "candidates": len(cands)}
    row["expand_deepcopy_s"] = prefix_reuse_best(lambda: deepcopy_cache(prefix.cache, len(cands)))
    row["expand_views_s"] = prefix_reuse_best(lambda: fork_cache(prefix.cache, len(cands)))

    def score():
        return lm.score_tokens(ids, cands, prefix=prefix)

    lm._tree_ok = False
    rows = score()
    t_rows = prefix_reuse_best(score)
    lm._tree_ok = None
    tree = score()
    t_tree = prefix_reuse_best(score)
    real = mod.fork_cache  # the plain way end to end: a deep copy repeated over N rows
    mod.fork_cache = deepcopy_cache
    lm._tree_ok = False
    try:
        t_plain = prefix_reuse_best(score)
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


def prefix_reuse_main() -> None:
    lm = LanguageModel.load(progress=False)
    out = {}
    for length in (500, 2000):
        out[f"prefix{length}"] = prefix_reuse_measure(lm, length)
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
    if sys.argv[1:2] == ["prefix-reuse"]:
        sys.argv.pop(1)
        prefix_reuse_main()
    else:
        main()
