"""Table 2 in miniature: how much of an image's meaning its global words keep (`v2l.eval.semantic`).

    python benchmarks/bench_semantic.py                       # the default (cached or shipped) codebook
    python benchmarks/bench_semantic.py --codebook PATH --name VARIANT

On the 40 held-out Tiny-ImageNet classes (their 2,400 evaluation images; 5-way 1-shot nearest-support accuracy over
1,000 seeded episodes) and on imagenet-1k-sample (1,000 classes, one image each: no episodes), at K_g = 5 and 21.
Writes benchmarks/results/semantic-<name>.json.
"""

from __future__ import annotations

import argparse
import time

from common import update_results
from v2l.backbones import load_vl
from v2l.codebooks import Codebook, find_codebook
from v2l.data import WebDatasetShards
from v2l.eval.semantic import class_name_embeddings, semantic_quality
from v2l.tasks import heldout_features, sample_episodes
from v2l.tokenizer.words import words_of_embeddings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--codebook", default=None)
    ap.add_argument("--name", default="default")
    ap.add_argument("--kg", type=int, nargs="+", default=[5, 21])
    ap.add_argument("--episodes", type=int, default=1000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    vl = load_vl()
    cb = Codebook.load(args.codebook or find_codebook(vl=vl), vl=vl)
    out = {"meta": {"codebook": str(cb.folder), "entries": len(cb.entries), "vl": vl.fingerprint()}}
    store = heldout_features(vl, cb, top=max(args.kg))
    episodes = sample_episodes(store.pool(), 5, args.episodes, seed=0, max_shots=1)
    cls = class_name_embeddings(vl, cb, store.labels)
    for kg in args.kg:
        out[f"heldout-kg{kg}"] = semantic_quality(
            store.embeddings, store.labels, [w[:kg] for w in store.words], cb, cls, episodes, store.keys
        )
        print(
            "heldout",
            kg,
            {k: v for k, v in out[f"heldout-kg{kg}"].items() if k != "nearest_support"},
            out[f"heldout-kg{kg}"]["nearest_support"],
            flush=True,
        )
    ds = WebDatasetShards("imagenet-1k-sample")
    samples = list(ds)
    labels = [s.label for s in samples]
    emb = vl.encode_image([s.image for s in samples])
    words = [w for w, _ in words_of_embeddings(cb, emb, max(args.kg))]
    cls = class_name_embeddings(vl, cb, labels)
    for kg in args.kg:
        out[f"imagenet-1k-sample-kg{kg}"] = semantic_quality(emb, labels, [w[:kg] for w in words], cb, cls)
        print("imagenet-1k-sample", kg, out[f"imagenet-1k-sample-kg{kg}"], flush=True)
    out["meta"]["seconds"] = time.perf_counter() - t0
    update_results(f"semantic-{args.name}", out)


if __name__ == "__main__":
    main()
