"""Table 5: few-shot accuracy with subwords, + bigrams, + trigrams of one built codebook."""

from __future__ import annotations

import dataclasses

from ..context import BenchContext, gather, shard


def stage_vocabulary(ctx: BenchContext) -> dict:
    """Table 5: 5-way classification with the codebook's subwords only, + bigrams, + trigrams (entries of those kinds
    of the one built codebook), K_g = 5, the suite's Table 5 cells."""

    from ....tasks import (
        PROMPT_TEMPLATES,
        TABLE1_CELLS,
        InContextClassifier,
        heldout_features,
        run_grid,
        sample_episodes,
        summarize,
    )

    cb = ctx.codebook()
    cells = [c for c in TABLE1_CELLS if c.name in ctx.suite.table5_cells]
    clf = InContextClassifier(ctx.lm(), PROMPT_TEMPLATES["paper"], calibrate=False)
    out = {"llm": ctx.llm_name, "kg": 5, "ways": 5}
    episodes = None
    for name, kinds in (
        ("subword", {"subword"}),
        ("bigram", {"subword", "bigram"}),
        ("trigram", {"subword", "bigram", "trigram"}),
    ):
        keep = [i for i, e in enumerate(cb.entries) if e.get("kind", "subword") in kinds]
        variant = dataclasses.replace(
            cb, entries=[cb.entries[i] for i in keep], global_embeddings=cb.global_embeddings[keep]
        )
        store = heldout_features(
            ctx.vl(), variant, data_root=ctx.data_root, top=5, progress=ctx.progress, per_class=ctx.suite.pool_per_class
        )
        episodes = episodes or sample_episodes(store.pool(), 5, ctx.suite.table5_episodes, seed=0)
        recs = run_grid(clf, store, shard(episodes), 5, cells=cells, desc=f"Table 5 {name}", progress=ctx.progress)
        out[name] = {"entries": len(keep), "cells": summarize(gather(recs))}
    return out
