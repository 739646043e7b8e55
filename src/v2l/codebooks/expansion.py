"""Vocabulary expansion (paper appendix A): subwords → bigrams → trigrams by the LLM's own next-token predictions.

For every candidate token t, the LLM reads the prefix "a photo of" followed by t and its top-M next tokens t* give
bigrams [t, t*]; every bigram is extended the same way into trigrams. We concatenate token *ids* (the prefix's ids,
then the entry's ids) instead of re-tokenising the text, because re-tokenising merges across the join for some tokens
(SmolLM2: 341 of 49,152, e.g. "a photo of" + "fer" -> "a photo offer"). The prefix's KV cache is computed once and
shared by every batch (2.5× faster than recomputing it, identical top-1: benchmarks/results/codebook.json). Only the
ids are needed, so the LM head runs on the allowed tokens only and no log-softmax is computed
(`LanguageModel.next_token_ids`, `generate_ids(logprobs=False)`).
With M = 1 (the default) a trigram's prompt is its bigram's prompt plus one token, so `extend_greedy` runs all the
levels as one greedy generation of M-constrained tokens: each level reads the previous level's KV cache and costs one
new token per entry instead of the whole entry again. The resumable, chunked loop over the levels is
`v2l.codebooks.build.build_codebook`.

The next token is chosen among `word` tokens only (see `backbones.vocabulary`): a bigram ending in ".", a newline or
an end-of-text token would not be a new word.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..backbones import LanguageModel
from ..backbones.constraints import TokenSetConstraint
from ..errors import V2LError


def candidate_subwords(lm: LanguageModel) -> list[int]:
    """The token ids that may become global-codebook entries: tokens of kind `word`."""
    return lm.vocab.ids_of_kind("word")


def word_mask(lm: LanguageModel) -> torch.Tensor:
    allowed = torch.zeros(lm.vocab_size, dtype=torch.bool)
    allowed[candidate_subwords(lm)] = True
    return allowed


def extend_once(
    lm: LanguageModel,
    entries: Sequence[Sequence[int]],
    prefix_ids: Sequence[int],
    top_m: int = 1,
    batch_size: int = 1024,
    allowed: torch.Tensor | None = None,
    progress: bool = False,
    prefix_cache=None,
) -> list[list[int]]:
    """For each entry e, the entries e + [t*] for its top-`top_m` next tokens t* after `prefix_ids` + e."""
    if top_m < 1:
        raise ValueError("top_m (M in the paper) must be at least 1.")
    cache = prefix_cache if prefix_cache is not None else lm.prefix_cache(prefix_ids)
    rows = [list(e) for e in entries]  # an empty prefix (cache None): the entries alone are the prompts
    nxt = lm.next_token_ids(rows, k=top_m, batch_size=batch_size, allowed=allowed, prefix=cache, progress=progress)
    return [row + [int(t)] for row, ts in zip(rows, nxt.tolist(), strict=True) for t in ts]


def extend_greedy(
    lm: LanguageModel,
    entries: Sequence[Sequence[int]],
    steps: int,
    allowed: torch.Tensor,
    batch_size: int = 1024,
    prefix_cache=None,
    progress: bool = False,
) -> list[list[int]]:
    """M = 1 for `steps` levels at once: each entry followed by its next `steps` tokens, each the most likely allowed
    token after the prefix, the entry and the tokens chosen before it. Equals `extend_once` applied `steps` times (up
    to float rounding: the KV cache of a level is computed once, not again with the next level's prompt), at one new
    token per entry and level."""
    if steps < 1:
        raise ValueError("extend_greedy: steps must be at least 1.")
    ids = allowed.nonzero().flatten().tolist()
    gens = lm.generate_ids(
        [list(e) for e in entries],
        max_new_tokens=steps,
        prefix=prefix_cache,
        batch_size=batch_size,
        progress=progress,
        constraint=TokenSetConstraint(ids, steps),
        logprobs=False,
    )
    out = []
    for e, g in zip(entries, gens, strict=True):
        if len(g.ids) != steps:  # an allowed set holding an end-of-sequence id would end a row early
            raise V2LError(
                f"Expansion: the entry {list(e)} ended after {len(g.ids)} of {steps} tokens "
                f"({g.finish_reason}); the allowed next tokens must not include end-of-sequence ids."
            )
        out.append(list(e) + g.ids)
    return out
