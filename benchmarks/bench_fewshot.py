"""Table 1 in miniature: N-way K-shot classification on the 40 held-out Tiny-ImageNet classes, and the speed of the
shared-prefix engine against the reference loop (one prompt per call, batch 1) on the same prompts.

    python benchmarks/bench_fewshot.py --llm smollm2-135m --kg 5 --episodes 200 --reference-episodes 4

Writes benchmarks/results/fewshot-<llm>.json (summary per cell, speed, agreement) and the episode lists
benchmarks/results/fewshot-episodes-<N>way.json (the same episodes for every LLM and K_g).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from common import RESULTS, update_results
from v2l.backbones import LanguageModel, load_vl
from v2l.codebooks import Codebook, find_codebook
from v2l.tasks import (
    PROMPT_TEMPLATES,
    InContextClassifier,
    heldout_features,
    run_grid,
    sample_episodes,
    save_episodes,
    summarize,
)
from v2l.tasks.episodes import TABLE1_CELLS
from v2l.tasks.reference import reference_decide


def speed(clf_fast, clf_ref, store, episodes, kg) -> dict:
    """Fast engine vs reference loop on the same episodes and cells; predictions must agree."""
    idx = store.index()
    t0 = time.perf_counter()
    fast = run_grid(clf_fast, store, episodes, kg, progress=False)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = []
    for ep in episodes:
        q = store.words[idx[ep.query[1]]][:kg]
        for cell in TABLE1_CELLS:
            samples = [(store.words[idx[i]][:kg], ep.classes[c]) for c, i in ep.samples(cell)]
            ref.append(reference_decide(clf_ref, clf_ref.prompt(cell, ep.classes, samples, q, cell.induction)))
    t_ref = time.perf_counter() - t0
    agree = {rule: sum(f["choice"][rule] == r[rule] for f, r in zip(fast, ref, strict=True)) for rule in ref[0]}
    return {
        "episodes": len(episodes),
        "cells": len(fast),
        "fast_s_per_episode": t_fast / len(episodes),
        "reference_s_per_episode": t_ref / len(episodes),
        "speedup": t_ref / t_fast,
        "agreement": {k: f"{v}/{len(fast)}" for k, v in agree.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--kg", type=int, nargs="+", default=[5, 21])
    ap.add_argument("--ways", type=int, nargs="+", default=[2, 5])
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--reference-episodes", type=int, default=4)
    ap.add_argument("--template", default="paper")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--codebook", default=None)
    ap.add_argument("--name", default=None, help="result file suffix (default: the LLM name)")
    ap.add_argument(
        "--kinds",
        default=None,
        help="keep only these codebook entry kinds (comma-separated: subword, "
        "bigram, trigram): Table 5's question asked of the shipped codebook",
    )
    ap.add_argument("--cells", default=None, help="comma-separated cell names (default: all 7 of Table 1)")
    ap.add_argument("--no-calibrate", action="store_true", help="skip the content-free scoring (calibrated rule)")
    ap.add_argument(
        "--tokenizer",
        default=None,
        help="a saved tokenizer folder (a baseline: vqgan-llm, lqae, spae) "
        "whose tokens replace the global words in the prompts",
    )
    ap.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="with --tokenizer: tokens per image (SPAE: 5 or 21; default: all of a baseline's tokens, K_g for v2l)",
    )
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    vl = load_vl()
    lm = LanguageModel.load(args.llm, progress=False)
    codebook = Codebook.load(args.codebook or find_codebook(args.llm, vl=vl), vl=vl)
    if args.kinds:
        keep = [i for i, e in enumerate(codebook.entries) if e["kind"] in args.kinds.split(",")]
        codebook = dataclasses.replace(
            codebook, entries=[codebook.entries[i] for i in keep], global_embeddings=codebook.global_embeddings[keep]
        )
    cells = [c for c in TABLE1_CELLS if args.cells is None or c.name in args.cells.split(",")]
    store = heldout_features(vl, codebook)
    if args.tokenizer:  # a baseline's tokens instead of V2L's global words (V2L Table 1's other rows)
        from v2l.baselines import token_words, with_token_words
        from v2l.tasks.grid import heldout_images
        from v2l.tokenizer import ImageTokenizer

        tok = ImageTokenizer.from_pretrained(args.tokenizer, vl=vl, lm=lm, progress=False)
        store = with_token_words(store, token_words(tok, heldout_images(store), args.tokens))
        if args.tokens is None and tok.config.model != "v2l":
            args.kg = [max(len(w) for w in store.words)]  # all of the baseline's tokens
    template = PROMPT_TEMPLATES[args.template]
    name = f"fewshot-{args.name or args.llm}"
    meta = {
        "llm": args.llm,
        "vl": "conse (EfficientNet-Lite0 + MiniLM; stands in for CLIP ViT-L/14)",
        "codebook": str(codebook.folder) if hasattr(codebook, "folder") else args.codebook,
        "codebook_entries": len(codebook.entries),
        "template": args.template,
        "data": "Tiny-ImageNet 40 held-out classes (64x64, 110 images per class), not Mini-ImageNet",
        "seed": args.seed,
        "cells": [c.name for c in cells],
        "kinds": args.kinds or "all",
        "calibrated": not args.no_calibrate,
        "tokenizer": args.tokenizer,
        "tokens": args.tokens,
    }
    update_results(name, {"meta": meta})
    episodes = {}
    for ways in args.ways:
        episodes[ways] = sample_episodes(store.pool(), ways, args.episodes, seed=args.seed)
        save_episodes(
            RESULTS / f"fewshot-episodes-{ways}way.json",
            episodes[ways],
            {"ways": ways, "seed": args.seed, "max_shots": 5, "pool": "tiny-imagenet-200 heldout"},
        )
    if args.reference_episodes:
        fast = InContextClassifier(lm, template, calibrate=False)
        ref = InContextClassifier(lm, template, calibrate=False)
        out = {}
        for ways in args.ways:
            out[f"{ways}way"] = speed(fast, ref, store, episodes[ways][: args.reference_episodes], args.kg[0])
            print(out[f"{ways}way"], flush=True)
        total_ref = sum(v["reference_s_per_episode"] for v in out.values())
        total_fast = sum(v["fast_s_per_episode"] for v in out.values())
        out["grid_speedup"] = total_ref / total_fast
        out["kg"] = args.kg[0]
        update_results(name, {"speed": out})
    clf = InContextClassifier(lm, template, calibrate=not args.no_calibrate)
    for kg in args.kg:
        for ways in args.ways:
            t0 = time.perf_counter()
            recs = run_grid(clf, store, episodes[ways], kg, cells=cells, desc=f"{ways}-way K_g={kg}")
            rows = summarize(recs)
            update_results(name, {f"kg{kg}-{ways}way": {"seconds": time.perf_counter() - t0, "cells": rows}})
            for r in rows:
                print(
                    kg,
                    ways,
                    r["cell"],
                    {
                        k: round(r[k]["acc"], 3)
                        for k in ("paper", "constrained", "rank", "calibrated", "nn_vl", "nn_words")
                        if k in r
                    },
                    flush=True,
                )


if __name__ == "__main__":
    main()
