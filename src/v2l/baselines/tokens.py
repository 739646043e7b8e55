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
def token_ids(tokenizer, images: Sequence, count: int | None = None, batch_size: int = 32) -> list[list[int]]:
    """The first `count` tokens (all when None) each image becomes, as ids, for the model `tokenizer` holds (an
    `ImageTokenizer`; see the module doc): global-codebook rows for V2L (its K_g words, distinct), LLM token ids for
    SPAE and VQ-GAN+LLM, WordPiece ids for LQAE. For SPAE, `count` must end a pyramid layer (5, 21, …)."""
    from ..tokenizer.image_tokenizer import to_tensor

    model = tokenizer.config.model
    if model == "v2l":
        from ..tokenizer.words import words_of_embeddings

        emb = tokenizer.vl.encode_image(list(images), batch_size=batch_size)
        rows = {}
        for i, e in enumerate(tokenizer.codebook.entries):
            rows.setdefault(e["text"], i)
        words = words_of_embeddings(tokenizer.codebook, emb, count or tokenizer.config.num_global)
        return [[rows[w] for w in ws] for ws, _ in words]
    if model == "spae" and count is not None and count not in spae_prefix_lengths(tokenizer.net.sides):
        raise V2LError(
            f"SPAE gives whole pyramid layers: --tokens {count} must be one of "
            f"{', '.join(map(str, spae_prefix_lengths(tokenizer.net.sides)))}."
        )
    out = []
    layers = spae_prefix_lengths(tokenizer.net.sides).index(count) + 1 if model == "spae" and count else None
    for s in range(0, len(images), batch_size):
        x = to_tensor(list(images[s : s + batch_size]), tokenizer.config.resolution).to(tokenizer.device)
        if layers:  # only the layers asked for are searched
            ids = tokenizer.net.first_layers(x, layers)
        else:
            _, ids, _ = tokenizer.net.encode(x)
        out += ids.flatten(1)[:, :count].cpu().tolist()
    return out


def token_texts(tokenizer, ids: Sequence[Sequence[int]]) -> list[list[str]]:
    """`token_ids`' ids as the text an LLM prompt shows: V2L's global words, the LLM token's display string, or
    LQAE's WordPiece."""
    if tokenizer.config.model == "v2l":
        entries = tokenizer.codebook.entries
        return [[entries[i]["text"] for i in row] for row in ids]
    show = tokenizer.display
    return [[show[i] if show else str(i) for i in row] for row in ids]


def token_words(tokenizer, images: Sequence, count: int | None = None, batch_size: int = 32) -> list[list[str]]:
    """The first `count` tokens (all when None) each image becomes, as text (`token_ids` then `token_texts`)."""
    return token_texts(tokenizer, token_ids(tokenizer, images, count, batch_size))


@torch.inference_mode()
def token_text_embeddings(tokenizer, ids: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """The VL text embedding of each of `token_ids`' tokens, per image ((K, d), unit rows): V2L's global-codebook rows;
    an LLM token's local-codebook row (its template-averaged VL text embedding, SPAE eq. 5); an LQAE WordPiece
    embedded with the codebook's templates ("##" dropped). What the semantic measures compare with the image."""
    model = tokenizer.config.model
    cb = tokenizer.codebook
    if model == "v2l":
        table = cb.global_embeddings.float()
        return [table[list(row)] for row in ids]
    if model != "lqae":
        table = cb.local_embeddings.float()
        return [table[list(row)] for row in ids]
    from ..codebooks.templates import embed_entries

    unique = sorted({i for row in ids for i in row})
    texts = [tokenizer.display[i].removeprefix("##") for i in unique]
    emb = embed_entries(tokenizer.vl, texts, cb.manifest["templates"], cb.manifest["config"]["renormalize_templates"])
    where = {t: k for k, t in enumerate(unique)}
    return [emb[[where[i] for i in row]].float() for row in ids]


def with_token_words(store, words: Sequence[Sequence[str]]):
    """A copy of a few-shot `FeatureStore` whose words are `words` (one list per key, in the store's order)."""
    if len(words) != len(store.keys):
        raise V2LError(f"{len(words)} word lists for a pool of {len(store.keys)} images.")
    return dataclasses.replace(store, words=[list(w) for w in words])
