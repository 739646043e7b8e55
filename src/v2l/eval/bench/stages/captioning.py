"""Captioning in context (§4.2): BLEU-4, METEOR, ROUGE-L, CIDEr on coco-captions test images."""

from __future__ import annotations

from ..context import BenchContext, gather, shard


def coco_splits(ctx: BenchContext):
    from ....tasks.coco import load_coco

    return load_coco("train", root=ctx.data_root), load_coco("test", root=ctx.data_root)


def stage_captioning(ctx: BenchContext) -> dict:
    """Captions in context (§4.2): K_g = 21 words, 10 pairs from coco train for each of the suite's ways of choosing
    them (`random`: the paper's, one seeded draw; `nearest`: by the words' embeddings); BLEU-4, METEOR, ROUGE-L,
    CIDEr. The first way's scores and examples are the stage's headline."""
    from ....tasks.captioning import Captioner, evaluate_captions
    from ....tasks.pool import word_vectors

    train, test = coco_splits(ctx)
    test = test[: ctx.suite.captions]
    words = word_vectors([t.image for t in test], ctx.vl(), ctx.codebook(), 21)
    refs = {t.key: t.captions for t in test}
    by_pairs, preds = {}, {}
    for pairs in ctx.suite.caption_pairs:
        cap = Captioner(ctx.lm(), ctx.vl(), ctx.codebook(), train, kg=21, shots=10, pairs=pairs, seed=0)
        prompts, _ = cap.prompts(words)
        texts = gather(cap.answer(shard(prompts)))
        preds[pairs] = {t.key: x for t, x in zip(test, texts, strict=True)}
        by_pairs[pairs] = evaluate_captions(preds[pairs], refs)
    first = ctx.suite.caption_pairs[0]
    out = {
        "llm": ctx.llm_name,
        "images": len(test),
        "pairs": first,
        "scores": by_pairs[first],
        "examples": [
            {"image": t.key, "caption": preds[first][t.key], "words": words.words[i][:8], "reference": t.captions[0]}
            for i, t in enumerate(test[:6])
        ],
    }
    if len(by_pairs) > 1:
        out["by_pairs"] = by_pairs
    if (path := ctx.figure("captions.png")) is not None:  # Fig. 5
        from ...figures import captioned_images

        captioned_images(
            [t.image for t in test[:4]], [f"{ctx.llm_name}: {preds[first][t.key]}" for t in test[:4]], path
        )
        out["figure"] = f"figures/{path.name}"
    return out
