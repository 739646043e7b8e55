"""Table 1 in miniature: N-way K-shot classification on the 40 held-out Tiny-ImageNet classes, and the speed of the
shared-prefix engine against the reference loop (one prompt per call, batch 1) on the same prompts.

    python benchmarks/bench_fewshot.py --llm smollm2-135m --kg 5 --episodes 200 --reference-episodes 4
    python benchmarks/bench_fewshot.py --table [NAME ...]      # docs/results.md's tables from the result files
    python benchmarks/bench_fewshot.py --speed-table NAME ...  # the engine against the reference loop

Writes benchmarks/results/fewshot-<llm>.json (summary per cell, speed, agreement) and the episode lists
benchmarks/results/fewshot-episodes-<N>way.json (the same episodes for every LLM and K_g).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
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


# ---- the tables of docs/results.md, read from the result files (`--table NAME ...`) ----

CELLS = [c.name for c in TABLE1_CELLS]  # the paper's column order
HEAD = (
    "| K_g / rule | "
    + " | ".join(
        [
            "2-1 ✗",
            "2-1",
            "2-3",
            "2-5",
            "2-1 r1",
            "2-1 r3",
            "2-1 r5",
            "2 avg",
            "5-1 ✗",
            "5-1",
            "5-3",
            "5-5",
            "5-1 r1",
            "5-1 r3",
            "5-1 r5",
            "5 avg",
        ]
    )
    + " |"
)
PAPER_7B = {
    5: [34.2, 73.1, 89.0, 93.4, 79.6, 80.6, 79.1, 75.6, 36.2, 54.6, 88.6, 91.1, 70.7, 72.8, 74.4, 69.8],
    21: [36.5, 76.3, 91.2, 95.3, 84.0, 84.4, 83.7, 78.8, 37.1, 44.8, 91.8, 94.0, 73.9, 82.2, 85.3, 72.7],
}
RULES = [
    ("paper", "paper rule (greedy, exact tokens)"),
    ("constrained", "constrained to the N names"),
    ("rank", "likelihood ranking"),
    ("calibrated", "ranking + calibration (correction)"),
    ("nn_vl", "nearest support, VL embedding (no LLM)"),
    ("nn_words", "nearest support, words (no LLM)"),
]


def table(data: dict, kg: int) -> list[str]:
    lines = []
    by = {(w, r["cell"]): r for w in (2, 5) for r in data.get(f"kg{kg}-{w}way", {}).get("cells", [])}
    if not by:
        return lines
    for rule, label in RULES:
        vals = []
        for w in (2, 5):
            accs = [by[(w, c)][rule]["acc"] * 100 if (w, c) in by and rule in by[(w, c)] else None for c in CELLS]
            known = [a for a in accs if a is not None]
            vals += [f"{a:.1f}" if a is not None else "–" for a in accs]
            vals.append(f"{sum(known) / len(known):.1f}" if len(known) == len(CELLS) else "–")
        if any(v != "–" for v in vals):
            lines.append(f"| {kg} / {label} | " + " | ".join(vals) + " |")
    half = []
    for w in (2, 5):
        for c in CELLS:
            r = by.get((w, c))
            if r and "rank" in r:
                lo, hi = r["rank"]["ci95"]
                half.append(f"±{(hi - lo) * 50:.1f}")
            else:
                half.append("–")
        half.append("")
    lines.append(f"| {kg} / ranking 95% interval (half-width) | " + " | ".join(half) + " |")
    lines.append(f"| {kg} / paper, LLaMA-2 7B (Mini-ImageNet) | " + " | ".join(f"{v}" for v in PAPER_7B[kg]) + " |")
    return lines


def speed_table(names: list[str]) -> None:
    """The engine against the reference loop, from the `speed` entries of the result files."""
    print(
        "| LLM (result file) | N | episodes × cells | engine s/episode | reference s/episode | ratio | "
        "identical predictions (paper / constrained / rank) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names:
        path = RESULTS / f"fewshot-{name}.json"
        if not path.is_file():
            continue
        sp = json.loads(path.read_text()).get("speed")
        if not sp:
            continue
        for key in ("2way", "5way"):
            r = sp[key]
            a = r["agreement"]
            print(
                f"| {name} | {key[0]} | {r['episodes']} × 7 | {r['fast_s_per_episode']:.2f} | "
                f"{r['reference_s_per_episode']:.2f} | {r['speedup']:.2f}× | {a['paper']} / {a['constrained']} / "
                f"{a['rank']} |"
            )
        print(f"| {name} | grid | | | | **{sp['grid_speedup']:.2f}×** | |")


def render_tables(names: list[str]) -> None:
    for name in names:
        path = RESULTS / f"fewshot-{name}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        print(
            f"\n**{data['meta']['llm']}** ({path.name}; codebook entries: {data['meta']['codebook_entries']}, "
            f"kinds: {data['meta'].get('kinds', 'all')})\n"
        )
        print(HEAD)
        print("|" + "---|" * 17)
        print("| chance | " + " | ".join(["50.0"] * 8 + ["20.0"] * 8) + " |")
        for kg in (5, 21):
            for line in table(data, kg):
                print(line)
        rows = [r for k, v in data.items() if k.startswith("kg") for r in v["cells"]]
        if rows:
            print("\nBiases of the ranking rule (share of answers), per setting:\n")
            print(
                "| K_g | N | cell | episodes | s/episode | = last example's class | = first listed class | "
                "paper rule: not a class name |"
            )
            print("|---|---|---|---|---|---|---|---|")
            for r in sorted(rows, key=lambda r: (r["kg"], r["ways"], CELLS.index(r["cell"]))):
                print(
                    f"| {r['kg']} | {r['ways']} | {r['cell']} | {r['episodes']} | {r['seconds_per_episode']:.2f} | "
                    f"{r['rank_is_last_support']:.2f} | {r['rank_is_first_class']:.2f} | "
                    f"{r['paper_not_a_class']:.2f} |"
                )
        if "speed" in data:
            print("\nSpeed against the reference loop:", json.dumps(data["speed"]))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--table"]:  # render docs/results.md's tables from the result files
        render_tables(sys.argv[2:] or ["smollm2-135m", "gemma3-270m", "smollm2-135m-kg21", "smollm2-135m-kg21-5way"])
    elif sys.argv[1:2] == ["--speed-table"]:
        speed_table(sys.argv[2:])
    else:
        main()
