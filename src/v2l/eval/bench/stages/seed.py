"""SEED beside V2L on the same images (SEED v1 Tables 1–3 in miniature; `v2l.seed`):

- retrieval (Table 1): coco-captions test, image ↔ caption R@1/5/10 for SEED's causal embeddings, for the embeddings
  reconstructed from its codes alone, and for the VL model's image embedding (the space V2L's global words come from);
- captioning (Table 3): SEED-LLM, and V2L's frozen LLM in context (10 random pairs of coco train, the paper's way);
- classification by generation: Tiny-ImageNet val images of the training classes; SEED-LLM's caption, and V2L in
  context with nearest pairs of "a photo of a NAME." from the classes' train images; a hit names the class;
- generation (Table 2): VL score of images SEED-LLM draws for class names, beside real images of those classes;
- reconstruction: PSNR and VL image similarity of SEED's images drawn from codes and of V2L's reconstructions.

Computed on the main process (not sharded: a few minutes at these sizes).
"""

from __future__ import annotations

import time

from ..context import BenchContext


def _seed_model(ctx: BenchContext):
    if "seed" not in ctx.models:
        from ....seed import SeedModel

        ctx.models["seed"] = SeedModel.from_pretrained(ctx.suite.seed_model)
    return ctx.models["seed"]


