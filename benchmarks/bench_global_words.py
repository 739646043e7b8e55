"""Global words that name what they see (issue: global words, item 3): variants of the global codebook and of the
ConSE image embedding, chosen on *training* classes, then reported once on held-out classes.

    python benchmarks/bench_global_words.py            # needs the default build's parts: `v2l codebook build` first

Every variant re-filters the candidates of the default build (`v2l.codebooks.build.build_parts`, from the parts
cache: no text is embedded again) with the filtering images' VL embeddings, then gives each evaluation image its K_g
nearest distinct entries and measures them with `v2l.eval.semantic.semantic_quality`.

- Selection set (the only one variants are compared on): images of the 160 training classes that no codebook filters
  with: their 10 val images and train images 90-99 per class (3,200 images); 1,000 seeded 5-way 1-shot episodes.
  The rule, fixed before looking: the best nearest-support accuracy by word overlap (what an LLM can match
  literally) at K_g = 5, ties within 0.5 points broken by class-word hit@5.
- Report set: the held-out few-shot pool (40 classes, the evaluation images of `v2l.data.splits`) and
  imagenet-1k-sample (1,000 classes, one image each), for today's default, the paper-protocol default and the winner.

ConSE variants (top-T classes averaged, a softmax temperature) change the image embedding of every image, filtering
images included; they are computed from cached classifier logits, checked equal to `vl.encode_image` at the defaults.
Writes benchmarks/results/global-words.json.

Table 2's measures of one codebook (held-out classes and imagenet-1k-sample) are the bench's `semantic` stage:
`v2l bench --suite tables --stage semantic [--codebook PATH] -o FOLDER`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from common import update_results
from v2l.backbones import LanguageModel, load_vl
from v2l.codebooks import Codebook, CodebookConfig, build_codebook
from v2l.codebooks.build import build_parts
from v2l.codebooks.filtering import filter_images
from v2l.data import WebDatasetShards, tiny_imagenet_classes, tiny_imagenet_split
from v2l.eval.semantic import class_name_embeddings, semantic_quality
from v2l.paths import atomic_path, cache_root
from v2l.tasks import heldout_features, sample_episodes
from v2l.tasks.grid import FeatureStore
from v2l.tokenizer.words import _pick


def logits_of(vl, images, name: str) -> torch.Tensor:
    """EfficientNet-Lite0 logits of `images`, cached under the v2l cache by `name`."""
    path = cache_root() / "global-words" / f"logits-{name}-{len(images)}.pt"
    if path.is_file():
        return torch.load(path)
    out = []
    with torch.inference_mode():
        for s in range(0, len(images), 64):
            out.append(vl.class_logits(vl.preprocess(images[s : s + 64])))
            print(f"  logits {name}: {min(s + 64, len(images))}/{len(images)}", end="\r", flush=True)
    t = torch.cat(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(t, tmp)
    return t


def conse(vl, logits: torch.Tensor, top_t: int = 10, temperature: float = 1.0) -> torch.Tensor:
    """ConSE image embeddings from classifier logits (as `ConSE._encode_images`, with a temperature)."""
    p, idx = (logits / temperature).softmax(-1).topk(top_t, dim=-1)
    w = p / p.sum(-1, keepdim=True)
    return torch.nn.functional.normalize(torch.einsum("nt,ntd->nd", w, vl.class_embeddings[idx]), dim=-1)


def hub_scores(cand: torch.Tensor, img: torch.Tensor, k: int = 10) -> torch.Tensor:
    """CSLS's r(e): the mean cosine of each candidate to its k nearest filtering images."""
    out = []
    for s in range(0, len(cand), 8192):
        out.append((cand[s : s + 8192] @ img.T).topk(k, dim=-1).values.mean(-1))
    return torch.cat(out)


def filter_rows(
    cand: torch.Tensor,
    img: torch.Tensor,
    top_k: int = 5,
    min_count: int = 1,
    max_share: float = 1.0,
    csls: bool = False,
) -> list[int]:
    """Candidate rows of the global codebook (v2l.codebooks.filtering, with the options tried here)."""
    r = hub_scores(cand, img) if csls else None
    counts = torch.zeros(len(cand), dtype=torch.long)
    for s in range(0, len(img), 256):
        sim = img[s : s + 256] @ cand.T
        if r is not None:
            sim = 2 * sim - r
        counts += torch.bincount(sim.topk(top_k, dim=-1).indices.flatten(), minlength=len(cand))
    most = max_share * len(img)
    return [i for i in range(len(cand)) if min_count <= counts[i] <= most]


