"""The tuned LLM's speed (paper §4.3, appendix A, in miniature): masked restoration with the KV cache, batched,
against the plain way (one full forward per masked token, no cache, one image at a time) on the same images and
mask in the same run, with identical ids required; the frozen LLM in context on the same mask (`Denoiser.
restore_masked`) for its cost; and the LoRA run's training cost from its record. Restoration
quality is the bench stage `restoration` (`v2l bench --stage restoration`), not this script.

    python benchmarks/bench_restore.py --images 4 --ratio 0.3     # the shipped adapter and tokenizer, SmolLM2

Writes benchmarks/results/restore.json.
"""

from __future__ import annotations

import argparse
import json
import resource

import torch

from common import timed, write_result
from v2l.backbones import LanguageModel
from v2l.backbones.adapters import adapter_folder
from v2l.tokenizer import ImageTokenizer
from v2l.tuning.data import image_tokens
from v2l.tuning.restore import TunedLLM, random_mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--adapter", default="v2l-cpu")
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args()

    from v2l.eval.bench.stages.reconstruction import heldout_eval_images

    tok = ImageTokenizer.from_pretrained("cpu", progress=False)
    lm = LanguageModel.load(adapter=args.adapter, progress=False)
    images = heldout_eval_images(args.images, tok.config.resolution, args.data_root)
    gids, local = image_tokens(tok, images)
    reader = TunedLLM(tok, lm, batch_size=args.batch_size)
    prefixes = reader.prefixes(gids)
    mask = random_mask(local.shape[1], args.ratio, 0)
    reader.fill(prefixes[:1], local[:1], mask)  # warm-up
    t_fast, fast = timed(reader.fill, prefixes, local, mask)
    t_slow, slow = timed(reader.fill_reference, prefixes, local, mask)
    masked = int(mask.sum()) * len(images)
    from v2l.tasks.denoise import DenoiseConfig, Denoiser

    frozen_lm = LanguageModel.load(progress=False)
    den = Denoiser(tok, frozen_lm, DenoiseConfig(seed=0, batch_size=args.batch_size))
    t_frozen, _ = timed(den.restore_masked, local, mask)
    meta = json.loads((adapter_folder(args.adapter) / "v2l_adapter.json").read_text())
    result = {
        "adapter": args.adapter,
        "images": len(images),
        "masked_tokens": masked,
        "restoration": {
            "cached_batched_s": round(t_fast, 2),
            "one_forward_per_token_s": round(t_slow, 2),
            "speed_up": round(t_slow / t_fast, 2),
            "masked_tokens_per_s": {"cached_batched": round(masked / t_fast, 1), "plain": round(masked / t_slow, 1)},
            "identical_ids": bool(torch.equal(fast, slow)),
            "differing_ids": int((fast != slow).sum()),
            "batch_size": args.batch_size,
            "frozen_in_context_s": round(t_frozen, 2),
            "frozen_in_context_vs_tuned": round(t_frozen / t_fast, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        },
        "training": meta.get("training"),
        "recipe": meta.get("recipe"),
    }
    write_result("restore", result)


if __name__ == "__main__":
    main()
