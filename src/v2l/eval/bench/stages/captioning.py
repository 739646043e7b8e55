"""Captioning in context (§4.2): BLEU-4, METEOR, ROUGE-L, CIDEr on coco-captions test images."""

from __future__ import annotations

from ..context import BenchContext, gather, shard


def coco_splits(ctx: BenchContext):
    from ....tasks.coco import load_coco

    return load_coco("train", root=ctx.data_root), load_coco("test", root=ctx.data_root)


def stage_captioning(ctx: BenchContext) -> dict:
    """Captions in context (§4.2): K_g = 21 words, 10 random pairs from coco train; BLEU-4, METEOR, ROUGE-L, CIDEr."""
    from ....tasks.captioning import Captioner, evaluate_captions
    from ....tasks.pool import word_vectors

    train, test = coco_splits(ctx)
    test = test[: ctx.suite.captions]
    cap = Captioner(ctx.lm(), ctx.vl(), ctx.codebook(), train, kg=21, shots=10, pairs="random", seed=0)
    words = word_vectors([t.image for t in test], ctx.vl(), ctx.codebook(), 21)
    prompts, _ = cap.prompts(words)
    mine = shard(prompts)
    texts = gather(cap.answer(mine))
    preds = {t.key: x for t, x in zip(test, texts, strict=True)}
    out = {
        "llm": ctx.llm_name,
        "images": len(test),
        "scores": evaluate_captions(preds, {t.key: t.captions for t in test}),
        "examples": [
            {"image": t.key, "caption": preds[t.key], "words": words.words[i][:8], "reference": t.captions[0]}
            for i, t in enumerate(test[:6])
        ],
    }
    if (path := ctx.figure("captions.png")) is not None:  # Fig. 5
        from ...figures import captioned_images

        captioned_images([t.image for t in test[:4]], [f"{ctx.llm_name}: {preds[t.key]}" for t in test[:4]], path)
        out["figure"] = f"figures/{path.name}"
    return out
