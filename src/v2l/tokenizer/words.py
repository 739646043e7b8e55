"""Semantic interpretation (paper Fig. 6): the top-k global tokens of an image, i.e. the words it is "translated" to.

Needs only the VL model and the global codebook, not the LLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..backbones.language_model import DEFAULT_LLM
from ..backbones.vision_language import DEFAULT_VL
from ..codebooks import Codebook, find_codebook
from ..errors import ConfigError


@dataclass
class ImageWords:
    image: str
    words: list[str]
    scores: list[float]


def image_words(
    images: Sequence,
    top: int = 4,
    codebook: Codebook | str | None = None,
    vl=None,
    llm: str = DEFAULT_LLM,
    vl_name: str = DEFAULT_VL,
    batch_size: int = 32,
    distinct: bool = True,
) -> list[ImageWords]:
    """The `top` nearest global-codebook entries of each image (paths, bytes or PIL images).

    `distinct=True` shows one entry per embedding: an uncased text encoder embeds "snake" and "Snake" identically, so
    both sit at the same distance and would fill two of the `top` slots with one meaning. The first (nearest, then
    lowest index) is kept. `distinct=False` lists the codebook's raw nearest entries, as the global quantizer sees them.
    """
    from ..backbones import load_vl

    if not isinstance(top, int) or top < 1:
        raise ConfigError(f"--top {top!r} is invalid: use a whole number of at least 1.")
    vl = vl or load_vl(vl_name)
    if not isinstance(codebook, Codebook):
        codebook = Codebook.load(codebook or find_codebook(llm, vl=vl), vl=vl)
    top = min(top, len(codebook.entries))  # there are no more words than entries
    emb = vl.encode_image(list(images), batch_size=batch_size)
    names = [str(im) if not hasattr(im, "size") else f"image {i}" for i, im in enumerate(images)]
    return [
        ImageWords(n, w, s) for n, (w, s) in zip(names, words_of_embeddings(codebook, emb, top, distinct), strict=True)
    ]


def words_of_embeddings(
    codebook: Codebook, emb: torch.Tensor, top: int, distinct: bool = True
) -> list[tuple[list[str], list[float]]]:
    """The `top` global words (and similarities) of each VL image embedding, nearest first."""
    top = min(top, len(codebook.entries))
    sims, idx = codebook.global_tokens(emb, top + 32 if distinct else top)
    return [_pick(codebook, row, srow, top, distinct) for row, srow in zip(idx.tolist(), sims.tolist(), strict=True)]


def _pick(
    codebook: Codebook, row: list[int], srow: list[float], top: int, distinct: bool
) -> tuple[list[str], list[float]]:
    """The first `top` entries, nearest first (ties: lowest index); with `distinct`, one per embedding. Identical
    embeddings have identical similarities, so only entries whose similarity is within 1e-3 are compared."""
    order = sorted(range(len(row)), key=lambda k: (-srow[k], row[k]))
    row, srow = [row[k] for k in order], [srow[k] for k in order]
    keep: list[int] = []
    emb = codebook.global_embeddings
    for k in range(len(row)):
        if distinct and _same_as_kept(emb, row, srow, keep, k):
            continue
        keep.append(k)
        if len(keep) == top:
            break
    return [codebook.entries[row[k]]["text"] for k in keep], [round(srow[k], 4) for k in keep]


def _same_as_kept(emb: torch.Tensor, row: list[int], srow: list[float], keep: list[int], k: int) -> bool:
    for i in reversed(keep):  # sorted by similarity: only the last few kept can be within 1e-3
        if srow[i] - srow[k] >= 1e-3:
            return False
        if torch.allclose(emb[row[k]], emb[row[i]], atol=1e-6):
            return True
    return False
