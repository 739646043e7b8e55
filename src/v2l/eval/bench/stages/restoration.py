"""Paper §4.3, Fig. 8: masked image restoration at 30 % by the LoRA-tuned LLM, beside the frozen LLM in context,
LLM-free fills, the paper's "input" and the tokenizer's ceiling (`v2l.tuning.evaluate`)."""

from __future__ import annotations

import time

from ...reconstruction import image_rows, image_scores
from ..context import BenchContext, gather, shard
from .reconstruction import heldout_eval_images


def tuning_eval_images(n: int, resolution: int, data_root=None) -> list:
    """`n` Tiny-ImageNet val images of the tuning classes (`v2l.tuning.tuning_classes`; never trained on: the adapter
    reads the classes' train images), spread over the classes: the first ⌈n / 12⌉ of each, then the first `n`."""
    from ....data import WebDatasetShards, center_crop_resize
    from ....tuning.data import class_indices, tuning_classes

    ds = WebDatasetShards("tiny-imagenet-200", "val", root=data_root)
    idx = class_indices(ds, tuning_classes(12), per_class=max(1, -(-n // 12)))[:n]
    return [center_crop_resize(ds[i].image, resolution) for i in idx]


def stage_restoration(ctx: BenchContext) -> dict:
    from ....tasks.denoise import DenoiseConfig
    from ....tuning.evaluate import masked_accuracy, restoration_maps
    from ....tuning.restore import decode_maps

    s = ctx.suite
    tok = ctx.tokenizer()
    r = tok.config.resolution
    tuned = ctx.tuned_lm(s.restore_adapter) if s.restore_adapter else None
    cfg = DenoiseConfig(n=s.denoise_n, m=s.denoise_m, seed=s.restore_seed)
    out = {"llm": ctx.llm_name, "adapter": s.restore_adapter or None, "ratio": s.restore_ratio, "seed": s.restore_seed}
    shown = []
    for name, images in (
        ("tuning_classes", tuning_eval_images(s.restore_tuned_images, r, ctx.data_root)),
        ("heldout_classes", heldout_eval_images(s.restore_images, r, ctx.data_root, seed=s.restore_seed)),
    ):
        mine = shard(images)
        t0 = time.perf_counter()
        maps, gids, local, mask = restoration_maps(
            tok, mine, s.restore_ratio, s.restore_seed, tuned, ctx.lm() if s.restore_frozen else None, cfg
        )
        seconds = gather([time.perf_counter() - t0])
        decoded = {k: decode_maps(tok, m, gids) for k, m in maps.items()}
        scores = {k: image_scores(gather(image_rows(mine, v, r))) for k, v in decoded.items()}
        acc = masked_accuracy(maps, local, mask)
        for k in scores:
            if k in acc:
                scores[k]["masked_tokens_exact"] = acc[k]  # of this process's images
        out[name] = {**scores, "seconds": sum(seconds)}
        if mine and name == "tuning_classes":
            shown = [(f"{i}", [mine[i], *(decoded[k][i] for k in decoded)]) for i in range(min(8, len(mine)))]
            out["rows"] = list(decoded)
    if (path := ctx.figure("restoration.png")) is not None and shown:  # Fig. 8 in miniature
        from ...figures import image_grid

        image_grid(shown, ["original", *out["rows"]], path)
        out["figure"] = f"figures/{path.name}"
    if s.generate_classes and tuned is not None:
        out["generation"] = drawn_classes(ctx, tok, tuned)
    return out


def drawn_classes(ctx: BenchContext, tok, tuned) -> dict:
    """Images from words: `generate_samples` draws for each of the first `generate_classes` tuning classes' names
    (main process only), with a figure."""
    from ....data import tiny_imagenet_classes
    from ....tuning.data import tuning_classes
    from ....tuning.restore import generate_images

    s = ctx.suite
    names = {r["wnid"]: r["names"].split(",")[0].strip() for r in tiny_imagenet_classes(ctx.data_root)}
    prompts = [names[w] for w in tuning_classes(12)[: s.generate_classes]]
    t0 = time.perf_counter()
    drawn = generate_images(tok, tuned, prompts, s.generate_samples, 1.0, 100, s.restore_seed)
    out = {
        "prompts": prompts,
        "samples": s.generate_samples,
        "temperature": 1.0,
        "top_k": 100,
        "words": {p: g[0][1][:5] for p, g in zip(prompts, drawn, strict=True)},
        "seconds": time.perf_counter() - t0,
    }
    if (path := ctx.figure("generation.png")) is not None:
        from ...figures import image_grid

        rows = [(p, [img for img, _, _ in g]) for p, g in zip(prompts, drawn, strict=True)]
        image_grid(rows, [f"sample {k + 1}" for k in range(s.generate_samples)], path)
        out["figure"] = f"figures/{path.name}"
    return out
