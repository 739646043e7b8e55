"""The baselines beside V2L (V2L Tables 1–4 in miniature): every tokenizer trained with the same preset, data and
step budget (benchmarks/train_cpu.sh, benchmarks/train_baselines.sh), measured the same way in one run.

    python benchmarks/bench_baselines.py v2l=cpu vqgan-llm=runs/vqgan-llm/final lqae=runs/lqae/final \\
        spae=runs/spae/final

Per tokenizer (a folder that does not exist is a row marked "not built", never a silent gap):
- `recon`: PSNR, SSIM, ST-LPIPS of its reconstructions of the held-out Tiny-ImageNet val images (40 classes × 50, at
  the preset's 64 px; `--recon-images` limits them);
- `semantic`: the tokens it gives an LLM for understanding (V2L: K_g = 5 global words; SPAE: layers 1–2, 5 tokens;
  VQ-GAN+LLM and LQAE: all 256) measured on the 4,400 images of the few-shot pool: class-word hit, VL score, CLIP-R
  and nearest-support accuracy by word embedding and word overlap (`v2l.eval.semantic`, 1,000 5-way 1-shot
  episodes; by the VL image embedding for reference);
- `fewshot`: 5-way 1-shot with task induction (Table 1's second column, where the paper's LLaMA-2 7B gets 54.6;
  `--cells` adds others), 200 episodes, under the paper's rule, constrained decoding and likelihood ranking (`--llm`);
- `denoise`: inpainting and deblurring by the same LLM on `--denoise-images` held-out images (PSNR, ST-LPIPS against
  the original), beside the no-LLM restorations.

Stages are resumable: each (tokenizer, stage) is written to benchmarks/results/baselines.json as it ends, and a rerun
skips the ones there (same settings). The pool's tokens are cached under the v2l cache per checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from common import RESULTS, update_results
from v2l.backbones import LanguageModel, load_vl
from v2l.codebooks import Codebook, find_codebook
from v2l.paths import cache_root, write_json_atomic

UNDERSTANDING_TOKENS = {"v2l": 5, "spae": 5, "vqgan-llm": None, "lqae": None}
STAGES = ("recon", "semantic", "fewshot", "denoise")


def checkpoint_key(folder: Path) -> str:
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        h.update((folder / name).read_bytes())
    return h.hexdigest()[:16]


def pool_tokens(tok, store, count, folder: Path) -> list[list[int]]:
    """The pool's understanding tokens (ids), cached per checkpoint and count."""
    from v2l.baselines import token_ids
    from v2l.tasks.grid import heldout_images

    keys = hashlib.sha256("\n".join(store.keys).encode()).hexdigest()[:12]
    path = cache_root() / "baselines" / f"pool-{checkpoint_key(folder)}-{keys}-{count}.json"
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    ids = token_ids(tok, heldout_images(store), count)
    print(f"  tokenized {len(ids)} pool images in {time.perf_counter() - t0:.0f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, ids)
    return ids


def pool_subset(store, per_class: int):
    """The first `per_class` images of each class of a few-shot pool."""
    import dataclasses

    seen: dict[str, int] = {}
    keep = []
    for i, lab in enumerate(store.labels):
        if seen.get(lab, 0) < per_class:
            seen[lab] = seen.get(lab, 0) + 1
            keep.append(i)
    return dataclasses.replace(store, keys=[store.keys[i] for i in keep], labels=[store.labels[i] for i in keep],
                               embeddings=store.embeddings[keep], words=[store.words[i] for i in keep])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tokenizers", nargs="+", help="LABEL=FOLDER (cpu = the shipped V2L checkpoint)")
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--recon-images", type=int, default=None)
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--cells", default="ind-1shot-r0", help="Table 1 cells (comma-separated; 1-shot ones)")
    ap.add_argument("--semantic-episodes", type=int, default=1000)
    ap.add_argument("--denoise-images", type=int, default=16)
    ap.add_argument("--denoise-tasks", nargs="+", default=["inpaint", "deblur"])
    ap.add_argument("--pool-per-class", type=int, default=None, help="keep this many pool images per class (a quick "
                    "check; default all 110)")
    ap.add_argument("--name", default="baselines")
    args = ap.parse_args()
    from bench_denoise import heldout_val_images, scores
    from bench_tokenizer import _eval_images, reconstruction_scores
    from v2l.eval import STLPIPS, semantic_quality
    from v2l.eval.semantic import class_name_embeddings
    from v2l.tasks import PROMPT_TEMPLATES, InContextClassifier, heldout_features, run_grid, sample_episodes, summarize
    from v2l.tasks.denoise import DenoiseConfig, Denoiser
    from v2l.tasks.episodes import TABLE1_CELLS
    from v2l.tokenizer import ImageTokenizer
    from v2l.tokenizer.image_tokenizer import _resolve_checkpoint, to_tensor

    path = RESULTS / f"{args.name}.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    settings = {"llm": args.llm, "episodes": args.episodes, "cells": args.cells,
                "semantic_episodes": args.semantic_episodes, "recon_images": args.recon_images,
                "denoise_images": args.denoise_images, "pool_per_class": args.pool_per_class}
    if done.get("meta", {}).get("settings", settings) != settings:
        raise SystemExit(f"{path} holds a run with other settings: pass another --name.")
    update_results(args.name, {"meta": {"settings": settings, "data": "Tiny-ImageNet 40 held-out classes, 64 px; "
                                        "VL model conse; not ImageNet-1K at 128 px with CLIP ViT-L/14"}})
    vl = load_vl()
    lm = LanguageModel.load(args.llm, progress=False)
    codebook = Codebook.load(find_codebook(args.llm, vl=vl), vl=vl)
    store = heldout_features(vl, codebook)
    if args.pool_per_class:
        store = pool_subset(store, args.pool_per_class)
    sem_eps = sample_episodes(store.pool(), 5, args.semantic_episodes, seed=0, max_shots=1)
    fs_eps = sample_episodes(store.pool(), 5, args.episodes, seed=0, max_shots=1)  # Table 1's 1-shot columns
    cls_emb = class_name_embeddings(vl, codebook, store.labels)
    clf = InContextClassifier(lm, PROMPT_TEMPLATES["paper"], calibrate=False)
    cells = [c for c in TABLE1_CELLS if c.name in args.cells.split(",")]
    metric = STLPIPS()
    for spec in args.tokenizers:
        label, name = spec.split("=", 1)
        row = dict(done.get(label) or {})
        try:
            folder = _resolve_checkpoint(name)
        except Exception as e:  # noqa: BLE001 - a missing baseline is a row, not a crash
            update_results(args.name, {label: {"status": f"not built ({e})"}})
            print(label, "not built:", e, flush=True)
            continue
        meta = json.loads((folder / "config.json").read_text())
        row.update({"status": "ok", "folder": str(name), "model": meta["model_config"].get("model", "v2l"),
                    "trained_steps": meta.get("trained_steps"), "checkpoint": checkpoint_key(folder)})
        todo = [s for s in args.stages if s not in row]
        if not todo:
            print(label, "all stages done", flush=True)
            continue
        tok = ImageTokenizer.from_pretrained(folder, vl=vl, lm=lm, progress=False)
        model = tok.config.model
        for stage in todo:
            t0 = time.perf_counter()
            if stage == "recon":
                images = _eval_images("tiny-heldout", tok.config.resolution, None)[: args.recon_images]
                out = reconstruction_scores(tok, images, metric)
            elif stage in ("semantic", "fewshot"):
                from v2l.baselines import token_text_embeddings, token_texts, with_token_words

                count = UNDERSTANDING_TOKENS[model]
                ids = pool_tokens(tok, store, count, folder)
                words = token_texts(tok, ids)
                if stage == "semantic":
                    out = semantic_quality(store.embeddings, store.labels, words, codebook, cls_emb, sem_eps,
                                           store.keys, word_embeddings=token_text_embeddings(tok, ids))
                else:
                    s2 = with_token_words(store, words)
                    kg = max(len(w) for w in words)
                    recs = run_grid(clf, s2, fs_eps, kg, cells=cells, desc=f"{label} 5-way")
                    out = {"tokens": kg, "cells": summarize(recs)}
            else:
                den = Denoiser(tok, lm, DenoiseConfig())
                images = den.prepare(heldout_val_images(args.denoise_images))
                original = to_tensor(images, tok.config.resolution)
                out = {"reconstruction": scores(tok.reconstruct(images), original, metric)}
                for task in args.denoise_tasks:
                    t1 = time.perf_counter()
                    restored = den.restore(images, task)
                    out[task] = {"llm": scores([r.restored for r in restored], original, metric),
                                 **{k: scores(v, original, metric) for k, v in den.baselines(images, task).items()},
                                 "seconds_per_image": (time.perf_counter() - t1) / len(images)}
            out["seconds"] = time.perf_counter() - t0
            row[stage] = out
            update_results(args.name, {label: row})
            shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()
                     if not isinstance(v, (dict, list))}
            print(label, stage, shown, flush=True)


if __name__ == "__main__":
    main()