def class_val_images(n: int, resolution: int | None, data_root=None) -> tuple[list, list[str]]:
    """`n` Tiny-ImageNet val images of v2l's training classes (one per class in sorted-wnid order, then a second …)
    and their class names."""
    from ....data import WebDatasetShards, center_crop_resize, tiny_imagenet_split
    from ....seed.data import class_names
    from ....tuning.data import class_indices

    ds = WebDatasetShards("tiny-imagenet-200", "val", root=data_root)
    wnids = tiny_imagenet_split()["train"]
    per = max(1, -(-n // len(wnids)))
    idx = class_indices(ds, wnids, per)
    idx = sorted(idx, key=lambda i: (sum(1 for j in idx if j < i and ds.meta(j)["wnid"] == ds.meta(i)["wnid"]), i))
    names = class_names(data_root)
    imgs = [ds[i].image for i in idx[:n]]
    return [center_crop_resize(im, resolution) if resolution else im for im in imgs], [
        names[ds.meta(i)["wnid"]] for i in idx[:n]
    ]


def stage_seed(ctx: BenchContext) -> dict:
    from ....seed.evaluate import class_hit, image_similarity, mean, recall_at, vl_scores
    from ....seed.model import SUBSTITUTIONS
    from ....tasks.captioning import Captioner, evaluate_captions
    from ....tasks.coco import load_coco
    from ...reconstruction import image_rows

    s = ctx.suite
    seed = _seed_model(ctx)
    tok, vl = ctx.tokenizer(), seed.vl
    out = {
        "seed_model": s.seed_model,
        "llm": seed.llm.name,
        "v2l_llm": ctx.llm_name,
        "substitutions": list(SUBSTITUTIONS),
    }
    out["code_usage_train"] = seed.meta.get("code_usage")
    if seed.folder is not None:
        from ....paths import file_sha256

        out["seed_weights_sha256"] = file_sha256(seed.folder / "seed.safetensors")[:16]
    t0 = time.perf_counter()

    # Table 1: retrieval
    test = load_coco("test", root=ctx.data_root)[: s.seed_retrieval]
    feats = seed.features([t.image for t in test])
    codes = seed.encode(None, feats)
    texts = [c for t in test for c in t.captions]
    owner = [i for i, t in enumerate(test) for _ in t.captions]
    temb = vl.encode_text(texts)
    out["retrieval"] = {
        "images": len(test),
        "texts": len(texts),
        "seed_causal_embedding": recall_at(seed.causal_vectors(feats), temb, owner),
        "seed_causal_codes": recall_at(seed.code_vectors(codes), temb, owner),
        "vl_image_embedding": recall_at(vl.encode_image([t.image for t in test]), temb, owner),
    }
    import torch

    test_usage = torch.bincount(codes.flatten(), minlength=seed.net.config.codebook_size)
    out["code_usage_test"] = {"codes_used": int((test_usage > 0).sum()), "images": len(test)}

    # Table 3: captioning
    train = load_coco("train", root=ctx.data_root)
    cap_set = test[: s.seed_captions]
    refs = {t.key: t.captions for t in cap_set}
    seed_caps = seed.caption([t.image for t in cap_set], codes[: len(cap_set)])
    v2l_cap = Captioner(ctx.lm(), ctx.vl(), ctx.codebook(), train, kg=21, shots=10, pairs="random", seed=0)
    v2l_caps = [r.caption for r in v2l_cap.caption([t.image for t in cap_set], [t.key for t in cap_set])]
    out["captioning"] = {
        "images": len(cap_set),
        "seed_llm": evaluate_captions({t.key: c for t, c in zip(cap_set, seed_caps, strict=True)}, refs),
        "v2l_in_context": evaluate_captions({t.key: c for t, c in zip(cap_set, v2l_caps, strict=True)}, refs),
        "examples": [
            {"image": t.key, "seed_llm": a, "v2l": b, "reference": t.captions[0]}
            for t, a, b in list(zip(cap_set, seed_caps, v2l_caps, strict=True))[:6]
        ],
    }

    # classification by generation
    imgs, names = class_val_images(s.seed_class_images, None, ctx.data_root)
    seed_says = seed.caption(imgs)
    pool_imgs, pool_names = class_val_pool(ctx)
    from ....tasks.coco import CocoImage

    pool = [
        CocoImage(f"pool-{i}", im, [f"a photo of a {n}."])
        for i, (im, n) in enumerate(zip(pool_imgs, pool_names, strict=True))
    ]
    v2l_cls = Captioner(ctx.lm(), ctx.vl(), ctx.codebook(), pool, kg=21, shots=10, pairs="nearest", seed=0)
    v2l_says = [r.caption for r in v2l_cls.caption(imgs)]
    seed_hits = [class_hit(t, n) for t, n in zip(seed_says, names, strict=True)]
    v2l_hits = [class_hit(t, n) for t, n in zip(v2l_says, names, strict=True)]
    out["classification"] = {
        "images": len(imgs),
        "classes": len(set(names)),
        "seed_llm_accuracy": mean([float(h) for h in seed_hits]),
        "v2l_in_context_accuracy": mean([float(h) for h in v2l_hits]),
        "v2l_pool": f"{len(pool)} train images of the same classes, 10 nearest pairs",
        "examples": [
            {"class": n, "seed_llm": a, "v2l": b} for n, a, b in list(zip(names, seed_says, v2l_says, strict=True))[:8]
        ],
    }

    # Table 2: generation, scored like real images of the class
    prompts = sorted(set(names))[: s.seed_prompts]
    drawn = seed.generate([f"a photo of a {p}." for p in prompts])
    gen_imgs = [g[0][0] for g in drawn]
    real = {n: im for im, n in zip(imgs, names, strict=True)}
    sentences = [f"a photo of a {p}." for p in prompts]
    out["generation"] = {
        "prompts": prompts,
        "vl_score_generated": mean(vl_scores(vl, gen_imgs, sentences)),
        "vl_score_real": mean(vl_scores(vl, [real[p] for p in prompts], sentences)),
        "vl_score_mismatched_real": mean(vl_scores(vl, [real[p] for p in prompts[1:] + prompts[:1]], sentences)),
    }

    # reconstruction through codes
    rec_src = [t.image for t in test[: s.seed_recon_images]]
    r = tok.config.resolution
    seed_rec = seed.draw(codes[: len(rec_src)])
    v2l_rec = tok.reconstruct(rec_src)
    rows_s, rows_v = image_rows(rec_src, seed_rec, r), image_rows(rec_src, v2l_rec, r)
    out["reconstruction"] = {
        "images": len(rec_src),
        "resolution": r,
        "seed_psnr": mean([x[0] for x in rows_s]),
        "v2l_psnr": mean([x[0] for x in rows_v]),
        "seed_vl_similarity": mean(image_similarity(vl, rec_src, seed_rec)),
        "v2l_vl_similarity": mean(image_similarity(vl, rec_src, v2l_rec)),
    }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    if (path := ctx.figure("seed.png")) is not None:
        from ...figures import image_grid

        shown = [(f"{i}", [rec_src[i], seed_rec[i], v2l_rec[i]]) for i in range(min(8, len(rec_src)))]
        image_grid(shown, ["original", "SEED (from 32 codes)", "V2L (reconstruction)"], path)
        gpath = ctx.figure("seed_generation.png")
        image_grid(
            [(p, [real[p], im]) for p, im in zip(prompts, gen_imgs, strict=True)],
            ["real image", "SEED-LLM draws"],
            gpath,
        )
        out["figures"] = [f"figures/{path.name}", f"figures/{gpath.name}"]
    return out


def class_val_pool(ctx: BenchContext) -> tuple[list, list[str]]:
    """V2L's in-context pool for classification: `seed_pool_per_class` train images of each training class."""
    from ....seed.data import tiny_images

    pool = tiny_images("train", ctx.suite.seed_pool_per_class, ctx.data_root)
    return [pool.load(i) for i in range(len(pool))], list(pool.classes)
