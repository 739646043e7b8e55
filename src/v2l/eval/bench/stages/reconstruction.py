"""Table 3: the tokenizer's reconstructions of held-out images (PSNR, SSIM, ST-LPIPS, FID)."""

from __future__ import annotations

from ...reconstruction import image_rows, image_scores
from ..context import BenchContext, gather, shard


def heldout_eval_images(n: int, resolution: int, data_root=None, seed: int | None = None) -> list:
    """`n` held-out-class Tiny-ImageNet val images (never seen in training), at `resolution`: the first `n`, or with
    `seed` a seeded sample of them in data order (Table 4's 100 images in docs/results.md)."""
    import random

    from ....data import WebDatasetShards, center_crop_resize, select_indices

    ds = WebDatasetShards("tiny-imagenet-200", "val", root=data_root)
    idx = select_indices(ds, "heldout", 0, data_name="tiny-imagenet-200")
    if seed is not None:
        random.Random(f"v2l-denoise:{seed}").shuffle(idx)
        idx = sorted(idx[:n])
    return [center_crop_resize(ds[i].image, resolution) for i in idx[:n]]


def reconstruction(tok, images: list) -> dict:
    """PSNR, SSIM, ST-LPIPS and FID of `tok`'s reconstructions of `images` (sharded over processes)."""
    mine = shard(images)
    rows = gather(image_rows(mine, tok.reconstruct(mine) if mine else [], tok.config.resolution))
    return {**image_scores(rows), "resolution": tok.config.resolution}


def stage_reconstruction(ctx: BenchContext) -> dict:
    tok = ctx.tokenizer()
    images = heldout_eval_images(ctx.suite.images, tok.config.resolution, ctx.data_root)
    out = {**reconstruction(tok, images), "tokenizer": ctx.tokenizer_name}
    if (path := ctx.figure("reconstruction.png")) is not None:
        from ...figures import image_grid

        shown = images[:8]
        image_grid(
            [("original", shown), (f"reconstructed ({ctx.tokenizer_name})", tok.reconstruct(shown))],
            [""] * len(shown),
            path,
        )
        out["figure"] = f"figures/{path.name}"
    return out
