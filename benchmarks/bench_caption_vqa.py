"""Captioning and VQA in context (paper §3.3, §4.2, Fig. 5) on coco-captions: scores, baselines and speed.

    python benchmarks/bench_caption_vqa.py --llm smollm2-135m
    python benchmarks/bench_caption_vqa.py --llm gemma3-270m --codebook PATH
    python benchmarks/bench_caption_vqa.py --table smollm2-135m gemma3-270m   # docs/results.md's tables

Captioning: the 100 test images, 10 in-context pairs from the 238 train images, `random` (the paper's: one seeded
draw shared by all queries) and `nearest` (by the words' embeddings); BLEU-4, METEOR, ROUGE-L, CIDEr against all five
references (pycocoevalcap). VQA (a stand-in for VQA v2, questions derived from COCO annotations): exact-match
accuracy per type, beside the majority answer per type and the question-only prompt (no image words). Speed: the
shared-prefix batched engine against one prompt per call (batch 1, nothing shared) on the same prompts, both timed in
this run; the texts must be identical.

Writes benchmarks/results/caption-vqa-<name>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from common import RESULTS, update_results
from v2l.backbones import LanguageModel, load_vl
from v2l.codebooks import Codebook, find_codebook
from v2l.tasks.captioning import Captioner, end_caption, evaluate_captions
from v2l.tasks.coco import load_coco
from v2l.tasks.incontext import reference_generate
from v2l.tasks.pool import word_vectors
from v2l.tasks.questions import QUESTION_TYPES, derive_questions, normalize_answer
from v2l.tasks.vqa import STAND_IN, VisualQA, accuracy_by_type, majority_answers


def speed(gen, prompts, gens, t_fast: float, n: int) -> dict:
    """One prompt per call on the first `n` prompts; agreement with the fast engine's texts and the ratio of times
    (the fast engine's time pro rata: it ran all prompts at once)."""
    n = min(n, len(prompts))
    t0 = time.perf_counter()
    ref = [reference_generate(gen, p) for p in prompts[:n]]
    t_ref = time.perf_counter() - t0
    fast = t_fast * n / len(prompts)
    return {
        "prompts": n,
        "reference_s": t_ref,
        "fast_s_same_prompts": fast,
        "speedup": t_ref / fast,
        "identical": sum(r.ids == g.ids for r, g in zip(ref, gens, strict=False)),
    }


def run_captions(args, lm, vl, cb, train, test) -> dict:
    out = {}
    refs = {t.key: t.captions for t in test}
    for pairs in args.pairs:
        cap = Captioner(lm, vl, cb, train, kg=args.kg, shots=args.shots, pairs=pairs, seed=args.seed)
        words = word_vectors([t.image for t in test], vl, cb, args.kg)
        prompts, chosen = cap.prompts(words)
        t0 = time.perf_counter()
        gens = cap.gen.generate(prompts)
        t_fast = time.perf_counter() - t0
        # the library's caption ending (`Captioner.answer` applies the same): first sentence, no repeated 3-gram
        preds = {t.key: end_caption(g.text, cap.gen.template.stops) for t, g in zip(test, gens, strict=True)}
        row = {
            "pairs": pairs,
            "scores": evaluate_captions(preds, refs),
            "fast_s": t_fast,
            "prompt_tokens_mean": sum(sum(len(x) for x in p) for p in prompts) / len(prompts),
            "examples": [
                {"image": t.key, "caption": preds[t.key], "references": t.captions, "words": words.words[i][:8]}
                for i, t in enumerate(test[:10])
            ],
        }
        if args.reference:
            row["speed"] = speed(cap.gen, prompts, gens, t_fast, args.reference)
        out[pairs] = row
        print(
            pairs,
            {k: row["scores"].get(k) for k in ("bleu4", "meteor", "rouge_l", "cider")},
            row.get("speed"),
            flush=True,
        )
    return out


def run_vqa(args, lm, vl, cb, train, test) -> dict:
    queries = [(i, q) for i, t in enumerate(test) for q in derive_questions(t.key, t.objects, t.original_size)]
    types = [q.type for _, q in queries]
    gold = [q.answer for _, q in queries]
    test_words = word_vectors([t.image for t in test], vl, cb, args.kg)
    idx = [i for i, _ in queries]
    qwords = type(test_words)([test_words.words[i] for i in idx], test_words.vectors[idx])
    out = {
        "note": STAND_IN,
        "questions": len(queries),
        "answers_by_type": {
            t: sorted({g for ty, g in zip(types, gold, strict=True) if ty == t}) for t in QUESTION_TYPES
        },
    }
    for pairs in args.pairs:
        vqa = VisualQA(lm, vl, cb, train, kg=args.kg, shots=args.shots, pairs=pairs, seed=args.seed)
        for blind in (False, True) if pairs == "random" else (False,):
            prompts, _ = vqa.prompts(qwords, [q.question for _, q in queries], blind=blind)
            t0 = time.perf_counter()
            gens = vqa.gen.generate(prompts)
            t_fast = time.perf_counter() - t0
            pred = [normalize_answer(g.text) for g in gens]
            key = "question-only" if blind else pairs
            row = {
                "accuracy": accuracy_by_type(types, gold, pred),
                "fast_s": t_fast,
                "examples": [
                    {"image": test[i].key, "question": q.question, "gold": q.answer, "answer": p, "raw": g.text}
                    for (i, q), p, g in list(zip(queries, pred, gens, strict=True))[:12]
                ],
            }
            if args.reference and not blind:
                row["speed"] = speed(vqa.gen, prompts, gens, t_fast, args.reference)
            out[key] = row
            print(key, {t: round(v["acc"], 3) for t, v in row["accuracy"].items()}, row.get("speed"), flush=True)
        if pairs == args.pairs[0]:
            maj = majority_answers(vqa.triplets)
            out["majority"] = {
                "answers": maj,
                "accuracy": accuracy_by_type(types, gold, [maj[t] for t in types]),
                "train_questions": len(vqa.triplets),
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--codebook", default=None)
    ap.add_argument("--kg", type=int, default=21)
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--pairs", nargs="+", default=["random", "nearest"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", type=int, default=100, help="prompts run one per call for the speed ratio")
    ap.add_argument("--limit", type=int, default=None, help="first N test images only (quick runs)")
    ap.add_argument("--tasks", nargs="+", default=["caption", "vqa"])
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    vl = load_vl()
    lm = LanguageModel.load(args.llm, progress=False)
    cb = Codebook.load(args.codebook or find_codebook(args.llm, vl=vl), vl=vl)
    train, test = load_coco("train"), load_coco("test", limit=args.limit)
    name = f"caption-vqa-{args.name or args.llm}"
    meta = {
        "llm": args.llm,
        "vl": "conse (EfficientNet-Lite0 + MiniLM; stands in for CLIP ViT-L/14)",
        "codebook": str(cb.folder),
        "kg": args.kg,
        "shots": args.shots,
        "seed": args.seed,
        "data": f"coco-captions: {len(train)} train images (in-context pool), {len(test)} test images, 160x160 "
        "centre crops (not the COCO Karpathy test split)",
    }
    path = RESULTS / f"{name}.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    update_results(name, {"meta": meta})
    if "caption" in args.tasks:  # rows of other --pairs already measured are kept
        update_results(
            name, {"captioning": {**old.get("captioning", {}), **run_captions(args, lm, vl, cb, train, test)}}
        )
    if "vqa" in args.tasks:
        update_results(name, {"vqa": run_vqa(args, lm, vl, cb, train, test)})


# ---- the tables of docs/results.md, read from the result files (`--table NAME ...`) ----


def load(name: str) -> dict:
    return json.loads((RESULTS / f"caption-vqa-{name}.json").read_text())


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def render_tables(names: list[str]) -> None:
    data = {n: load(n) for n in names}
    print(
        "| LLM | in-context pairs | BLEU-1 | BLEU-4 | METEOR | ROUGE-L | CIDEr | prompt tokens | batched s | "
        "one per call s | ratio | identical |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, d in data.items():
        for pairs, row in d.get("captioning", {}).items():
            s, sp = row["scores"], row.get("speed", {})
            print(
                f"| {n} | {pairs} | {pct(s['bleu1'])} | {pct(s['bleu4'])} | {pct(s.get('meteor'))} | "
                f"{pct(s['rouge_l'])} | {pct(s['cider'])} | {row['prompt_tokens_mean']:.0f} | "
                f"{sp.get('fast_s_same_prompts', 0):.1f} | {sp.get('reference_s', 0):.1f} | "
                f"{sp.get('speedup', 0):.2f}× | {sp.get('identical', '–')}/{sp.get('prompts', '–')} |"
            )
    print()
    print("| LLM | prompt | presence | counting | category | all | batched s | one per call s | ratio | identical |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, d in data.items():
        v = d.get("vqa")
        if not v:
            continue
        rows = [(k, v[k]) for k in ("random", "nearest", "question-only") if k in v]
        rows.append(("majority answer per type (no LLM)", v["majority"]))
        for k, row in rows:
            acc, sp = row["accuracy"], row.get("speed", {})
            cells = [
                f"{pct(acc[t]['acc'])} ({acc[t]['n']})" if t in acc else "–"
                for t in ("presence", "counting", "category", "all")
            ]
            speed = (
                (
                    f"{sp['fast_s_same_prompts']:.1f} | {sp['reference_s']:.1f} | {sp['speedup']:.2f}× | "
                    f"{sp['identical']}/{sp['prompts']}"
                )
                if sp
                else "| | |"
            )
            print(f"| {n} | {k} | " + " | ".join(cells) + f" | {speed} |")
    print()
    first = data[names[0]]["captioning"]
    ex = {p: first[p]["examples"] for p in first}
    print(f"Example captions ({names[0]}; the first 10 test images, sorted by COCO id):")
    print()
    print("| image | " + " | ".join(f"{p} pairs" for p in ex) + " | first reference |")
    print("|---|" + "---|" * len(ex) + "---|")
    for i, e in enumerate(ex[next(iter(ex))]):
        caps = [ex[p][i]["caption"].replace("|", "/")[:90] for p in ex]
        print(f"| {e['image']} | " + " | ".join(caps) + f" | {e['references'][0]} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--table"]:  # render docs/results.md's tables from the result files
        render_tables(sys.argv[2:] or ["smollm2-135m"])
    else:
        main()
