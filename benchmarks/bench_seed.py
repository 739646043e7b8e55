"""SEED's speed (SEED v1 §2 in miniature): SEED-LLM writing 32 codes for many prompts, batched across prompts (left
padded, one `generate` per batch), against one prompt at a time, in the same run, with identical codes required;
captioning batched against one image at a time likewise; the tokenizer's images/s (features → codes → drawn); and
each training stage's cost from the shipped checkpoint's record. Quality is the bench stage `seed`
(`v2l bench --suite seed`), not this script.

    python benchmarks/bench_seed.py --prompts 16        # the shipped seed-cpu

Writes benchmarks/results/seed.json.
"""

from __future__ import annotations

import argparse
import resource

import torch

from common import timed, write_result
from v2l.seed import SeedModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--seed-model", default="seed-cpu")
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args()

    from v2l.seed.data import class_names
    from v2l.tasks.coco import load_coco

    seed = SeedModel.from_pretrained(args.seed_model)
    llm = seed.llm
    names = sorted(class_names(args.data_root).values())[: args.prompts]
    texts = [f"a photo of a {n}." for n in names]
    llm.generate_codes(texts[:2])  # warm-up
    t_batched, batched = timed(llm.generate_codes, texts, batch_size=len(texts))
    t_single, single = timed(lambda: torch.cat([llm.generate_codes([t], batch_size=1) for t in texts]))
    images = [t.image for t in load_coco("test", root=args.data_root, limit=args.prompts)]
    t_feat, _ = timed(seed.features, images)
    t_enc, codes = timed(seed.encode, images)
    t_draw, _ = timed(seed.draw, codes)
    t_cap_b, cap_b = timed(llm.caption, codes, batch_size=len(codes))
    t_cap_1, cap_1 = timed(lambda: [c for row in codes for c in llm.caption(row[None], batch_size=1)])
    meta = seed.meta
    result = {
        "seed_model": args.seed_model,
        "llm": llm.name,
        "prompts": len(texts),
        "code_generation": {
            "batched_s": round(t_batched, 2),
            "one_prompt_at_a_time_s": round(t_single, 2),
            "speed_up": round(t_single / t_batched, 2),
            "codes_per_s": {
                "batched": round(batched.numel() / t_batched, 1),
                "single": round(single.numel() / t_single, 1),
            },
            "identical_codes": bool(torch.equal(batched, single)),
            "differing_codes": int((batched != single).sum()),
        },
        "captioning": {
            "images": len(codes),
            "batched_s": round(t_cap_b, 2),
            "one_image_at_a_time_s": round(t_cap_1, 2),
            "speed_up": round(t_cap_1 / t_cap_b, 2),
            "identical_captions": cap_b == cap_1,
        },
        "tokenizer": {
            "feature_map_images_per_s": round(len(images) / t_feat, 1),
            "encode_images_per_s": round(len(images) / t_enc, 1),
            "draw_images_per_s": round(len(images) / t_draw, 1),
        },
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "training": meta.get("training"),
        "code_usage": meta.get("code_usage"),
    }
    write_result("seed", result)


if __name__ == "__main__":
    main()
