"""Table 4 in miniature: the five in-context denoising tasks (paper §4.3, Fig. 4) on held-out Tiny-ImageNet images.

    python benchmarks/bench_denoise.py --llm smollm2-135m --images 100 --reference-images 2

Per task: PSNR and ST-LPIPS of the restored image against the original (both at the tokenizer's 64 px), beside two
restorations that use no LLM, computed in the same run: the corrupted image's tokens decoded as they are, and
(in/outpainting) each masked token copied from its nearest unmasked neighbour; also the tokenizer's own
reconstruction of the clean image (the ceiling of any token-level restoration). Speed: the batched engine against
one prompt per step, batch 1 (`reference_loop`), on the first `--reference-images` images, in the same run; the
token maps must be identical. Writes benchmarks/results/denoise-<name>.json and, with --figure, a Fig. 7-style grid.

Resumable: `--resume` skips the tasks already in the result file, and a task's images are restored `--chunk` at a
time, each chunk's restorations kept in the cache (`$V2L_CACHE/bench-denoise/`, atomically) until the task is done,
so a killed run continues at its last chunk (deblurring 100 images takes about 2 h on 2 cores). Every image is
restored the same alone or in any batch (`Denoiser._copies`), so chunks do not change the result; the seconds per
image add up the chunks' times.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from common import REPO, RESULTS, update_results
from v2l.backbones import LanguageModel
from v2l.data import WebDatasetShards, tiny_imagenet_split
from v2l.eval import STLPIPS, psnr
from v2l.paths import atomic_path, cache_root, text_sha256
from v2l.tasks.denoise import TASKS, DenoiseConfig, Denoiser, reference_loop
from v2l.tokenizer import ImageTokenizer
from v2l.tokenizer.image_tokenizer import to_tensor


def heldout_val_images(count: int, seed: int = 0) -> list:
    ds = WebDatasetShards("tiny-imagenet-200", "val")
    held = set(tiny_imagenet_split()["heldout"])
    idx = [i for i in range(len(ds)) if ds.meta(i).get("wnid") in held]
    random.Random(f"v2l-denoise:{seed}").shuffle(idx)
    return [ds[i].image for i in sorted(idx[:count])]


def scores(images, reference: torch.Tensor, metric: STLPIPS) -> dict:
    x = to_tensor(images, reference.shape[-1])
    with torch.inference_mode():
        p, d = psnr(x, reference), metric(x, reference)
    return {"psnr": float(p.mean()), "st_lpips": float(d.mean()), "psnr_per_image": [round(float(v), 3) for v in p]}


def checkpoint_digest(tok: ImageTokenizer) -> str:
    """A digest of the tokenizer's weights and global codebook: kept chunks are reused for the same checkpoint only."""
    h = hashlib.sha256((tok.codebook.global_sha256 or "").encode())
    for k, v in tok.net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def restore_in_chunks(den: Denoiser, images: list, task: str, chunk: int, partial: Path, settings: dict):
    """`den.restore(images, task)` `chunk` images at a time, continuing from the chunks kept in `partial` (for the
    same settings); (restorations with .restored, .corrupted and .tokens, seconds spent restoring)."""
    state = None
    if partial.is_file():
        try:
            state = torch.load(partial, weights_only=True)
        except Exception as e:  # noqa: BLE001 - a cache file: unreadable means redo, never a lost run
            print(f"{partial}: unreadable ({e}), starting {task} afresh")
    if state is not None and state.get("settings") != settings:
        print(f"{partial}: kept for other settings, starting {task} afresh")
        state = None
    state = state or {"settings": settings, "seconds": 0.0, "restored": [], "corrupted": [], "tokens": []}
    if state["tokens"]:
        print(f"{task}: continuing after {len(state['tokens'])} of {len(images)} images ({partial})", flush=True)
    while len(state["tokens"]) < len(images):
        lo = len(state["tokens"])
        t0 = time.perf_counter()
        out = den.restore(images[lo : lo + chunk], task)
        state["seconds"] += time.perf_counter() - t0
        state["restored"] += [torch.from_numpy(np.asarray(r.restored.convert("RGB")).copy()) for r in out]
        state["corrupted"] += [torch.from_numpy(np.asarray(r.corrupted.convert("RGB")).copy()) for r in out]
        state["tokens"] += [r.tokens for r in out]
        with atomic_path(partial) as tmp:
            torch.save(state, tmp)
        print(
            f"{task}: {len(state['tokens'])}/{len(images)} images, {state['seconds'] / len(state['tokens']):.1f} "
            "s per image",
            flush=True,
        )
    done = [
        SimpleNamespace(restored=Image.fromarray(r.numpy()), corrupted=Image.fromarray(c.numpy()), tokens=t)
        for r, c, t in zip(state["restored"], state["corrupted"], state["tokens"], strict=True)
    ]
    return done, state["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--tokenizer", default="cpu")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--m", type=int, default=2)
    ap.add_argument("--par-layers", type=int, default=3, help="SPAE tokenizers: layers decoded by PAR (SPAE §3.2)")
    ap.add_argument("--reference-images", type=int, default=2)
    ap.add_argument("--figure", default=None, help="write a Fig. 7-style PNG here (repo-relative)")
    ap.add_argument("--name", default=None)
    ap.add_argument("--resume", action="store_true", help="skip tasks already in the result file (same settings)")
    ap.add_argument("--chunk", type=int, default=20, help="images restored at a time; a killed run resumes per chunk")
    args = ap.parse_args()
    tok = ImageTokenizer.from_pretrained(args.tokenizer, progress=False)
    lm = LanguageModel.load(args.llm, progress=False)
    cfg = DenoiseConfig(n=args.n, m=args.m, par_layers=args.par_layers)
    den = Denoiser(tok, lm, cfg)
    metric = STLPIPS()
    images = den.prepare(heldout_val_images(args.images))
    original = to_tensor(images, tok.config.resolution)
    name = f"denoise-{args.name or args.llm}"
    weights = checkpoint_digest(tok)
    path = RESULTS / f"{name}.json"
    old = json.loads(path.read_text()) if args.resume and path.is_file() else {}
    settings = {"images": len(images), "n": cfg.n, "m": cfg.m, "llm": args.llm, "tokenizer": args.tokenizer}
    if old and any(old.get("meta", {}).get(k) != v for k, v in settings.items()):
        raise SystemExit(f"{path} holds a run with other settings: drop --resume or pass another --name.")
    update_results(
        name,
        {
            "meta": {
                "llm": args.llm,
                "tokenizer": args.tokenizer,
                "images": len(images),
                "n": cfg.n,
                "m": cfg.m,
                "copies": cfg.copies,
                "ratios": list(cfg.ratios),
                "blur_sigma_px": cfg.blur_sigma,
                "shift": cfg.shift,
                "angle": cfg.angle,
                "data": "Tiny-ImageNet val, 40 held-out classes, 64x64 (not ImageNet-1K val at 128 px)",
                "reconstruction": scores(tok.reconstruct(images), original, metric),
            }
        },
    )
    figure_rows = []
    for task in args.tasks:
        if task in old:
            print(f"{task}: already measured in {path.name} (--resume)")
            continue
        partial = cache_root() / "bench-denoise" / f"{name}-{task}.pt"
        key = text_sha256(json.dumps({**settings, "task": task, "par_layers": cfg.par_layers}, sort_keys=True), weights)
        restored, t_fast = restore_in_chunks(den, images, task, max(1, args.chunk), partial, {"key": key})
        base = den.baselines(images, task)
        row = {
            "llm": scores([r.restored for r in restored], original, metric),
            **{k: scores(v, original, metric) for k, v in base.items()},
            "seconds_per_image": t_fast / len(images),
            "prompts_per_image": den.prompt_count(task),
        }
        if args.reference_images:
            k = min(args.reference_images, len(images))
            t0 = time.perf_counter()
            ref = den.restore(images[:k], task, generate=reference_loop(lm, den.allowed.tolist()))
            t_ref = time.perf_counter() - t0
            row["speed"] = {
                "images": k,
                "reference_s_per_image": t_ref / k,
                "fast_s_per_image": t_fast / len(images),
                "speedup": (t_ref / k) / (t_fast / len(images)),
                "identical_maps": sum(a.tokens == b.tokens for a, b in zip(ref, restored, strict=False)),
            }
        update_results(name, {task: row})
        partial.unlink(missing_ok=True)
        print(
            task,
            {
                k: (round(v["psnr"], 2), round(v["st_lpips"], 4))
                for k, v in row.items()
                if isinstance(v, dict) and "psnr" in v
            },
            row.get("speed"),
            flush=True,
        )
        figure_rows.append((task, restored[0].corrupted, restored[0].restored, base))
    if args.figure:
        from PIL import Image, ImageDraw

        s = 128
        cols = ["original", "corrupted", "v2l + LLM", "no LLM: corrupted", "no LLM: nearest"]
        fig = Image.new("RGB", (s * len(cols), 14 + (s + 14) * len(figure_rows)), "white")
        draw = ImageDraw.Draw(fig)
        for c, label in enumerate(cols):
            draw.text((c * s + 4, 1), label, fill="black")
        for r, (task, corr, rest, base) in enumerate(figure_rows):
            y = 14 + r * (s + 14)
            draw.text((4, y), task, fill="black")
            cells = [images[0], corr, rest, base["corrupted"][0], base.get("nearest", [None])[0]]
            for c, im in enumerate(cells):
                if im is not None:
                    fig.paste(im.resize((s, s), Image.NEAREST), (c * s, y + 14))
        fig.save(REPO / args.figure)


if __name__ == "__main__":
    main()
