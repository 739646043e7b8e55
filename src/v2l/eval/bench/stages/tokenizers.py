"""The baselines and Table 6's variants measured like the main tokenizer, row by row (each finished row kept)."""

from __future__ import annotations

import dataclasses
import json
import time

from ....paths import write_json_atomic
from ..context import BenchContext, gather, load_other, process_state, shard
from ..suites import suite_key
from .denoising import denoise_scores
from .reconstruction import heldout_eval_images, reconstruction


def stage_tokenizers(ctx: BenchContext) -> dict:
    """The other tokenizers (`ctx.others`: the baselines and Table 6's variants) measured like the main one:
    reconstruction on the same images; for the understanding tasks, the semantic quality of the tokens each gives an
    LLM and 5-way 1-shot classification under the three rules."""
    from ....baselines import token_ids, token_text_embeddings, token_texts, with_token_words
    from ....tasks import (
        PROMPT_TEMPLATES,
        TABLE1_CELLS,
        InContextClassifier,
        heldout_features,
        run_grid,
        sample_episodes,
        summarize,
    )
    from ....tasks.grid import heldout_images
    from ...semantic import class_name_embeddings, semantic_quality

    out = {}
    if not ctx.others:
        return {"rows": out}
    earlier = ctx.previous.get("rows") or {} if ctx.previous.get("suite") == suite_key(ctx.suite) else {}
    done = {
        label: row
        for label, row in {**_saved_rows(ctx), **earlier}.items()
        if row.get("status") == "ok" and ctx.others.get(label) == row.get("folder")
    }
    vl, cb, lm = ctx.vl(), ctx.codebook(), ctx.lm()
    store = heldout_features(vl, cb, data_root=ctx.data_root, progress=ctx.progress, per_class=ctx.suite.pool_per_class)
    episodes = sample_episodes(store.pool(), 5, ctx.suite.baseline_episodes, seed=0, max_shots=1)
    used = sorted({store.index()[item] for ep in episodes for _, item in [*ep.rounds[0], ep.query]})
    pool = dataclasses.replace(
        store,
        keys=[store.keys[i] for i in used],
        labels=[store.labels[i] for i in used],
        embeddings=store.embeddings[used],
        words=[store.words[i] for i in used],
    )
    images = heldout_images(pool, ctx.data_root)
    cls = class_name_embeddings(vl, cb, pool.labels)
    clf = InContextClassifier(lm, PROMPT_TEMPLATES["paper"], calibrate=False)
    cells = [c for c in TABLE1_CELLS if c.name == "ind-1shot-r0"]

    def understanding(tok, count):
        """Semantic quality and 5-way 1-shot accuracy of the first `count` tokens, on these pool images/episodes."""
        ids = gather(token_ids(tok, shard(images), count))
        words = token_texts(tok, ids)
        k = len(words[0]) if words else 0
        sem = semantic_quality(
            pool.embeddings,
            pool.labels,
            words,
            cb,
            cls,
            episodes,
            pool.keys,
            word_embeddings=token_text_embeddings(tok, ids),
        )
        recs = run_grid(
            clf,
            with_token_words(pool, words),
            shard(episodes),
            k,
            cells=cells,
            desc=f"{tok.config.model} 5-way",
            progress=ctx.progress,
        )
        return {"tokens_per_image": k, "semantic": sem, "fewshot": summarize(gather(recs))}

    # The main tokenizer on the very same episodes (its reconstruction and denoising are Tables 3 and 4: the same
    # images and settings), so every row of the side-by-side compares like with like.
    main = understanding(ctx.tokenizer(), 5)
    for label, folder in ctx.others.items():
        if label in done:  # measured by an earlier run of this stage with the same folder: said in the report
            out[label] = {**done[label], "reused": True}
            continue
        t0 = time.perf_counter()
        try:
            tok = load_other(ctx, folder)
        except Exception as e:  # noqa: BLE001 - a missing tokenizer is a row, not a failed bench
            out[label] = {"status": f"not built ({e})", "folder": str(folder)}
            continue
        model = tok.config.model
        row = {
            "status": "ok",
            "folder": str(folder),
            "model": model,
            "reconstruction": reconstruction(
                tok, heldout_eval_images(ctx.suite.images, tok.config.resolution, ctx.data_root)
            ),
        }
        row.update(understanding(tok, 5 if model in ("v2l", "spae") else None))
        row["denoising"] = denoise_scores(ctx, tok, ctx.suite.baseline_denoise_tasks)
        row["seconds"] = time.perf_counter() - t0
        out[label] = row
        if ctx.rows_dir is not None and process_state().is_main_process:  # a finished row survives a kill of the stage
            write_json_atomic(ctx.rows_dir / f"{row_file(label)}.json", {"suite": suite_key(ctx.suite), **row})
    return {"rows": out, "main": main, "seconds_reused": sum(row.get("seconds", 0.0) for row in done.values())}


def row_file(label: str) -> str:
    from ....codebooks.config import slug
    from ....paths import text_sha256

    return f"{slug(label)}-{text_sha256(label)[:8]}"


def _saved_rows(ctx: BenchContext) -> dict:
    """Rows of the tokenizers stage finished by an earlier, killed run of the same suite (by label)."""
    rows = {}
    for label in ctx.others:
        path = ctx.rows_dir / f"{row_file(label)}.json" if ctx.rows_dir is not None else None
        if path is not None and path.is_file():
            row = json.loads(path.read_text())
            if row.pop("suite", None) == suite_key(ctx.suite):
                rows[label] = row
    return rows