def words_for(cb, emb: torch.Tensor, kg: int, r: torch.Tensor | None = None) -> list[list[str]]:
    """Each image's kg nearest distinct entries; with `r` (CSLS at assignment time), by 2 cos - r(e)."""
    sims = emb @ cb.global_embeddings.T
    if r is not None:
        sims = 2 * sims - r
    top = sims.topk(min(kg + 32, sims.shape[1]), dim=-1)
    return [
        _pick(cb, row, srow, kg, True)[0] for row, srow in zip(top.indices.tolist(), top.values.tolist(), strict=True)
    ]


def measure(cb, emb, labels, keys, vl, kg: int = 5, episodes=None, r=None) -> dict:
    words = words_for(cb, emb, kg, r)
    cls = class_name_embeddings(vl, cb, labels)
    q = semantic_quality(emb, labels, words, cb, cls, episodes, keys)
    ns = q.pop("nearest_support", None)
    if ns:
        q.update({f"ns_{k}": round(100 * v["acc"], 1) for k, v in ns.items() if isinstance(v, dict)})
    q["hit"] = round(100 * q["hit"], 1)
    q["examples"] = {labels[i]: words[i] for i in range(0, len(labels), max(1, len(labels) // 6))}
    return q


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=1000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    torch.set_num_threads(2)
    vl, lm = load_vl(), LanguageModel.load("smollm2-135m", progress=False)
    cfg = CodebookConfig()  # the paper protocol: every class, never an evaluation image
    parts = build_parts(cfg, lm, vl)
    base = Codebook.load(build_codebook(cfg, lm=lm, vl=vl), vl=vl)

    # filtering images: which are of training classes (today's default filters with those only)
    ds, chosen = filter_images(cfg, None)
    split = tiny_imagenet_split()
    train_cls = set(split["train"])
    is_train = torch.tensor([ds.meta(i)["wnid"] in train_cls for i in chosen])
    f_logits = logits_of(vl, [ds[i].image for i in chosen], "filter-all-50")
    f_default = conse(vl, f_logits)
    err = (f_default - parts.images).abs().max().item()
    assert err < 1e-4, f"ConSE from logits differs from the build's image embeddings by {err}"

    # selection set: training classes, images no codebook filters with (val, and train ranks 90-99)
    names = {r["wnid"]: r["names"].split(",")[0].strip() for r in tiny_imagenet_classes()}
    sel_images, sel_labels, sel_keys = [], [], []
    for sp, lo in (("val", 0), ("train", 90)):
        d = WebDatasetShards("tiny-imagenet-200", sp)
        rank: dict[str, int] = {}
        for i in range(len(d)):
            w = d.meta(i)["wnid"]
            rank[w] = rank.get(w, -1) + 1
            if w in train_cls and rank[w] >= lo and rank[w] < lo + 10:
                s = d[i]
                sel_images.append(s.image)
                sel_labels.append(names[w])
                sel_keys.append(f"{sp}/{s.key}")
    s_logits = logits_of(vl, sel_images, "selection")
    store = FeatureStore(sel_keys, sel_labels, conse(vl, s_logits), [[] for _ in sel_keys])
    episodes = sample_episodes(store.pool(), 5, args.episodes, seed=0, max_shots=1)

    def variant(
        top_t=10,
        temperature=1.0,
        classes="all",
        top_k=5,
        min_count=1,
        max_share=1.0,
        csls=False,
        assign_csls=False,
        dedupe="text",
    ):
        f_img = conse(vl, f_logits, top_t, temperature) if (top_t, temperature) != (10, 1.0) else f_default
        if classes == "train":
            f_img = f_img[is_train]
        cand = parts.embeddings
        rows = list(range(len(cand)))
        if dedupe == "encoder":  # one candidate per text-encoder input (first of each, shorter kinds first)
            seen, rows = set(), []
            for i, k in enumerate(vl.text_keys(parts.texts, parts.templates)):
                if k not in seen:
                    seen.add(k)
                    rows.append(i)
        keep = [rows[i] for i in filter_rows(cand[rows], f_img, top_k, min_count, max_share, csls)]
        entries = [{"text": parts.texts[i], "kind": parts.kinds[i], "ids": parts.ids[i]} for i in keep]
        cb = dataclasses.replace(base, entries=entries, global_embeddings=cand[keep])
        r = hub_scores(cb.global_embeddings, f_img) if assign_csls else None
        return cb, r, (lambda lg: conse(vl, lg, top_t, temperature))

    grid = [
        ("today's default: training classes only", {"classes": "train"}),
        ("paper protocol: all classes (new default)", {}),
        *[(f"all + max-share {s}", {"max_share": s}) for s in (0.05, 0.02, 0.01, 0.005, 0.002)],
        ("all + dedupe encoder", {"dedupe": "encoder"}),
        ("all + top-k 3", {"top_k": 3}),
        ("all + top-k 10", {"top_k": 10}),
        ("all + min-count 2", {"min_count": 2}),
        ("all + CSLS filtering", {"csls": True}),
        ("all + CSLS filtering and assignment", {"csls": True, "assign_csls": True}),
        *[(f"all + ConSE top-T {t}", {"top_t": t}) for t in (1, 3, 5, 20)],
        *[(f"all + ConSE temperature {x}", {"temperature": x}) for x in (0.5, 2.0)],
    ]
    rows = {}
    for name, kw in grid:
        cb, r, embed = variant(**kw)
        q = measure(cb, embed(s_logits), sel_labels, sel_keys, vl, 5, episodes, r)
        rows[name] = {"settings": kw, "entries": len(cb.entries), **q}
        print(
            f"{name:45s} entries {len(cb.entries):5d} hit {q['hit']:5.1f} vl {q['vl_score']:.3f} "
            f"clip_r {q['clip_r']:.3f} ns vl {q['ns_vl']} emb {q['ns_word_embedding']} "
            f"overlap {q['ns_word_overlap']}",
            flush=True,
        )
    best = max(r["ns_word_overlap"] for r in rows.values())
    winner = max((k for k, r in rows.items() if r["ns_word_overlap"] >= best - 0.5), key=lambda k: rows[k]["hit"])
    print(f"winner on training classes: {winner}", flush=True)
    update_results(
        "global-words",
        {
            "selection": rows,
            "rule": "best 5-way 1-shot nearest-support accuracy by word "
            "overlap at K_g 5 on the selection set; ties within 0.5 points by hit@5",
            "winner": winner,
        },
    )

    # the report, once: held-out few-shot pool and imagenet-1k-sample
    from v2l.tasks.grid import heldout_images

    pool = heldout_features(vl, base, top=5)
    h_logits = logits_of(vl, heldout_images(pool), "heldout-pool")
    h_episodes = sample_episodes(pool.pool(), 5, args.episodes, seed=0, max_shots=1)
    inet = list(WebDatasetShards("imagenet-1k-sample"))
    i_logits = logits_of(vl, [x.image for x in inet], "imagenet-1k-sample")
    report = {}
    for name in dict.fromkeys([grid[0][0], grid[1][0], winner]):
        cb, r, embed = variant(**dict(grid)[name])
        report[name] = {"entries": len(cb.entries)}
        for kg in (5, 21):
            report[name][f"heldout-kg{kg}"] = measure(
                cb, embed(h_logits), pool.labels, pool.keys, vl, kg, h_episodes, r
            )
            report[name][f"imagenet-1k-sample-kg{kg}"] = measure(
                cb, embed(i_logits), [x.label for x in inet], None, vl, kg, None, r
            )
        h = report[name]["heldout-kg5"]
        print(
            f"held-out {name:45s} hit {h['hit']:5.1f} vl {h['vl_score']:.3f} clip_r {h['clip_r']:.3f} "
            f"ns vl {h['ns_vl']} emb {h['ns_word_embedding']} overlap {h['ns_word_overlap']}; imagenet hit "
            f"{report[name]['imagenet-1k-sample-kg5']['hit']}",
            flush=True,
        )
    update_results("global-words", {"report": report, "seconds": round(time.perf_counter() - t0)})
    print(json.dumps({k: v["heldout-kg5"]["examples"] for k, v in report.items()}, indent=1)[:3000])


if __name__ == "__main__":
    main()
