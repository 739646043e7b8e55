"""The words a tokenizer gives an LLM to read, for every model: what the understanding tasks put in their prompts.

- `v2l`: its K_g global words (as `v2l words`).
- `spae`: the first layers of its pyramid (SPAE §4.1: 5 tokens = layers 1–2, 21 = layers 1–3), as LLM tokens.
- `vqgan-llm`: its 16 × 16 local LLM tokens in raster order (V2L Table 1's VQ-GAN row reads them all).
- `lqae`: its 256 WordPieces in raster order (LQAE's few-shot prompts use the whole sequence).

Each token is shown as its text (the codebook's display string for LLM tokens, the WordPiece for LQAE), so one
prompt template serves every model. `with_token_words` swaps a few-shot `FeatureStore`'s words for a model's, so the
Table 1 grid runs unchanged on a baseline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from ..errors import V2LError


def spae_prefix_lengths(sides: Sequence[int]) -> list[int]:
    """Token counts SPAE can give: whole first layers, 1, 1 + 4, 1 + 4 + 16, …"""
    out, total = [], 0
    for s in sides:
        total += s * s
        out.append(total)
    return out


@torch.inference_mode()
def token_words(tokenizer, images: Sequence, count: int | None = None, batch_size: int = 32) -> list[list[str]]:
    """The first `count` tokens (all when None) each image becomes, as text, for the model `tokenizer` holds (an
    `ImageTokenizer`; see the module doc). For SPAE, `count` must end a pyramid layer (5, 21, …)."""
    from ..tokenizer.image_tokenizer import to_tensor

    model = tokenizer.config.model
    if model == "v2l":
        from ..tokenizer.words import words_of_embeddings

        emb = tokenizer.vl.encode_image(list(images), batch_size=batch_size)
        return [w for w, _ in words_of_embeddings(tokenizer.codebook, emb, count or tokenizer.config.num_global)]
    if model == "spae" and count is not None and count not in spae_prefix_lengths(tokenizer.net.sides):
        raise V2LError(f"SPAE gives whole pyramid layers: --tokens {count} must be one of "
                       f"{', '.join(map(str, spae_prefix_lengths(tokenizer.net.sides)))}.")
    show = tokenizer.display
    out = []
    for s in range(0, len(images), batch_size):
        _, ids, _ = tokenizer.net.encode(to_tensor(list(images[s: s + batch_size]), tokenizer.config.resolution))
        for row in ids.flatten(1)[:, :count].tolist():
            out.append([show[i] if show else str(i) for i in row])
    return out


def with_token_words(store, words: Sequence[Sequence[str]]):
    """A copy of a few-shot `FeatureStore` whose words are `words` (one list per key, in the store's order)."""
    if len(words) != len(store.keys):
        raise V2LError(f"{len(words)} word lists for a pool of {len(store.keys)} images.")
    return dataclasses.replace(store, words=[list(w) for w in words])
