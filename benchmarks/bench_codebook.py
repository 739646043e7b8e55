"""Benchmark the codebook build (issue: codebooks).

1. Expansion throughput on the real LLM: one prompt per call (as the reference code does) vs batched vs batched with
   the shared prefix's KV cache (with log-probabilities, and the build's ids-only primitive) vs the build's greedy
   pass over both levels, in one run, with the agreement between them. `--screen N`: the bfloat16 screen's
   embedding error and speed on N subwords' bigrams and trigrams.
2. `--full-build`: the default `v2l codebook build` from scratch in a subprocess, killed once after `--kill-after`
   seconds and resumed (the resumable path), with total wall time, chunks reused and the codebook sizes.
3. `v2l words` on a few real photos from imagenet-1k-sample.
4. `--dedupe`: the default build vs `v2l codebook build --dedupe encoder` (sizes, case-only duplicates, raw words).
5. `--ceiling`: the batched primitive's share of this machine's float32 matmul rate (with the LM head in float32),
   the primitive with the build's screened head (`v2l.backbones.lm_head`), the weight bandwidth of one prompt per
   call, and the primitive with the whole LLM in bfloat16 (speed, top-1 agreement with float32), alone and as a
   screen verified in float32 where its margin is within the logit error (the share float32 must redo).

    python benchmarks/bench_codebook.py --full-build --kill-after 240 --variants --screen 1000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from common import REPO, timed, write_result


def _expansion_inputs(n: int):
    """The real LLM, the prefix "a photo of", the allowed (`word`) mask and n subword candidates (every 7th)."""
    from v2l.backbones import LanguageModel
    from v2l.codebooks import candidate_subwords, word_mask

    lm = LanguageModel.load("smollm2-135m", progress=False)
    return lm, lm.encode("a photo of", add_special_tokens=True), word_mask(lm), candidate_subwords(lm)[::7][:n]


def expansion(res: dict, n_batched: int, n_naive: int, repeat: int) -> None:
    """One prompt per call (as the reference code does: every bigram and every trigram its own call) vs the build's
    paths, in one run: batched, batched + shared prefix, and the build's default (M = 1): both levels as one greedy
    pass reusing each level's KV cache (`extend_greedy`). The ids-only primitive and the greedy pass run twice: as the
    build ran them before (256 prompts per batch, float32 LM head) and as it runs them now (`llm_batch_size` prompts
    per batch, the LM head screened in bfloat16 with a float32 proof: `v2l.backbones.lm_head`). Rates are LLM
    next-token predictions per second; times are the best of `repeat`."""
    from v2l.codebooks import CodebookConfig, extend_greedy, extend_once

    lm, prefix, allowed, words = _expansion_inputs(n_batched)
    big = CodebookConfig().llm_batch_size

    def one_per_call():
        out = []
        for w in words[:n_naive]:
            row = [w]
            for _ in range(2):  # the bigram's prompt, then the trigram's
                row.append(lm.next_token_topk([prefix + row], k=1, allowed=allowed)[1][0, 0].item())
            out.append(row)
        return out

    def levels(rows, cache):
        bigrams = extend_once(lm, rows, prefix, 1, 256, allowed, prefix_cache=cache)
        return extend_once(lm, bigrams, prefix, 1, 256, allowed, prefix_cache=cache)

    def as_before(fn):  # 256 prompts per batch, float32 head
        lm.screen_head = False
        try:
            return fn()
        finally:
            lm.screen_head = True

    def ids_only(bs):
        return lm.next_token_ids(rows, k=1, batch_size=bs, allowed=allowed, prefix=lm.prefix_cache(prefix))

    def greedy(bs):
        return extend_greedy(lm, rows, 2, allowed, bs, prefix_cache=lm.prefix_cache(prefix))

    rows = [[w] for w in words]
    t_naive, naive = timed(one_per_call, repeat=repeat)
    t_batch, (_, b) = timed(
        lm.next_token_topk, [prefix + [w] for w in words], k=1, batch_size=256, allowed=allowed, repeat=repeat
    )
    t_pref, (_, p) = timed(
        lambda: lm.next_token_topk(rows, k=1, batch_size=256, allowed=allowed, prefix=lm.prefix_cache(prefix)),
        repeat=repeat,
    )
    t_ids0, ids0 = timed(lambda: as_before(lambda: ids_only(256)), repeat=repeat)
    t_ids, ids = timed(lambda: ids_only(big), repeat=repeat)
    fallback = lm._head_rows[2].fallback_rows / repeat if lm._head_rows and lm._head_rows[2] else None
    t_levels, by_level = timed(lambda: as_before(lambda: levels(rows, lm.prefix_cache(prefix))), repeat=repeat)
    t_greedy0, greedy0 = timed(lambda: as_before(lambda: greedy(256)), repeat=repeat)
    t_greedy, greedy_new = timed(lambda: greedy(big), repeat=repeat)
    naive_rate = 2 * n_naive / t_naive
    n = len(words)
    res["expansion"] = {
        "prompts_batched": n,
        "prompts_one_per_call": 2 * n_naive,
        "repeat": repeat,
        "llm_batch_size": big,
        "head_screened": fallback is not None,
        "head_fallback_rows_share": None if fallback is None else round(fallback / n, 4),
        "one_per_call_predictions_per_s": round(naive_rate, 1),
        "batched_predictions_per_s": round(n / t_batch, 1),
        "batched_prefix_cache_predictions_per_s": round(n / t_pref, 1),
        "batched_prefix_cache_ids_only_before_predictions_per_s": round(n / t_ids0, 1),
        "batched_prefix_cache_ids_only_predictions_per_s": round(n / t_ids, 1),
        "two_levels_one_at_a_time_predictions_per_s": round(2 * n / t_levels, 1),
        "two_levels_greedy_before_predictions_per_s": round(2 * n / t_greedy0, 1),
        "two_levels_greedy_kv_reuse_predictions_per_s": round(2 * n / t_greedy, 1),
        "ratio_batched_vs_one_per_call": round((n / t_batch) / naive_rate, 1),
        "ratio_batched_prefix_cache_vs_one_per_call": round((n / t_pref) / naive_rate, 1),
        "ratio_batched_prefix_cache_ids_only_before_vs_one_per_call": round((n / t_ids0) / naive_rate, 1),
        "ratio_batched_prefix_cache_ids_only_vs_one_per_call": round((n / t_ids) / naive_rate, 1),
        "ratio_greedy_before_vs_one_per_call": round((2 * n / t_greedy0) / naive_rate, 1),
        "ratio_greedy_vs_one_per_call": round((2 * n / t_greedy) / naive_rate, 1),
        "ratio_greedy_vs_levels_one_at_a_time": round(t_levels / t_greedy, 2),
        "ratio_ids_only_now_vs_before": round(t_ids0 / t_ids, 2),
        "ratio_greedy_now_vs_before": round(t_greedy0 / t_greedy, 2),
        "top1_identical_prefix_cache_vs_batched": float((b == p).float().mean()),
        "top1_identical_ids_only_vs_batched": float((b == ids).float().mean()),
        "top1_identical_ids_only_before_vs_batched": float((b == ids0).float().mean()),
        "top1_identical_one_per_call_vs_batched": float(
            (b[:n_naive, 0] == torch.tensor([r[1] for r in naive])).float().mean()
        ),
        "entries_identical_greedy_vs_levels": sum(g == x for g, x in zip(greedy_new, by_level, strict=True)) / n,
        "entries_identical_greedy_vs_before": sum(g == x for g, x in zip(greedy_new, greedy0, strict=True)) / n,
        "entries_identical_greedy_vs_one_per_call": sum(g == x for g, x in zip(greedy_new, naive, strict=False))
        / n_naive,
    }


def ceiling(res: dict, n: int, n_naive: int, repeat: int) -> None:
    """Why the expansion's ratio to one prompt per call stops near 30-40x on a 2-core CPU, in one run: the batched
    primitive's matrix products against this machine's float32 matmul rate on the decoder's own shapes, the one-
    prompt-per-call path against the bytes of weights it reads per call, and the primitive with the LLM in bfloat16
    (faster, but is its top-1 still float32's?), alone and as a screen that float32 verifies (`_bf16_cascade`)."""
    import copy

    from v2l.backbones import LanguageModel
    from v2l.codebooks import CodebookConfig

    lm, prefix, allowed, words = _expansion_inputs(n)
    big = CodebookConfig().llm_batch_size
    rows = [[w] for w in words]
    linear = [m for m in lm.model.get_decoder().modules() if isinstance(m, torch.nn.Linear)]
    d = lm.hidden_size
    flops = 2 * (sum(m.weight.numel() for m in linear) + int(allowed.sum()) * d)  # per prediction; attention ~0
    lm.screen_head = False  # the float32 work the flop count describes
    t_ids, ids = timed(
        lambda: lm.next_token_ids(rows, batch_size=big, allowed=allowed, prefix=lm.prefix_cache(prefix)), repeat=repeat
    )
    lm.screen_head = True
    t_scr, ids_scr = timed(
        lambda: lm.next_token_ids(rows, batch_size=big, allowed=allowed, prefix=lm.prefix_cache(prefix)), repeat=repeat
    )
    shapes = sorted({tuple(m.weight.shape) for m in linear})
    ws = [torch.randn(o, i) for o, i in shapes]
    xs = [torch.randn(big, w.shape[1]) for w in ws]
    t_mm, _ = timed(lambda: [x @ w.T for x, w in zip(xs, ws, strict=True) for _ in range(10)], repeat=repeat)
    mm_flops = 10 * sum(2 * big * w.numel() for w in ws)
    t_naive, _ = timed(
        lambda: [lm.next_token_topk([prefix + r], k=1, allowed=allowed) for r in rows[:n_naive]], repeat=repeat
    )
    weight_bytes = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    lm16 = LanguageModel(copy.deepcopy(lm.model).to(torch.bfloat16), lm.tokenizer, lm.name, lm.source)
    t16, ids16 = timed(
        lambda: lm16.next_token_ids(rows, batch_size=big, allowed=allowed, prefix=lm16.prefix_cache(prefix)),
        repeat=repeat,
    )
    cascade = _bf16_cascade(lm, lm16, rows, prefix, allowed, n / t_ids, n / t16)
    head = _head_alone(lm, rows, prefix, allowed, big, repeat)
    naive_rate = n_naive / t_naive
    res["expansion_ceiling"] = {
        "prompts": n,
        "prompts_one_per_call": n_naive,
        "repeat": repeat,
        "llm_batch_size": big,
        "primitive_fp32_head_predictions_per_s": round(n / t_ids, 1),
        "primitive_fp32_head_gflop_per_s": round(n * flops / t_ids / 1e9, 1),
        f"fp32_matmul_gflop_per_s_decoder_shapes_{big}_rows": round(mm_flops / t_mm / 1e9, 1),
        "primitive_fp32_head_share_of_matmul_rate": round((n * flops / t_ids) / (mm_flops / t_mm), 3),
        "primitive_screened_head_predictions_per_s": round(n / t_scr, 1),
        "top1_identical_screened_vs_fp32_head": float((ids_scr == ids).float().mean()),
        "one_per_call_predictions_per_s": round(naive_rate, 1),
        "one_per_call_weight_gb_read_per_s": round(naive_rate * weight_bytes / 1e9, 1),
        "ratio_primitive_fp32_head_vs_one_per_call": round((n / t_ids) / naive_rate, 1),
        "ratio_primitive_screened_head_vs_one_per_call": round((n / t_scr) / naive_rate, 1),
        "bf16_llm_primitive_predictions_per_s": round(n / t16, 1),
        "ratio_bf16_primitive_vs_one_per_call": round((n / t16) / naive_rate, 1),
        "top1_identical_bf16_vs_fp32": float((ids16 == ids).float().mean()),
        "bf16_screen_fp32_verify": cascade,
        "lm_head_alone": head,
    }


def _head_alone(lm, rows, prefix, allowed, big: int, repeat: int) -> dict:
    """The LM head alone on the primitive's real hidden states, `big` rows at a time: the float32 product's top-1 vs
    the screened head (`v2l.backbones.lm_head.ScreenedHead`), with the share of rows its proof sent to float32."""
    from v2l.backbones.lm_head import ScreenedHead

    ids = allowed.nonzero().flatten()
    w = lm.model.get_output_embeddings().weight[ids].contiguous()
    with torch.inference_mode():
        hs = [h for _, h in lm._next_hidden(rows, lm.prefix_cache(prefix), big, False, "hidden")]
        screened = ScreenedHead(w)
        t32, ref = timed(lambda: [(h @ w.T).topk(1, dim=-1).indices for h in hs], repeat=repeat)
        tsc, got = timed(lambda: [screened.topk(h, 1) for h in hs], repeat=repeat)
    n = sum(len(h) for h in hs)
    return {
        "rows": n,
        "fp32_ms_per_1024_rows": round(1024 * 1000 * t32 / n, 1),
        "screened_ms_per_1024_rows": round(1024 * 1000 * tsc / n, 1),
        "speedup": round(t32 / tsc, 2),
        "fp32_fallback_share": round(screened.fallback_rows / repeat / n, 4),
        "top1_identical": float(torch.cat(ref).eq(torch.cat(got)).float().mean()),
    }


def _bf16_cascade(lm, lm16, rows, prefix, allowed, rate32: float, rate16: float) -> dict:
    """A bfloat16 screen with float32 verification, as the build's text screen does (`v2l.codebooks.screening`):
    accept the bf16 top-1 where its margin over the runner-up is at least 2δ (every logit within δ of float32's
    cannot reorder them), run float32 on the other rows. For each δ: the share of rows float32 must redo, the rows
    accepted with a top-1 float32 does not choose, and the rate the cascade would reach (bf16 on every row + fp32 on
    the redone share)."""
    ids = allowed.nonzero().flatten()
    w = lm.model.get_output_embeddings().weight[ids]

    def logits(m):
        out = torch.empty(len(rows), len(ids))
        with torch.inference_mode():
            for idx, h in m._next_hidden(rows, m.prefix_cache(prefix), 256, False, "logits"):
                out[idx] = (h @ w.to(h.dtype).T).float()  # each model's own precision, its head included
        return out

    l32, l16 = logits(lm), logits(lm16)
    top2 = l16.topk(2, dim=-1)
    margin, same = top2.values[:, 0] - top2.values[:, 1], top2.indices[:, 0] == l32.argmax(-1)
    err = (l16 - l32).abs().max(-1).values
    out = {
        "largest_logit_error": round(float(err.max()), 3),
        "median_row_largest_error": round(float(err.median()), 3),
        "top1_identical": round(float(same.float().mean()), 4),
        "by_delta": {},
    }
    for delta in (0.05, 0.1, 0.2, 0.3, 0.5, float(err.max())):
        redo = margin < 2 * delta
        share = float(redo.float().mean())
        out["by_delta"][f"{delta:.3g}"] = {
            "fp32_redone_share": round(share, 3),
            "accepted_wrong_top1": int((~same & ~redo).sum()),
            "cascade_predictions_per_s": round(1 / (1 / rate16 + share / rate32), 1),
        }
    return out


def screen(res: dict, n: int, data_root: str) -> None:
    """The bfloat16 screen's error and speed on real expanded entries (the bigrams and trigrams of `n` subwords):
    ‖e_bf16 − e_fp32‖ of each template-averaged embedding (the bound `v2l.codebooks.screening` assumes is
    SCREEN_BOUND, checked on every build) and the time of each, best of 2."""
    from v2l.backbones import LanguageModel, load_vl
    from v2l.codebooks import CodebookConfig, candidate_subwords, extend_greedy, resolve_templates, word_mask
    from v2l.codebooks.local import embed_texts
    from v2l.codebooks.screening import SCREEN_BOUND

    cfg = CodebookConfig()
    lm, vl = LanguageModel.load(cfg.llm, progress=False), load_vl(cfg.vl)
    words = candidate_subwords(lm)[3::11][:n]
    rows = extend_greedy(
        lm,
        [[w] for w in words],
        2,
        word_mask(lm),
        256,
        prefix_cache=lm.prefix_cache(lm.encode(cfg.prefix, add_special_tokens=True)),
    )
    texts = sorted({lm.decode(r[:k]).strip() for r in rows for k in (2, 3)} - {""})
    templates = resolve_templates(cfg.templates)
    t32, e32 = timed(embed_texts, vl, texts, templates, progress=False, repeat=2)
    t16, e16 = timed(embed_texts, vl, texts, templates, progress=False, bf16=True, repeat=2)
    err = (e16 - e32).norm(dim=1)
    res["screen"] = {
        "texts": len(texts),
        "fp32_texts_per_s": round(len(texts) / t32, 1),
        "bf16_texts_per_s": round(len(texts) / t16, 1),
        "speed_ratio": round(t32 / t16, 2),
        "error_max": round(float(err.max()), 5),
        "error_p99": round(float(err.quantile(0.99)), 5),
        "error_mean": round(float(err.mean()), 5),
        "bound_assumed": SCREEN_BOUND,
    }


def full_build(res: dict, kill_after: float, data_root: str, variants: bool) -> None:
    from v2l.codebooks import CodebookConfig
    from v2l.codebooks.build import parts_root
    from v2l.paths import cache_root

    folder = cache_root() / "codebooks" / CodebookConfig().key()
    if folder.exists() or any(parts_root().glob("*/*.safetensors")):
        raise SystemExit(
            f"{folder} or {parts_root()} exists: set V2L_CACHE to a folder holding only the de-quantised "
            "LLM to time a full build."
        )
    cmd = [sys.executable, "-c", "from v2l.cli import main; main()", "codebook", "build", "--data-root", data_root]
    cmd += ["--variants"] if variants else []
    env = {**os.environ, "V2L_THREADS": "2"}
    t0 = time.perf_counter()
    runs = []
    if kill_after:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        done = sorted(p.name for p in parts_root().glob("*/*.safetensors"))
        runs.append(
            {
                "killed_after_s": kill_after,
                "chunks_finished_before_kill": len(done),
                "tmp_files_left": len(list(parts_root().glob("*/*.tmp"))),
            }
        )
    t1 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    t_resumed = time.perf_counter() - t1
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    wall = time.perf_counter() - t0
    manifest = json.loads((folder / "manifest.json").read_text())
    res["full_build"] = {
        "command": "v2l codebook build --data-root DATA" + (" --variants" if variants else ""),
        "wall_s_total": round(wall, 1),
        "wall_s_resumed_run": round(t_resumed, 1),
        "runs": runs,
        "counts": manifest["counts"],
        "parts_mb": round(sum(p.stat().st_size for p in parts_root().glob("*/*.safetensors")) / 2**20, 1),
        "config": manifest["config"],
        "stdout": out.stdout.strip().splitlines(),
    }
    if variants:
        from v2l.codebooks import variant_folder

        res["table5_variants"] = {
            f"max_ngram={n}": json.loads((variant_folder(CodebookConfig(), n) / "manifest.json").read_text())["counts"]
            for n in (1, 2)
        }
        res["table5_variants"]["max_ngram=3"] = manifest["counts"]


def words(res: dict, data_root: str) -> None:
    from v2l.data import WebDatasetShards
    from v2l.tokenizer import image_words

    ds = WebDatasetShards("imagenet-1k-sample", root=data_root)
    picks = [ds[i] for i in range(0, 1000, 125)]  # what `v2l data export ... --every 125 --limit 8` writes
    rows = image_words([s.image for s in picks], top=4)
    res["words"] = [{"label": s.label, "words": r.words, "scores": r.scores} for s, r in zip(picks, rows, strict=True)]


def dedupe(res: dict, data_root: str) -> None:
    """The default build vs `--dedupe encoder` (both must be built): sizes, case-only duplicates, raw nearest words."""
    import dataclasses

    from v2l.codebooks import Codebook, CodebookConfig
    from v2l.data import WebDatasetShards
    from v2l.paths import cache_root
    from v2l.tokenizer import image_words

    ds = WebDatasetShards("imagenet-1k-sample", root=data_root)
    picks = [ds[i] for i in range(0, 1000, 125)]
    out = {}
    for mode in ("text", "encoder"):
        folder = cache_root() / "codebooks" / dataclasses.replace(CodebookConfig(), dedupe=mode).key()
        if not (folder / "manifest.json").is_file():
            raise SystemExit(f"{folder} is not built: run `v2l codebook build --dedupe {mode}` first.")
        cb = Codebook.load(folder)
        lower = [e["text"].lower() for e in cb.entries]
        rows = image_words([s.image for s in picks], top=4, codebook=cb, distinct=False)
        out[mode] = {
            "counts": cb.manifest["counts"],
            "case_only_duplicates": len(lower) - len(set(lower)),
            "words_all_forms": {s.label: r.words for s, r in zip(picks, rows, strict=True)},
        }
    res["dedupe"] = out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full-build", action="store_true")
    ap.add_argument(
        "--kill-after",
        type=float,
        default=240.0,
        help="kill the build once after this many seconds and "
        "resume it; 0: one uninterrupted build, recorded under `uninterrupted_run`",
    )
    ap.add_argument("--variants", action="store_true", help="build Table 5's variants in the same run")
    ap.add_argument("--naive", type=int, default=64)
    ap.add_argument("--batched", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-expansion", action="store_true")
    ap.add_argument(
        "--ceiling",
        action="store_true",
        help="why the expansion ratio stops where it does: matmul rate, "
        "weight bandwidth, bfloat16 speed and top-1 agreement (recorded under `expansion_ceiling`)",
    )
    ap.add_argument(
        "--screen", type=int, default=0, help="measure the bfloat16 screen on this many subwords' bigrams and trigrams"
    )
    ap.add_argument("--dedupe", action="store_true", help="compare the default build with --dedupe encoder")
    ap.add_argument("--data-root", default=os.environ.get("V2L_DATA") or str(REPO.parent / "shared" / "data"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    path = Path(__file__).resolve().parent / "results" / "codebook.json"
    res = json.loads(path.read_text()) if path.is_file() else {}
    res.pop("machine", None)
    res.pop("date", None)
    # `--kill-after 0`: an uninterrupted build, recorded (with this run's expansion ratios) beside the killed one
    into = res.setdefault("uninterrupted_run", {}) if args.full_build and not args.kill_after else res
    if not args.skip_expansion:
        expansion(into, args.batched, args.naive, args.repeat)
    if args.ceiling:
        ceiling(res, args.batched, args.naive, args.repeat)
    if args.screen:
        screen(into, args.screen, args.data_root)
    if args.full_build:
        full_build(into, args.kill_after, args.data_root, args.variants)
    words(res, args.data_root)
    if args.dedupe:
        dedupe(res, args.data_root)
    write_result("codebook", res)


if __name__ == "__main__":
    main()
