"""Vocabulary expansion (paper appendix A): subwords → bigrams → trigrams by the LLM's own next-token predictions.

For every candidate token t, the LLM reads the prefix "a photo of" followed by t and its top-M next tokens t* give
bigrams [t, t*]; every bigram is extended the same way into trigrams. We concatenate token *ids* (the prefix's ids,
then the entry's ids) instead of re-tokenising the text, because re-tokenising merges across the join for some tokens
(SmolLM2: 341 of 49,152, e.g. "a photo of" + "fer" -> "a photo offer"). The prefix's KV cache is computed once and
shared by every batch (2.5× faster than recomputing it, identical top-1: benchmarks/results/codebook.json).
The resumable, chunked loop over the levels is `v2l.codebooks.build.build_codebook`.

The next token is chosen among `word` tokens only (see `backbones.vocabulary`): a bigram ending in ".", a newline or
an end-of-text token would not be a new word.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..backbones import LanguageModel


def candidate_subwords(lm: LanguageModel) -> list[int]:
    """The token ids that may become global-codebook entries: tokens of kind `word`."""
    return lm.vocab.ids_of_kind("word")


def word_mask(lm: LanguageModel) -> torch.Tensor:
    allowed = torch.zeros(lm.vocab_size, dtype=torch.bool)
    allowed[candidate_subwords(lm)] = True
    return allowed


def extend_once(lm: LanguageModel, entries: Sequence[Sequence[int]], prefix_ids: Sequence[int], top_m: int = 1,
                batch_size: int = 256, allowed: torch.Tensor | None = None, progress: bool = False,
                prefix_cache=None) -> list[list[int]]:
    """For each entry e, the entries e + [t*] for its top-`top_m` next tokens t* after `prefix_ids` + e."""
    if top_m < 1:
        raise ValueError("top_m (M in the paper) must be at least 1.")
    cache = prefix_cache if prefix_cache is not None else lm.prefix_cache(prefix_ids)
    rows = [list(e) for e in entries]
    if cache is None:  # an empty prefix: the entries alone are the prompts
        _, nxt = lm.next_token_topk(rows, k=top_m, batch_size=batch_size, allowed=allowed, progress=progress)
    else:
        _, nxt = lm.next_token_topk(rows, k=top_m, batch_size=batch_size, allowed=allowed, prefix=cache,
                                    progress=progress)
    return [row + [int(t)] for row, ts in zip(rows, nxt.tolist(), strict=True) for t in ts]
