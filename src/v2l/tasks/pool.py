"""Images as words for in-context tasks, and the choice of in-context samples (paper §4.2: "we randomly select 10
image-caption pairs (or image-question-answer triplets) from the training set").

`WordVectors` holds each image's K_g global words and a vector for comparing them: the mean of the words' codebook
embeddings (unit length), so "nearest" compares what the LLM reads, not the VL image embedding it never sees.
`choose_samples` picks the in-context samples for each query:

- `random` (the paper's): one seeded draw, used by every query of a run, so the whole in-context block is shared (and
  its KV cache computed once);
- `random-each`: a fresh seeded draw per query (no block is shared; slower);
- `nearest` (beyond the paper): the pool images whose words are most similar to the query's, most similar last (next
  to the query). The query itself is never its own sample: pass `exclude` with the query's pool index when the
  query comes from the pool.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import ConfigError

PAIRS = ("random", "random-each", "nearest")


@dataclass
class WordVectors:
    words: list[list[str]]
    vectors: torch.Tensor  # (n, d), unit length: mean of each image's word embeddings

    def __len__(self) -> int:
        return len(self.words)


def word_vectors(images: Sequence, vl, codebook, kg: int, batch_size: int = 64) -> WordVectors:
    """The K_g words of each image (PIL) and their mean codebook embedding."""
    from ..tokenizer.words import words_of_embeddings

    if not isinstance(kg, int) or kg < 1:
        raise ConfigError(f"--kg {kg!r} is invalid: use a whole number of words per image, at least 1.")
    if not images:
        return WordVectors([], torch.zeros((0, codebook.global_embeddings.shape[1])))
    emb = vl.encode_image(list(images), batch_size=batch_size)
    words = [w for w, _ in words_of_embeddings(codebook, emb, kg)]
    index: dict[str, int] = {}
    for i, t in enumerate(codebook.texts):
        index.setdefault(t, i)
    g = codebook.global_embeddings.float()
    vecs = torch.stack([g[[index[w] for w in ws]].mean(0) for ws in words])
    return WordVectors(words, torch.nn.functional.normalize(vecs, dim=-1))


def check_pairs(mode: str) -> None:
    if mode not in PAIRS:
        raise ConfigError(f"--pairs {mode!r} is invalid: use one of {', '.join(PAIRS)}.")


def choose_samples(
    mode: str,
    pool: WordVectors,
    queries: WordVectors,
    shots: int,
    seed: int = 0,
    exclude: Sequence[int | None] | None = None,
) -> list[list[int]]:
    """Pool indices of each query's in-context samples, in prompt order (see the module docstring)."""
    check_pairs(mode)
    if shots < 0:
        raise ConfigError(f"--shots {shots} is invalid: use 0 or more in-context samples.")
    exclude = list(exclude) if exclude is not None else [None] * len(queries)
    need = shots + (1 if any(e is not None for e in exclude) else 0)
    if need > len(pool):
        raise ConfigError(f"--shots {shots} needs at least {need} pool samples; the pool has {len(pool)}.")
    if mode == "random":
        rng = random.Random(f"v2l-incontext:{seed}")
        draw = rng.sample(range(len(pool)), need)
        return [[i for i in draw if i != e][:shots] for e in exclude]
    if mode == "random-each":
        out = []
        for q, e in enumerate(exclude):
            rng = random.Random(f"v2l-incontext:{seed}:{q}")
            out.append([i for i in rng.sample(range(len(pool)), need) if i != e][:shots])
        return out
    sims = queries.vectors @ pool.vectors.T
    out = []
    for q, e in enumerate(exclude):
        s = sims[q].clone()
        if e is not None:
            s[e] = float("-inf")
        order = sorted(range(len(pool)), key=lambda i: (-float(s[i]), i))[:shots]
        out.append(order[::-1])  # most similar last, next to the query
    return out
