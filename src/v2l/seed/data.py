"""SEED's training and evaluation data: images with texts, their frozen features and the V2L tokenizer's tokens,
computed once and cached in atomic chunks (`V2L_CACHE/seed_features/`, `v2l.data.Chunks`).

Training images: v2l's 160 Tiny-ImageNet training classes (`per_class` each, the text "a photo of a NAME.") and
coco-captions train (its five captions). Evaluation: coco-captions test, and Tiny-ImageNet val images of the
training classes. The held-out 40 classes are never read here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..files import read_cache_tensors, write_cache_tensors
from ..paths import cache_root

CLASS_TEXT = "a photo of a {}."


@dataclass
class SeedImages:
    """Images (loaded lazily by `load(i)`), one list of texts each, keys and (for class images) names."""

    name: str
    keys: list[str]
    texts: list[list[str]]
    load: object  # i -> PIL image
    classes: list[str | None] = field(default_factory=list)  # the class name of each image, or None

    def __len__(self) -> int:
        return len(self.keys)


def class_names(data_root=None) -> dict[str, str]:
    """wnid → the first of Tiny-ImageNet's names for it ("goldfish")."""
    from ..data import tiny_imagenet_classes

    return {r["wnid"]: r["names"].split(",")[0].strip() for r in tiny_imagenet_classes(data_root)}


def tiny_images(split: str, per_class: int, data_root=None) -> SeedImages:
    """Tiny-ImageNet `split` images of v2l's 160 training classes, `per_class` each (0 = all), in shard order."""
    from ..data import WebDatasetShards, tiny_imagenet_split
    from ..tuning.data import class_indices

    ds = WebDatasetShards("tiny-imagenet-200", split, root=data_root)
    names = class_names(data_root)
    idx = class_indices(ds, tiny_imagenet_split()["train"], per_class)
    wnids = [ds.meta(i).get("wnid") for i in idx]
    return SeedImages(
        f"tiny-imagenet-200-{split}-{per_class}",
        [ds.keys[i] for i in idx],
        [[CLASS_TEXT.format(names[w])] for w in wnids],
        lambda i: ds[idx[i]].image,
        [names[w] for w in wnids],
    )


def coco_images(split: str, data_root=None, limit: int | None = None) -> SeedImages:
    from ..tasks.coco import load_coco

    rows = load_coco(split, root=data_root, limit=limit)
    return SeedImages(
        f"coco-captions-{split}-{len(rows)}",
        [r.key for r in rows],
        [list(r.captions) for r in rows],
        lambda i: rows[i].image,
        [None] * len(rows),
    )


def join(parts: Sequence[SeedImages]) -> SeedImages:
    offsets, keys, texts, classes = [], [], [], []
    for p in parts:
        offsets.append(len(keys))
        keys += p.keys
        texts += p.texts
        classes += p.classes

    def load(i):
        k = max(j for j, o in enumerate(offsets) if o <= i)
        return parts[k].load(i - offsets[k])

    return SeedImages("+".join(p.name for p in parts), keys, texts, load, classes)


def _fingerprint(obj) -> str:
    fp = obj.fingerprint() if hasattr(obj, "fingerprint") else obj
    return json.dumps(fp, sort_keys=True, default=str)


def cached_features(images: SeedImages, vl, tok, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(the VL image tower's feature maps (N, tokens, C) float16, the tokenizer's local ids (N, h·w)), cached."""
    from ..data import Chunks
    from ..tokenizer.image_tokenizer import to_tensor
    from ..tuning.data import tokenizer_fingerprint

    key = hashlib.sha256(
        json.dumps([_fingerprint(vl), tokenizer_fingerprint(tok), images.name, images.keys]).encode()
    ).hexdigest()[:16]
    path = cache_root() / "seed_features" / f"{key}.safetensors"
    cached = read_cache_tensors(path)
    if cached is not None and {"features", "local"} <= set(cached[0]) and len(cached[0]["local"]) == len(images):
        return cached[0]["features"], cached[0]["local"]
    work = path.with_suffix(".partial")
    chunks = Chunks(work, None)
    idx = list(range(len(images)))
    feats = chunks.map(
        "features",
        idx,
        64,
        lambda part: vl.feature_map([images.load(i) for i in part]).half(),
        f"image features of {images.name} (once)",
        progress,
    )

    @torch.inference_mode()
    def local(part):
        pixels = to_tensor([images.load(i) for i in part], tok.config.resolution)
        return tok.net.encode(pixels)[1].flatten(1).to(torch.int32)

    lids = chunks.map("local", idx, 64, local, f"V2L tokens of {images.name} (once)", progress)
    write_cache_tensors(path, {"features": feats, "local": lids}, {"data": images.name, "images": len(images)})
    shutil.rmtree(work, ignore_errors=True)
    return feats, lids


class SeedData:
    """Everything the tokenizer's stages read: features, local ids, each image's texts and their embeddings."""

    def __init__(self, images: SeedImages, vl, tok, progress: bool = True):
        self.images = images
        self.features, self.local = cached_features(images, vl, tok, progress)
        self.texts = sorted({t for ts in images.texts for t in ts})
        where = {t: i for i, t in enumerate(self.texts)}
        self.text_ids = [[where[t] for t in ts] for ts in images.texts]
        self.text_emb = cached_text_embeddings(self.texts, vl)

    def __len__(self) -> int:
        return len(self.features)

    def batch_texts(self, idx: Sequence[int], gen: torch.Generator) -> torch.Tensor:
        """One of each image's texts, chosen by `gen`: their embedding rows (B, D)."""
        pick = [self.text_ids[i][int(torch.randint(len(self.text_ids[i]), (1,), generator=gen))] for i in idx]
        return self.text_emb[pick]


def cached_text_embeddings(texts: list[str], vl) -> torch.Tensor:
    key = hashlib.sha256(json.dumps([_fingerprint(vl), texts]).encode()).hexdigest()[:16]
    path = cache_root() / "seed_features" / f"text-{key}.safetensors"
    cached = read_cache_tensors(path)
    if cached is not None and len(cached[0].get("t", ())) == len(texts):
        return cached[0]["t"]
    emb = vl.encode_text(texts).float()
    write_cache_tensors(path, {"t": emb}, {"texts": len(texts)})
    return emb


def training_images(per_class: int, coco: bool, data_root=None) -> SeedImages:
    parts = [tiny_images("train", per_class, data_root)]
    if coco:
        parts.append(coco_images("train", data_root))
    return join(parts) if len(parts) > 1 else parts[0]
