"""Semantic interpretation (paper Fig. 6): the top-k global tokens of an image, i.e. the words it is "translated" to.

Needs only the VL model and the global codebook, not the LLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .codebook import Codebook, find_codebook


@dataclass
class ImageWords:
    image: str
    words: list[str]
    scores: list[float]


def image_words(images: Sequence, top: int = 4, codebook: Codebook | str | None = None, vl=None,
                llm: str = "smollm2-135m", vl_name: str = "conse", batch_size: int = 32) -> list[ImageWords]:
    """The `top` nearest global-codebook entries of each image (paths, bytes or PIL images)."""
    from .backbones import load_vl

    if top < 1:
        raise ValueError("--top must be at least 1.")
    vl = vl or load_vl(vl_name)
    if not isinstance(codebook, Codebook):
        codebook = Codebook.load(codebook or find_codebook(llm, vl_name, vl=vl), vl=vl)
    emb = vl.encode_image(list(images), batch_size=batch_size)
    sims, idx = codebook.global_tokens(emb, top)
    names = [str(im) if not hasattr(im, "size") else f"image {i}" for i, im in enumerate(images)]
    return [ImageWords(n, [codebook.entries[j]["text"] for j in row], [round(float(s), 4) for s in srow])
            for n, row, srow in zip(names, idx.tolist(), sims, strict=True)]
