"""COCO images with their five human captions and instance annotations, read from the `coco-captions` shards under
the data root (train = the in-context pool, test = evaluation)."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from ..data.readers import WebDatasetShards

COCO = "coco-captions"


@dataclass
class CocoImage:
    key: str
    image: Image.Image
    captions: list[str]
    objects: list[dict] | None = None  # COCO instance annotations in original-image pixels; None: not known
    original_size: tuple[int, int] | None = None  # (width, height) before the centre crop
    meta: dict = field(default_factory=dict, repr=False)


def load_coco(split: str, root=None, limit: int | None = None) -> list[CocoImage]:
    """The images of one split of `coco-captions` (sorted by key; the first `limit` if given)."""
    ds = WebDatasetShards(COCO, split, root=root)
    n = len(ds) if limit is None else min(limit, len(ds))
    out = []
    for i in sorted(range(len(ds)), key=lambda i: ds.keys[i])[:n]:
        s = ds[i]
        size = s.meta.get("original_size")  # [width, height]
        out.append(
            CocoImage(
                s.key,
                s.image,
                list(s.meta.get("captions", [])),
                s.meta.get("objects"),
                tuple(size) if size else None,
                s.meta,
            )
        )
    return out
