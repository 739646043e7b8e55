"""How much of an image's meaning its global words keep (paper §3.2 "Global Codebook", Table 2, Fig. 6).

For a labelled image set, with each image's K_g global words (its nearest distinct global-codebook entries):

- **class-word hit@K_g**: the share of images for which a word of the class name (lower case, 3+ letters, not a
  stop word) is a word of one of the K_g entries.
- **VL score** (the paper's "CLIP score"; ours is the VL model's cosine, so it is named for it): the mean cosine of the
  image embedding and each of its K_g entries' embeddings.
- **CLIP-R** as we define it (the paper does not): an image's VL score divided by the cosine of the image and its
  class name embedded like a codebook entry (same templates). 1.0 means the words sit as close to the image as its
  true name does.
- **nearest-support accuracy** (N-way 1-shot episodes, no LLM): the query's class is the class of the support image
  nearest by the VL image embedding (what the image tower knows), by the mean embedding of the words (what the words
  mean), and by word overlap (what an LLM could match literally; ties broken at random, seeded). The gap between the
  first and the others is what quantising into words loses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

STOP_WORDS = {"the", "and", "for", "with", "of", "a", "an", "in", "on", "to", "is"}


def name_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 3 and w not in STOP_WORDS}


def entry_indices(codebook, words: Sequence[Sequence[str]]) -> list[list[int]]:
    """Codebook rows of each image's words (a text's first row)."""
    index: dict[str, int] = {}
    for i, t in enumerate(codebook.texts):
        index.setdefault(t, i)
    return [[index[w] for w in ws] for ws in words]


def semantic_quality(
    image_emb: torch.Tensor,
    labels: Sequence[str],
    words: Sequence[Sequence[str]],
    codebook,
    class_emb: dict[str, torch.Tensor],
    episodes: Sequence | None = None,
    keys=None,
    word_embeddings: Sequence[torch.Tensor] | None = None,
) -> dict:
    """The four measures (see the module docstring) of images with L2-normalised `image_emb`, class `labels`, their
    global `words`, and `class_emb` (label -> L2-normalised class-name embedding). `episodes` (N-way 1-shot, items =
    `keys`) give the nearest-support accuracies. `word_embeddings` (per image, (K, d) unit rows) replaces the words'
    global-codebook rows: any tokenizer's tokens (`v2l.baselines.token_text_embeddings`) are measured alike."""
    from ..tasks.grid import FeatureStore, nearest_vl, nearest_words, wilson

    if word_embeddings is None:
        g = codebook.global_embeddings.float()
        word_embeddings = [g[r] for r in entry_indices(codebook, words)]
    img = torch.nn.functional.normalize(image_emb.float(), dim=-1)
    vl = torch.stack([(e.float() @ img[i]).mean() for i, e in enumerate(word_embeddings)])
    true = torch.stack([img[i] @ class_emb[lab].float() for i, lab in enumerate(labels)])
    hits = [bool(name_words(lab) & name_words(" ".join(ws))) for lab, ws in zip(labels, words, strict=True)]
    out = {
        "images": len(labels),
        "kg": len(words[0]) if words else 0,
        "hit": sum(hits) / len(hits),
        "vl_score": float(vl.mean()),
        "true_name_score": float(true.mean()),
        "clip_r": float((vl / true).mean()),
    }
    if episodes:
        keys = list(keys)
        means = torch.nn.functional.normalize(torch.stack([e.float().mean(0) for e in word_embeddings]), dim=-1)
        by_vl = FeatureStore(keys, list(labels), img, [list(w) for w in words])
        by_mean = FeatureStore(keys, list(labels), means, [list(w) for w in words])
        idx = by_vl.index()
        correct = {"vl": 0, "word_embedding": 0, "word_overlap": 0}
        for ep in episodes:
            support = ep.rounds[0]
            truth = ep.query[0]
            correct["vl"] += nearest_vl(by_vl, idx, ep, support) == truth
            correct["word_embedding"] += nearest_vl(by_mean, idx, ep, support) == truth
            correct["word_overlap"] += nearest_words(by_vl, idx, ep, support, out["kg"]) == truth
        n = len(episodes)
        out["nearest_support"] = {
            "episodes": n,
            "ways": episodes[0].ways,
            **{k: {"acc": v / n, "ci95": wilson(v, n)} for k, v in correct.items()},
        }
    return out


def class_name_embeddings(vl, codebook, labels) -> dict:
    """label -> the embedding of its class name, with the codebook's templates (the ground truth of CLIP-R)."""
    from ..codebooks.templates import embed_entries

    names = sorted(set(labels))
    m = codebook.manifest
    emb = embed_entries(vl, names, m["templates"], m["config"]["renormalize_templates"])
    return dict(zip(names, emb, strict=True))
