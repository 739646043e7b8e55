"""Training data for the tokenizer: the images, resized to the preset, and their global token ids.

The global encoder is the frozen VL model, so each image's embedding is computed once and cached (resumable chunks
under `V2L_CACHE/image_embeddings/`); the K_g nearest global entries are then a cheap matrix product at start-up.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data import Chunks, center_crop_resize, open_images, select_indices
from ..files import read_cache_tensors, write_cache_tensors
from ..paths import cache_root
from ..tokenizer.quantizers import nearest_k


class TokenizerTrainData(Dataset):
    """Images resized to the preset resolution in [−1, 1], with their precomputed global token ids."""

    def __init__(
        self,
        images,
        indices: list[int],
        global_ids: torch.Tensor,
        resolution: int,
        embeddings: torch.Tensor | None = None,
    ):
        self.images, self.indices, self.global_ids, self.resolution = images, indices, global_ids, resolution
        self.embeddings = embeddings  # the VL image embeddings (SPAE's semantic loss reads them)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        s = self.images[self.indices[i]]
        img = center_crop_resize(s.image, self.resolution)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0
        item = {"pixels": x, "global_ids": self.global_ids[i]}
        if self.embeddings is not None:
            item["image_embeddings"] = self.embeddings[i]
        return item


def image_embeddings(vl, ds, indices: list[int], name: str, progress: bool = True) -> torch.Tensor:
    """VL image embeddings of `ds[indices]`, cached by (VL model, data set, indices)."""
    key = hashlib.sha256(json.dumps([vl.fingerprint(), name, indices], sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root() / "image_embeddings" / f"{key}.safetensors"
    cached = read_cache_tensors(path)  # a damaged entry: a warning, then rebuilt
    if cached is not None and cached[0].get("embeddings") is not None and len(cached[0]["embeddings"]) == len(indices):
        return cached[0]["embeddings"]
    work = path.with_suffix(".partial")
    emb = Chunks(work, None).map(
        "images",
        indices,
        512,
        lambda idx: vl.encode_image([ds[i].image for i in idx], batch_size=64),
        f"embed {name} images (once)",
        progress=progress,
    )
    write_cache_tensors(path, {"embeddings": emb}, {"vl": vl.fingerprint(), "data": name, "images": len(indices)})
    shutil.rmtree(work, ignore_errors=True)
    return emb


def training_data(
    vl,
    codebook,
    resolution: int,
    k: int,
    data: str = "tiny-imagenet-200",
    split: str | None = "train",
    classes: str = "train",
    per_class: int = 0,
    data_root=None,
    progress: bool = True,
) -> TokenizerTrainData:
    ds = open_images(data, split=split, root=data_root, on_error="raise")
    idx = select_indices(ds, classes, per_class, data_name=data)
    emb = image_embeddings(vl, ds, idx, f"{data}-{split}", progress)
    return TokenizerTrainData(ds, idx, nearest_k(emb, codebook.global_embeddings, k), resolution, embeddings=emb)
