"""The semantic-quality measures (`v2l.eval.semantic`) on a hand-made codebook and embeddings, computed by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from v2l.eval import name_words, semantic_quality
from v2l.tasks.episodes import Episode


def _unit(*v):
    t = torch.tensor(v, dtype=torch.float)
    return t / t.norm()


def test_semantic_measures_by_hand():
    # entries: 0 "goldfish" along x, 1 "photo of" between x and y, 2 "tabby cat" along y
    g = torch.stack([_unit(1, 0), _unit(1, 1), _unit(0, 1)])
    cb = SimpleNamespace(global_embeddings=g, texts=["goldfish", "photo of", "tabby cat"])
    img = torch.stack([_unit(1, 0), _unit(0, 1), _unit(1, 0.2), _unit(0.2, 1)])
    labels = ["goldfish", "tabby", "goldfish", "tabby"]
    words = [["goldfish", "photo of"], ["photo of", "tabby cat"], ["photo of", "goldfish"], ["goldfish", "photo of"]]
    cls = {"goldfish": _unit(1, 0), "tabby": _unit(0, 1)}
    eps = [
        Episode(["goldfish", "tabby"], [[(0, "a"), (1, "b")]], (0, "c"), 1),
        Episode(["goldfish", "tabby"], [[(0, "a"), (1, "b")]], (1, "d"), 2),
    ]
    r = semantic_quality(img, labels, words, cb, cls, eps, ["a", "b", "c", "d"])
    assert r["hit"] == pytest.approx(3 / 4)  # image d's words name no tabby
    c = 1 / math.sqrt(2)
    vl = [
        (1 + c) / 2,
        (c + 1) / 2,
        (float(img[2] @ g[1]) + float(img[2] @ g[0])) / 2,
        (float(img[3] @ g[0]) + float(img[3] @ g[1])) / 2,
    ]
    assert r["vl_score"] == pytest.approx(sum(vl) / 4, abs=1e-6)
    true = [1.0, 1.0, float(img[2, 0]), float(img[3, 1])]
    assert r["clip_r"] == pytest.approx(sum(v / t for v, t in zip(vl, true, strict=True)) / 4, abs=1e-6)
    ns = r["nearest_support"]
    assert ns["vl"]["acc"] == 1.0  # c is nearest a, d nearest b
    # mean word embeddings: d's words equal a's, so d is nearest a (wrong); c's words equal a's too (right)
    assert ns["word_embedding"]["acc"] == 0.5
    assert ns["word_overlap"]["acc"] == 0.5  # the same by overlap: d shares both words with a
    assert name_words("Rock beauty, a fish") == {"rock", "beauty", "fish"}


def test_any_tokens_embeddings_replace_the_codebook_rows():
    """`word_embeddings` (a baseline's token embeddings) is used as given: the codebook's own rows reproduce the
    default, and other rows change the VL score by exactly their cosine."""
    g = torch.stack([_unit(1, 0), _unit(1, 1), _unit(0, 1)])
    cb = SimpleNamespace(global_embeddings=g, texts=["goldfish", "photo of", "tabby cat"])
    img = torch.stack([_unit(1, 0), _unit(0, 1)])
    labels, words = ["goldfish", "tabby"], [["goldfish"], ["tabby cat"]]
    cls = {"goldfish": _unit(1, 0), "tabby": _unit(0, 1)}
    base = semantic_quality(img, labels, words, cb, cls)
    same = semantic_quality(img, labels, words, cb, cls, word_embeddings=[g[[0]], g[[2]]])
    assert same == base and base["vl_score"] == pytest.approx(1.0)
    other = semantic_quality(img, labels, words, cb, cls, word_embeddings=[g[[1]], g[[1]]])
    assert other["vl_score"] == pytest.approx(1 / math.sqrt(2), abs=1e-6) and other["hit"] == base["hit"]
