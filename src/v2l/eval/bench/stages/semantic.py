"""Table 2: the semantic quality of the global words, and nearest-support accuracies."""

from __future__ import annotations

from ..context import BenchContext
from .reconstruction import heldout_eval_images


def stage_semantic(ctx: BenchContext) -> dict:
    from ....tasks import heldout_features, sample_episodes
    from ...semantic import class_name_embeddings, semantic_quality

    vl, cb = ctx.vl(), ctx.codebook()
    store = heldout_features(
        vl,
        cb,
        data_root=ctx.data_root,
        top=max(ctx.suite.kg),
        progress=ctx.progress,
        per_class=ctx.suite.pool_per_class,
    )
    episodes = sample_episodes(store.pool(), 5, ctx.suite.semantic_episodes or ctx.suite.episodes, seed=0, max_shots=1)
    cls = class_name_embeddings(vl, cb, store.labels)
    out = {
        f"kg{kg}": semantic_quality(
            store.embeddings, store.labels, [w[:kg] for w in store.words], cb, cls, episodes, store.keys
        )
        for kg in ctx.suite.kg
    }
    if ctx.suite.semantic_imagenet:  # 1,000 classes, one image each: the words beyond Tiny-ImageNet's 200 classes
        out.update(imagenet_sample_quality(ctx, vl, cb))
    if (path := ctx.figure("words.png")) is not None:  # Fig. 6: what the global words say about an image
        from ....tokenizer.words import words_of_embeddings
        from ...figures import captioned_images

        shown = heldout_eval_images(6, 128, ctx.data_root)
        words = words_of_embeddings(cb, vl.encode_image(shown), 5)
        captioned_images(shown, [", ".join(w) for w, _ in words], path)
        out["figure"] = f"figures/{path.name}"
    return out


def imagenet_sample_quality(ctx: BenchContext, vl, cb) -> dict:
    """Table 2's measures on imagenet-1k-sample (no episodes: one image per class), keyed `imagenet-kgK`."""
    from ....data import WebDatasetShards
    from ....tokenizer.words import words_of_embeddings
    from ...semantic import class_name_embeddings, semantic_quality

    samples = list(WebDatasetShards("imagenet-1k-sample", root=ctx.data_root))
    labels = [s.label for s in samples]
    emb = vl.encode_image([s.image for s in samples])
    words = [w for w, _ in words_of_embeddings(cb, emb, max(ctx.suite.kg))]
    cls = class_name_embeddings(vl, cb, labels)
    return {f"imagenet-kg{kg}": semantic_quality(emb, labels, [w[:kg] for w in words], cb, cls) for kg in ctx.suite.kg}
