"""The one reconstruction scorer (paper Tables 3, 4 and 6): per image PSNR, SSIM, ST-LPIPS and the Inception
features FID needs, then their means and FID. The bench stages (`reconstruction`, `denoising`, `tokenizers`), the
`v2l reconstruct` report and benchmarks/bench_tokenizer.py all score through it.
"""

from __future__ import annotations

import functools

import numpy as np
import torch


@functools.cache
def stlpips():
    from .metrics import STLPIPS

    return STLPIPS()


def image_rows(reference: list, images: list, resolution: int) -> list[tuple]:
    """Per image: (PSNR, SSIM, ST-LPIPS, Inception features of the reference, of the image)."""
    from ..tokenizer.image_tokenizer import to_tensor
    from .fid import inception_features
    from .metrics import psnr, ssim

    if not images:
        return []
    x, y = to_tensor(reference, resolution), to_tensor(images, resolution)
    with torch.inference_mode():
        if resolution < 64:  # ST-LPIPS's AlexNet needs at least ~64 pixels; tiny test models are upsampled for it
            up = [torch.nn.functional.interpolate(t, size=64, mode="bilinear", align_corners=False) for t in (y, x)]
            lp = stlpips()(*up)
        else:
            lp = stlpips()(y, x)
    feats = zip(inception_features(reference), inception_features(images), strict=True)
    return [
        (float(a), float(b), float(c), fa, fb)
        for a, b, c, (fa, fb) in zip(psnr(y, x), ssim(y, x), lp.flatten(), feats, strict=True)
    ]


def image_scores(rows: list[tuple]) -> dict:
    """Means over gathered `image_rows`, and FID between the references and the images."""
    from .fid import fid_from_features

    n = len(rows)
    if n == 0:
        return {"images": 0}
    real, fake = np.stack([r[3] for r in rows]), np.stack([r[4] for r in rows])
    return {
        "images": n,
        "psnr": sum(r[0] for r in rows) / n,
        "ssim": sum(r[1] for r in rows) / n,
        "st_lpips": sum(r[2] for r in rows) / n,
        "fid": fid_from_features(real, fake) if n >= 2 else None,
    }


def score_reconstructions(tok, images: list, chunk: int = 50, per_image: bool = False) -> dict:
    """Mean PSNR / SSIM / ST-LPIPS and FID of `tok`'s reconstructions of `images` at its resolution, `chunk` images
    at a time; `per_image=True` adds each image's PSNR (`psnr_per_image`)."""
    rows = []
    r = tok.config.resolution
    for s in range(0, len(images), chunk):
        part = images[s : s + chunk]
        rows += image_rows(part, tok.reconstruct(part), r)
    out = {**image_scores(rows), "resolution": r}
    if per_image:
        out["psnr_per_image"] = [float(row[0]) for row in rows]
    return out
