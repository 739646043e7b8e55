"""First use: the README's `v2l tokenize` right after set-up, on an empty cache, for this tree and (optionally) an
older v2l, in the same run on the same machine.

    python benchmarks/bench_first_use.py --data-root ../shared/data [--before REV]

`--before REV` checks REV out into a temporary git worktree and times it first (its first `tokenize` embedded the
whole 49,152-token local codebook: minutes); then this tree. Each run gets a fresh `V2L_CACHE`. Writes
benchmarks/results/first_use.json (key "first_tokenize").

`pack` (the release step, was ship_local_codebook.py): pack the default local codebook (SmolLM2 vocabulary × conse)
into the package so the first `v2l tokenize` unpacks it in about a second instead of embedding 49,152 tokens, then
measure what float16 storage changes: `python benchmarks/bench_first_use.py pack [--from EMBEDDINGS.safetensors]`
(first_use.json, key "shipped_local_codebook").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, update_results

IMAGE = "samples/n01440764_tench.jpg"


def timed_tokenize(src: Path, work: Path, data_root: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "V2L_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-c", "from v2l.cli import main; main()"]
    subprocess.run(
        [
            *cli,
            "data",
            "export",
            "imagenet-1k-sample",
            "--every",
            "125",
            "--limit",
            "8",
            "-o",
            "samples",
            "--data-root",
            data_root,
        ],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
    )
    code, seconds, rss_mb, stdout, stderr = run_measured([*cli, "tokenize", IMAGE], cwd=work, env=env)
    if code != 0:
        raise SystemExit(f"tokenize failed under {src}: {stderr[-2000:]}")
    return {"seconds": round(seconds, 1), "peak_rss_mb": rss_mb, "global": stdout.splitlines()[1].strip()}


def run_measured(cmd: list[str], **kw) -> tuple[int, float, int, str, str]:
    """(exit code, wall seconds, peak RSS in MB of that process, stdout, stderr)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, **kw)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return proc.returncode, seconds, round(usage.ru_maxrss / 1024), out.read(), err.read()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--before", help="a git revision to time first (e.g. the commit before the shipped local codebook)")
    args = ap.parse_args()
    out: dict = {"command": f"v2l tokenize {IMAGE} (empty V2L_CACHE, right after set-up)"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.before:
            tree = tmp / "before-src"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(tree), args.before],
                cwd=REPO,
                check=True,
                capture_output=True,
            )
            try:
                (tmp / "before").mkdir()
                out["before"] = {
                    "revision": args.before,
                    **timed_tokenize(tree / "src", tmp / "before", args.data_root),
                }
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
        (tmp / "after").mkdir()
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        out["after"] = {"revision": head.stdout.strip(), **timed_tokenize(REPO / "src", tmp / "after", args.data_root)}
    if "before" in out:
        out["speed-up"] = round(out["before"]["seconds"] / out["after"]["seconds"], 1)
        out["same_global_words"] = out["before"]["global"] == out["after"]["global"]
    update_results("first_use", {"first_tokenize": out})
    print(out)


# ---- `pack`: the release step that makes first use fast (was ship_local_codebook.py) ----


def pack_main() -> None:
    """Pack the default local codebook into the package (the release step behind the first use measured above)."""
    import json

    import torch
    from safetensors.torch import load_file

    from v2l.backbones import LanguageModel, load_vl
    from v2l.codebooks import shipped_vocab
    from v2l.codebooks.artefact import LOCAL_PACK, LOCAL_PACK_IDENTITY
    from v2l.codebooks.local import embed_local_codebook, local_identity, pack_local_codebook, unpack_local_codebook

    ap = argparse.ArgumentParser()
    ap.add_argument("--from", dest="source", help="precomputed exact embeddings (safetensors, key 'embeddings')")
    ap.add_argument("--images", type=int, default=64, help="held-out images for the agreement measurement")
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args()
    folder = shipped_vocab("smollm2-135m", "conse")
    manifest = json.loads((folder / "manifest.json").read_text())
    lm, vl = LanguageModel.load("smollm2-135m", progress=False), load_vl("conse")
    assert lm.vocab.sha256 == manifest["llm"]["vocabulary_sha256"] and vl.fingerprint() == manifest["vl"]
    t0 = time.perf_counter()
    if args.source:
        exact = load_file(args.source)["embeddings"]
    else:
        exact = embed_local_codebook(
            vl,
            lm.vocab,
            manifest["templates"],
            manifest["config"]["renormalize_templates"],
            manifest["config"]["batch_size"],
        )
    seconds = time.perf_counter() - t0
    identity = local_identity(manifest)
    data = pack_local_codebook(exact, identity, lm.vocab.display, lm.vocab.kinds)
    (folder / LOCAL_PACK).write_bytes(data)
    (folder / LOCAL_PACK_IDENTITY).write_text(json.dumps(identity, indent=2) + "\n")
    t1 = time.perf_counter()
    _, shipped = unpack_local_codebook(data)
    unpack_s = time.perf_counter() - t1
    rel = ((shipped - exact).norm(dim=1) / exact.norm(dim=1)).max().item()
    result = {
        "file": f"{LOCAL_PACK}",
        "bytes": len(data),
        "tokens": int(exact.shape[0]),
        "distinct_rows": int(torch.unique(exact.half(), dim=0).shape[0]),
        "embed_seconds": None if args.source else round(seconds, 1),
        "unpack_seconds": round(unpack_s, 2),
        "max_relative_row_error": rel,
        **pack_agreement(exact, shipped, args.images, args.data_root),
    }
    update_results("first_use", {"shipped_local_codebook": result})
    print(json.dumps(result, indent=2))


def pack_agreement(exact, shipped, n: int, data_root) -> dict:
    """Tokenize and reconstruct `n` held-out Tiny-ImageNet images with the shipped checkpoint on each codebook."""
    import torch

    from v2l.data import WebDatasetShards, select_indices
    from v2l.eval import psnr
    from v2l.tokenizer import ImageTokenizer
    from v2l.tokenizer.image_tokenizer import to_tensor

    tok = ImageTokenizer.from_pretrained("cpu", progress=False)
    ds = WebDatasetShards("tiny-imagenet-200", split="val", root=data_root)
    idx = select_indices(ds, "heldout", 0, data_name="tiny-imagenet-200")[::5][:n]
    images = [ds[i].image for i in idx]
    x = to_tensor(images, tok.config.resolution)
    gids = tok.global_ids(images)
    out = {}
    for name, local in (("exact", exact), ("shipped", shipped)):
        tok.net.local_quantizer.codebook.copy_(local)  # the frozen VL rows; the projector is applied on top
        with torch.inference_mode():
            _, ids, _ = tok.net.encode(x)
            x_hat = tok.net.decode_tokens(ids, gids)
        out[name] = (ids, psnr(x_hat, x).mean().item())
    same = (out["exact"][0] == out["shipped"][0]).float().mean().item()
    return {
        "images": len(images),
        "local_token_agreement": same,
        "psnr_exact": round(out["exact"][1], 3),
        "psnr_shipped": round(out["shipped"][1], 3),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["pack"]:
        sys.argv.pop(1)
        pack_main()
    else:
        main()
