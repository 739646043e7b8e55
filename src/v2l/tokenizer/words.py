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


@dataclass
class ImageWords:
    image: str
    words: list[str]
    scores: list[float]


def image_words(images: Sequence, top: int = 4, codebook: Codebook | str | None = None, vl=None,
                llm: str = DEFAULT_LLM, vl_name: str = DEFAULT_VL, batch_size: int = 32,
                distinct: bool = True) -> list[ImageWords]:
    """The `top` nearest global-codebook entries of each image (paths, bytes or PIL images).

    `distinct=True` shows one entry per embedding: an uncased text encoder embeds "snake" and "Snake" identically, so
    both sit at the same distance and would fill two of the `top` slots with one meaning. The first (nearest, then
    lowest index) is kept. `distinct=False` lists the codebook's raw nearest entries, as the global quantizer sees them.
    """
    from ..backbones import load_vl

    if top < 1:
        raise ValueError("--top must be at least 1.")
    vl = vl or load_vl(vl_name)
    if not isinstance(codebook, Codebook):
        codebook = Codebook.load(codebook or find_codebook(llm, vl_name, vl=vl), vl=vl)
    emb = vl.encode_image(list(images), batch_size=batch_size)
    sims, idx = codebook.global_tokens(emb, top + 32 if distinct else top)
    names = [str(im) if not hasattr(im, "size") else f"image {i}" for i, im in enumerate(images)]
    out = []
    for n, row, srow in zip(names, idx.tolist(), sims.tolist(), strict=True):
        order = sorted(range(len(row)), key=lambda k: (-srow[k], row[k]))  # ties: lowest index first
        row, srow = [row[k] for k in order], [srow[k] for k in order]
        keep: list[int] = []
        for k, j in enumerate(row):
            if distinct and any(torch.allclose(codebook.global_embeddings[j], codebook.global_embeddings[row[i]],
                                               atol=1e-6) for i in keep):
                continue
            keep.append(k)
            if len(keep) == top:
                break
        out.append(ImageWords(n, [codebook.entries[row[k]]["text"] for k in keep], [round(srow[k], 4) for k in keep]))
    return out
