"""Benchmark the V2L tokenizer (issue: tokenizer).

    python benchmarks/bench_tokenizer.py quantizer             # chunked matmul search vs torch.cdist + argmin
    python benchmarks/bench_tokenizer.py quality RUN=DIR ...   # PSNR / SSIM / ST-LPIPS of trained tokenizers
    python benchmarks/bench_tokenizer.py speed --tokenizer DIR # tokenize images/s (+ train images/s from its log)
    python benchmarks/bench_tokenizer.py approximate           # faiss HNSW vs exact search: recall@1, speed, PSNR
    python benchmarks/bench_tokenizer.py step-speed --tokenizer DIR  # train images/s: whole model vs decoder only

Quality is measured on the held-out Tiny-ImageNet classes (val split, 40 classes × 10 images, never used in
training) and on imagenet-1k-sample (1,000 images, resized to the preset resolution), at the preset resolution.

`search` (was bench_search.py): the bf16 nearest-code search of a training step, before and after its elementwise
rewrite, in one run: `python benchmarks/bench_tokenizer.py search` (benchmarks/results/search.json).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import torch

from common import REPO, timed, write_result
from v2l.tokenizer.quantizers import nearest_codes


def quantizer(res: dict) -> None:
    from v2l.codebooks import Codebook, find_codebook
    from v2l.tokenizer.quantizers import nearest_codes, nearest_codes_naive

    cb = Codebook.load(find_codebook())
    codes = cb.local_embeddings
    g = torch.Generator().manual_seed(0)
    out = {"codes": codes.shape[0], "dim": codes.shape[1]}

    def sq(x, idx):
        return ((x - codes[idx]) ** 2).sum(-1)

    for images in (1, 8, 32):
        x = torch.nn.functional.normalize(torch.randn(images * 256, codes.shape[1], generator=g), dim=-1)
        t_chunk, a = timed(nearest_codes, x, codes, 8192, repeat=3)
        t_naive, b = timed(nearest_codes_naive, x, codes, repeat=3)
        t_bf16, c = timed(nearest_codes, x, codes, 8192, torch.bfloat16, repeat=3)
        out[f"{images}_images"] = {
            "bf16_s": round(t_bf16, 4),
            "bf16_speedup_vs_fp32_chunked": round(t_chunk / t_bf16, 2),
            "bf16_agreement_with_fp32": round(float((a == c).float().mean()), 4),
            "bf16_max_extra_sq_distance": float((sq(x, c) - sq(x, a)).max()),
            "positions": x.shape[0],
            "chunked_s": round(t_chunk, 4),
            "cdist_s": round(t_naive, 4),
            "speedup_vs_cdist": round(t_naive / t_chunk, 2),
            "agreement_with_cdist": round(float((a == b).float().mean()), 4),
            # where the two pick different codes, how much farther is ours (a float near-tie, not a miss)?
            "max_extra_sq_distance_vs_cdist": float((sq(x, a) - sq(x, b)).max()),
            "cdist_distance_matrix_MB": round(x.shape[0] * codes.shape[0] * 4 / 2**20, 1),
            "chunked_distance_block_MB": round(x.shape[0] * 8192 * 4 / 2**20, 1),
        }
    res["local_quantizer"] = out


def _eval_images(name: str, resolution: int, data_root: str):
    from v2l.data import WebDatasetShards, select_indices

    if name == "tiny-heldout":
        ds = WebDatasetShards("tiny-imagenet-200", split="val", root=data_root)
        idx = select_indices(ds, "heldout", 0, data_name="tiny-imagenet-200")
    elif name == "tiny-train-val":  # the training classes' val images: never trained on, never the test classes
        ds = WebDatasetShards("tiny-imagenet-200", split="val", root=data_root)
        idx = select_indices(ds, "train", 0, data_name="tiny-imagenet-200")[:400]
    else:
        ds = WebDatasetShards("imagenet-1k-sample", root=data_root)
        idx = list(range(len(ds)))
    return [ds[i].image for i in idx]


def quality(
    res: dict,
    runs: list[str],
    data_root: str,
    limit: int | None,
    sets: tuple[str, ...] = ("tiny-heldout", "imagenet-1k-sample"),
) -> None:
    from v2l.eval import score_reconstructions
    from v2l.tokenizer.image_tokenizer import ImageTokenizer

    out = res.setdefault("quality", {})
    for spec in runs:
        label, folder = spec.split("=", 1) if "=" in spec else (Path(spec).name, spec)
        tok = ImageTokenizer.from_pretrained(folder, progress=False)
        r = tok.config.resolution
        # a label measured again keeps its other sets' numbers (e.g. `--sets imagenet-1k-sample` after tiny-heldout)
        entry = {**out.get(label, {}), "folder": folder, "model_config": tok.config.to_dict()}
        cfg_path = Path(folder) / "config.json"
        entry["trained_steps"] = json.loads(cfg_path.read_text()).get("trained_steps")
        for data in sets:
            images = _eval_images(data, r, data_root)[:limit]
            t0 = time.perf_counter()
            q = score_reconstructions(tok, images)  # the library's one scorer (the bench stages use it too)
            entry[data] = {
                "images": len(images),
                "resolution": r,
                "psnr": round(q["psnr"], 3),
                "ssim": round(q["ssim"], 4),
                "st_lpips_alex": round(q["st_lpips"], 4),
                "fid": round(q["fid"], 2) if q["fid"] is not None else None,
                "seconds": round(time.perf_counter() - t0, 1),
            }
            print(label, data, entry[data], flush=True)
        out[label] = entry


def compare(res: dict, runs: list[str], data_root: str, sets: tuple[str, ...]) -> None:
    """Per-image PSNR of two tokenizers (OLD=folder NEW=folder) on the same images: the mean and median gain of the
    second and on how many images it is higher (a mean alone can hide a loss on most images)."""
    from v2l.eval import score_reconstructions
    from v2l.tokenizer.image_tokenizer import ImageTokenizer

    (old_label, old), (new_label, new) = (spec.split("=", 1) for spec in runs)
    out = res.setdefault("per_image_comparison", {}).setdefault(f"{new_label} vs {old_label}", {})
    for data in sets:
        images, scores = _eval_images(data, 64, data_root), []
        for folder in (old, new):
            tok = ImageTokenizer.from_pretrained(folder, progress=False)
            scores.append(torch.tensor(score_reconstructions(tok, images, per_image=True)["psnr_per_image"]))
        d = scores[1] - scores[0]
        out[data] = {
            "images": len(images),
            "psnr_old": round(float(scores[0].mean()), 3),
            "psnr_new": round(float(scores[1].mean()), 3),
            "mean_gain_db": round(float(d.mean()), 3),
            "median_gain_db": round(float(d.median()), 3),
            "new_higher_on": int((d > 0).sum()),
            "new_at_least_24db_on": int((scores[1] >= 24).sum()),
        }
        print(data, out[data], flush=True)


def speed(res: dict, tokenizer: str, data_root: str) -> None:
    from v2l.tokenizer.image_tokenizer import ImageTokenizer, to_tensor

    tok = ImageTokenizer.from_pretrained(tokenizer, progress=False)
    images = _eval_images("tiny-heldout", tok.config.resolution, data_root)[:128]
    tok.tokenize(images[:8])  # warm-up
    t, _ = timed(tok.tokenize, images)
    with torch.inference_mode():
        t_local, _ = timed(lambda: tok.net.encode(to_tensor(images, tok.config.resolution)))
    tok.net.local_quantizer.use_search("hnsw")  # the same tokenizer with the approximate search, same run
    tok.tokenize(images[:8])
    t_hnsw, _ = timed(tok.tokenize, images)
    tok.net.local_quantizer.use_search("exact")
    sp = {
        "tokenize_images_per_s": round(len(images) / t, 1),
        "local_tokens_only_images_per_s": round(len(images) / t_local, 1),
        "tokenize_images_per_s_hnsw": round(len(images) / t_hnsw, 1),
        "hnsw_vs_exact_tokenize": round(t / t_hnsw, 2),
    }
    log = Path(tokenizer).parent / "log.csv"
    if log.is_file():
        rows = list(csv.DictReader(open(log)))
        rates = [float(r["images_per_s"]) for r in rows[len(rows) // 10 :]]
        sp["train_images_per_s_median"] = round(sorted(rates)[len(rates) // 2], 2)
        sp["train_log"] = str(log)
    res["speed"] = sp


def step_speed(res: dict, tokenizer: str, data_root: str, steps: int = 12, batch: int = 32) -> None:
    """Training images/s on this machine, in one process, with `v2l.training.train` from `tokenizer`'s weights:
    the whole model (encoder, 49,152-code search, decoder, EfficientNet perceptual loss: the GPU recipe before its GAN
    starts) against `--train-only decoder` (cached local tokens; MSE alone, as train_decoder_cpu.sh, and with the
    perceptual loss, to separate the two savings). bf16 autocast, batches of `batch`; the median rate of the logged
    rows after the first (warm-up). The decoder runs' one-off token computation is timed apart."""
    import tempfile

    from v2l.tokenizer import local_codebook_for, local_tokens_for
    from v2l.tokenizer.image_tokenizer import ImageTokenizer
    from v2l.training import TokenizerTrainData, TrainConfig, train, training_data

    tok = ImageTokenizer.from_pretrained(tokenizer, progress=False)
    full = training_data(
        tok.vl, tok.codebook, 64, tok.config.num_global, per_class=100, data_root=data_root, progress=False
    )
    n = steps * batch
    data = TokenizerTrainData(full.images, full.indices[:n], full.global_ids[:n], tok.config.resolution)
    base = dict(
        steps=steps,
        batch_size=batch,
        lr=1e-4,
        warmup_steps=0,
        gan_weight=0.0,
        perceptual="effnet",
        mixed_precision="bf16",
        log_every=2,
        checkpoint_every=10**6,
        init=str(tokenizer),
    )
    out = {"images": n, "batch_size": batch, "steps": steps}
    for name, extra in [
        ("whole_model_perceptual", {"perceptual_weight": 1.0}),
        ("decoder_only_perceptual", {"perceptual_weight": 1.0, "train_only": "decoder"}),
        ("decoder_only_mse", {"perceptual_weight": 0.0, "train_only": "decoder"}),
    ]:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            rows = train(
                TrainConfig(**base, **extra),
                tok.config,
                tok.codebook,
                data,
                Path(tmp) / "run",
                progress=False,
                exclude=local_tokens_for(tok.config, tok.codebook)[0],
                local_codebook=local_codebook_for(tok.config, tok.codebook),
            )
            rates = sorted(r["images_per_s"] for r in rows[1:])
            out[name] = {
                "images_per_s_median": round(rates[len(rates) // 2], 2),
                "wall_s": round(time.perf_counter() - t0, 1),
            }
    with torch.no_grad():  # the one-off cost of `--train-only decoder`: the frozen encoder and search, per image
        t, _ = timed(lambda: tok.net.encode(torch.stack([data[i]["pixels"] for i in range(batch)])), repeat=2)
    out["local_token_cache_images_per_s"] = round(batch / t, 2)
    for name in ("decoder_only_perceptual", "decoder_only_mse"):
        out[name]["vs_whole_model"] = round(
            out[name]["images_per_s_median"] / out["whole_model_perceptual"]["images_per_s_median"], 2
        )
    res["train_step_speed"] = out


def approximate(res: dict, tokenizer: str, data_root: str, n_images: int = 128) -> None:
    """Exact chunked search vs faiss HNSW on the real projected local codebook and real encoder outputs."""
    from v2l.eval import psnr
    from v2l.tokenizer.image_tokenizer import ImageTokenizer, to_images, to_tensor
    from v2l.tokenizer.quantizers import HNSWSearch, nearest_codes

    tok = ImageTokenizer.from_pretrained(tokenizer, progress=False)
    net, r = tok.net, tok.config.resolution
    images = _eval_images("tiny-heldout", r, data_root)[:n_images]
    x = to_tensor(images, r)
    with torch.inference_mode():
        z = net.encoder(x)
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).contiguous()
        codes = net.local_quantizer.search_embeddings()
        g = net.global_quantizer(tok.vl.encode_image(images))[1]
    t_exact, exact = timed(nearest_codes, flat, codes, 8192, repeat=2)
    t_bf16, bf16 = timed(nearest_codes, flat, codes, 8192, torch.bfloat16, repeat=2)  # the cpu preset's search
    t_build, index = timed(HNSWSearch, codes, 32, 64, 64)

    def sq(idx):
        return ((flat - codes[idx]) ** 2).sum(-1)

    def rec_psnr(idx):
        with torch.inference_mode():
            y = net.decode_tokens(idx.view(z.shape[0], z.shape[2], z.shape[3]), g)
        return round(float(psnr(to_tensor(to_images(y), r), x).mean()), 3)

    out = {
        "codes": codes.shape[0],
        "distinct_code_vectors": int(torch.unique(codes, dim=0).shape[0]),
        "dim": codes.shape[1],
        "images": len(images),
        "positions": flat.shape[0],
        "exact_s": round(t_exact, 4),
        "hnsw_build_s": round(t_build, 2),
        "hnsw": {"M": 32, "efConstruction": 64},
        "psnr_exact": rec_psnr(exact),
        "bf16_chunked": {
            "search_s": round(t_bf16, 4),
            "speedup_vs_exact": round(t_exact / t_bf16, 2),
            "recall_at_1": round(float((bf16 == exact).float().mean()), 4),
            "recall_at_1_up_to_ties": round(float((sq(bf16) <= sq(exact) + 1e-5).float().mean()), 4),
            "psnr": rec_psnr(bf16),
        },
        "by_ef_search": {},
    }
    for ef in (16, 32, 64, 128, 256):
        index.index.hnsw.efSearch = ef
        t, idx = timed(index, flat, repeat=2)
        out["by_ef_search"][ef] = {
            "search_s": round(t, 4),
            "speedup_vs_exact": round(t_exact / t, 2),
            "recall_at_1": round(float((idx == exact).float().mean()), 4),
            # many local rows are exact duplicates (" cat" / "cat" / "Cat" embed identically with an uncased text
            # encoder): a different id at the same distance is not a miss
            "recall_at_1_up_to_ties": round(float((sq(idx) <= sq(exact) + 1e-5).float().mean()), 4),
            "mean_extra_sq_distance": float((sq(idx) - sq(exact)).mean()),
            "psnr": rec_psnr(idx),
        }
        print(ef, out["by_ef_search"][ef], flush=True)
    res["approximate_search"] = out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["quantizer", "quality", "compare", "speed", "approximate", "step-speed"])
    ap.add_argument("runs", nargs="*", help="LABEL=TOKENIZER_FOLDER for quality; two (old, new) for compare")
    ap.add_argument("--tokenizer", default="cpu")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--sets", default="tiny-heldout,imagenet-1k-sample", help="comma-separated evaluation sets")
    ap.add_argument("--data-root", default=os.environ.get("V2L_DATA") or str(REPO.parent / "shared" / "data"))
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("V2L_THREADS", "2")))
    path = Path(__file__).resolve().parent / "results" / "tokenizer.json"
    res = json.loads(path.read_text()) if path.is_file() else {}
    res.pop("machine", None)
    res.pop("date", None)
    if args.what == "quantizer":
        quantizer(res)
    elif args.what == "quality":
        quality(res, args.runs, args.data_root, args.limit, tuple(args.sets.split(",")))
    elif args.what == "compare":
        compare(res, args.runs, args.data_root, tuple(args.sets.split(",")))
    elif args.what == "approximate":
        approximate(res, args.tokenizer, args.data_root)
    elif args.what == "step-speed":
        step_speed(res, args.tokenizer, args.data_root)
    else:
        speed(res, args.tokenizer, args.data_root)
    write_result("tokenizer", res)


# ---- `search`: The bf16 nearest-code search of a training step, before and after its elementwise rewrite, in one run:
def search_previous(x: torch.Tensor, codebook: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
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


def search_best_of(fn, repeat: int = 3):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def search_main() -> None:
    torch.manual_seed(0)
    codebook = torch.nn.functional.normalize(torch.randn(49152, 576), dim=-1)
    x = torch.randn(4096, 576) * 0.1
    t_old, a = search_best_of(lambda: search_previous(x, codebook))
    t_new, b = search_best_of(lambda: nearest_codes(x, codebook, 8192, torch.bfloat16))
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
    if sys.argv[1:2] == ["search"]:
        sys.argv.pop(1)
        search_main()
    else:
        main()
