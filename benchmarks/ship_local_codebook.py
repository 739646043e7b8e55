"""Pack the default local codebook (SmolLM2 vocabulary × conse, the shipped global list's templates) into the package,
so the first `v2l tokenize` after set-up unpacks it in about a second instead of embedding 49,152 tokens.

    python benchmarks/ship_local_codebook.py [--from EMBEDDINGS.safetensors]

Computes the embeddings with `embed_local_codebook` (about 2 minutes on 2 cores) unless `--from` gives a file of them
("embeddings", (49152, 384)), checks them against the shipped manifest's models, and writes
src/v2l/resources/codebooks/smollm2-135m__conse/local_codebook.{bin,json}. Then it measures what float16 storage
changes: the local tokens and reconstructions of held-out images with the exact codebook vs the shipped one
(benchmarks/results/first_use.json, key "shipped_local_codebook").
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from safetensors.torch import load_file

from common import update_results
from v2l.backbones import LanguageModel, load_vl
from v2l.codebooks import shipped_vocab
from v2l.codebooks.artefact import LOCAL_PACK, LOCAL_PACK_IDENTITY
from v2l.codebooks.local import embed_local_codebook, local_identity, pack_local_codebook, unpack_local_codebook


def main() -> None:
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
        **agreement(exact, shipped, args.images, args.data_root),
    }
    update_results("first_use", {"shipped_local_codebook": result})
    print(json.dumps(result, indent=2))


def agreement(exact: torch.Tensor, shipped: torch.Tensor, n: int, data_root) -> dict:
    """Tokenize and reconstruct `n` held-out Tiny-ImageNet images with the shipped checkpoint on each codebook."""
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
    main()
