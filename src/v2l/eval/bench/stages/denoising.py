"""Table 4: the five in-context restoration tasks, beside restorations without an LLM."""

from __future__ import annotations

import time

from ...reconstruction import image_rows, image_scores
from ..context import BenchContext, gather, shard
from .reconstruction import heldout_eval_images


def stage_denoising(ctx: BenchContext) -> dict:
    """Table 4: each task on the first held-out images; PSNR, ST-LPIPS and FID of the restoration against the
    original, beside the no-LLM restorations (the corrupted image's tokens; in/outpainting: nearest known token)."""
    shown: list = []
    out = {
        "llm": ctx.llm_name,
        "images": ctx.suite.denoise_images,
        **denoise_scores(ctx, ctx.tokenizer(), ctx.suite.denoise_tasks, shown),
    }
    if (path := ctx.figure("denoising.png")) is not None and shown:  # Fig. 7
        from ...figures import image_grid

        image_grid(shown, ["original", "corrupted", f"{ctx.llm_name}", "no LLM", "nearest token"], path)
        out["figure"] = f"figures/{path.name}"
    return out


def denoise_scores(ctx: BenchContext, tok, tasks, shown: list | None = None) -> dict:
    """Each denoising task with `tok`'s tokens and the bench's LLM on the first held-out images: FID, ST-LPIPS and
    PSNR of the LLM's restoration and of the no-LLM ones (sharded). `shown` collects the main process's first image
    per task for the figure."""
    from ....tasks.denoise import DenoiseConfig, Denoiser

    den = Denoiser(tok, ctx.lm(), DenoiseConfig(n=ctx.suite.denoise_n, m=ctx.suite.denoise_m))
    r = tok.config.resolution
    mine = shard(heldout_eval_images(ctx.suite.denoise_images, r, ctx.data_root, ctx.suite.denoise_seed))
    out = {"n": den.cfg.n, "m": den.cfg.m, "copies": den.cfg.copies}
    for task in tasks:
        t0 = time.perf_counter()
        restored = den.restore(mine, task) if mine else []
        base = den.baselines(mine, task) if mine else {}
        seconds = gather([time.perf_counter() - t0])
        rows = {
            "llm": gather(image_rows(mine, [x.restored for x in restored], r)),
            "corrupted": gather(image_rows(mine, base.get("corrupted", []), r)),
        }
        if task in ("inpaint", "outpaint") and not den.pyramid:
            rows["nearest"] = gather(image_rows(mine, base.get("nearest", []), r))
        out[task] = {k: image_scores(v) for k, v in rows.items()}
        out[task]["seconds_per_image"] = sum(seconds) / max(1, ctx.suite.denoise_images)
        if restored and shown is not None:
            shown.append(
                (
                    task,
                    [
                        mine[0],
                        restored[0].corrupted,
                        restored[0].restored,
                        base["corrupted"][0],
                        base.get("nearest", [None])[0],
                    ],
                )
            )
    return out
