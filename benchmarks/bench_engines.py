"""The batched in-context engines against the plain way (one prompt per call, batch 1, nothing shared), on the same
prompts in the same run; the answers must be identical. The accuracies of these tasks come from `v2l bench` (the
`tables` suite for docs/results.md's sizes); this script measures only what no stage does: speed.

    python benchmarks/bench_engines.py                      # all three, SmolLM2, the shipped checkpoint
    python benchmarks/bench_engines.py fewshot --episodes 4  # or: generate, denoise

- `fewshot`: Table 1's seven cells of N-way episodes (seed 0), the shared-prefix scorer (`run_grid`) against
  `reference_decide` per prompt; agreement per decision rule.
- `generate`: captions and VQA answers with 10 random in-context pairs (one shared prefix), `InContextGenerator.
  generate` against `reference_generate`; identical token ids.
- `denoise`: each restoration task's windows, `Denoiser.restore` against `reference_loop`; identical token maps.

Writes benchmarks/results/engines.json (one key per part; other parts kept).
"""

from __future__ import annotations

import argparse
import time

import torch

from common import update_results
from v2l.backbones import LanguageModel
from v2l.tokenizer import ImageTokenizer


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def fewshot(tok, lm, args) -> dict:
    from v2l.tasks import PROMPT_TEMPLATES, InContextClassifier, heldout_features, run_grid, sample_episodes
    from v2l.tasks.episodes import TABLE1_CELLS
    from v2l.tasks.reference import reference_decide

    store = heldout_features(tok.vl, tok.codebook, top=args.kg, progress=False)
    idx = store.index()
    clf = InContextClassifier(lm, PROMPT_TEMPLATES["paper"], calibrate=False)
    out = {"kg": args.kg}
    for ways in (2, 5):
        episodes = sample_episodes(store.pool(), ways, args.episodes, seed=0)
        t_fast, fast = timed(lambda: run_grid(clf, store, episodes, args.kg, progress=False))  # noqa: B023

        def reference():
            rows = []
            for ep in episodes:  # noqa: B023
                q = store.words[idx[ep.query[1]]][: args.kg]
                for cell in TABLE1_CELLS:
                    samples = [(store.words[idx[i]][: args.kg], ep.classes[c]) for c, i in ep.samples(cell)]
                    rows.append(reference_decide(clf, clf.prompt(cell, ep.classes, samples, q, cell.induction)))
            return rows

        t_ref, ref = timed(reference)
        out[f"{ways}way"] = {
            "episodes": len(episodes),
            "cells": len(fast),
            "fast_s_per_episode": t_fast / len(episodes),
            "reference_s_per_episode": t_ref / len(episodes),
            "speedup": t_ref / t_fast,
            "agreement": {
                rule: f"{sum(f['choice'][rule] == r[rule] for f, r in zip(fast, ref, strict=True))}/{len(fast)}"
                for rule in ref[0]
            },
        }
        print(ways, out[f"{ways}way"], flush=True)
    return out


def generate(tok, lm, args) -> dict:
    from v2l.tasks.captioning import Captioner
    from v2l.tasks.coco import load_coco
    from v2l.tasks.incontext import reference_generate
    from v2l.tasks.pool import word_vectors
    from v2l.tasks.questions import derive_questions
    from v2l.tasks.vqa import VisualQA

    train, test = load_coco("train"), load_coco("test", limit=args.prompts)
    words = word_vectors([t.image for t in test], tok.vl, tok.codebook, 21)
    cap = Captioner(lm, tok.vl, tok.codebook, train, kg=21, shots=10, pairs="random", seed=0)
    queries = [(i, q) for i, t in enumerate(test) for q in derive_questions(t.key, t.objects, t.original_size)]
    queries = queries[: args.prompts]
    qwords = type(words)([words.words[i] for i, _ in queries], words.vectors[[i for i, _ in queries]])
    vqa = VisualQA(lm, tok.vl, tok.codebook, train, kg=21, shots=10, pairs="random", seed=0)
    out = {}
    for name, gen, prompts in (
        ("caption", cap.gen, cap.prompts(words)[0]),
        ("vqa", vqa.gen, vqa.prompts(qwords, [q.question for _, q in queries])[0]),
    ):
        t_fast, fast = timed(lambda: gen.generate(prompts))  # noqa: B023
        t_ref, ref = timed(lambda: [reference_generate(gen, p) for p in prompts])  # noqa: B023
        out[name] = {
            "prompts": len(prompts),
            "fast_s": t_fast,
            "reference_s": t_ref,
            "speedup": t_ref / t_fast,
            "identical": sum(r.ids == g.ids for r, g in zip(ref, fast, strict=True)),
        }
        print(name, out[name], flush=True)
    return out


def denoise(tok, lm, args) -> dict:
    from v2l.eval.bench import heldout_eval_images
    from v2l.tasks.denoise import TASKS, DenoiseConfig, Denoiser
    from v2l.tasks.reference import reference_loop

    den = Denoiser(tok, lm, DenoiseConfig())
    images = heldout_eval_images(args.images, tok.config.resolution, seed=0)
    out = {"images": len(images), "n": den.cfg.n, "m": den.cfg.m}
    for task in args.tasks or TASKS:
        t_fast, fast = timed(lambda: den.restore(images, task))  # noqa: B023
        t_ref, ref = timed(lambda: den.restore(images, task, generate=reference_loop(lm, den.allowed.tolist())))  # noqa: B023
        out[task] = {
            "fast_s_per_image": t_fast / len(images),
            "reference_s_per_image": t_ref / len(images),
            "speedup": t_ref / t_fast,
            "identical_maps": sum(a.tokens == b.tokens for a, b in zip(ref, fast, strict=True)),
        }
        print(task, out[task], flush=True)
    return out


PARTS = {"fewshot": fewshot, "generate": generate, "denoise": denoise}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("parts", nargs="*", help=f"which engines: {', '.join(PARTS)} (default: all three)")
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--tokenizer", default="cpu")
    ap.add_argument("--episodes", type=int, default=3, help="fewshot: episodes per N")
    ap.add_argument("--kg", type=int, default=5, help="fewshot: global words per image")
    ap.add_argument("--prompts", type=int, default=20, help="generate: captions (and VQA questions) per engine")
    ap.add_argument("--images", type=int, default=2, help="denoise: images per task")
    ap.add_argument("--tasks", nargs="+", default=None, help="denoise: tasks (default: all five)")
    args = ap.parse_args()
    if unknown := [p for p in args.parts if p not in PARTS]:
        ap.error(f"{', '.join(unknown)}: choose from {', '.join(PARTS)}.")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    tok = ImageTokenizer.from_pretrained(args.tokenizer, progress=False)
    lm = LanguageModel.load(args.llm, progress=False)
    for part in args.parts or list(PARTS):
        result = PARTS[part](tok, lm, args)
        update_results("engines", {part: {"llm": args.llm, "tokenizer": args.tokenizer, **result}})


if __name__ == "__main__":
    main()
