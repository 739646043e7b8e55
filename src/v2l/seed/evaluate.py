"""SEED's measures (SEED v1 Tables 1–3 in miniature), computed the same way for SEED and for V2L's rows.

- `recall_at`: image ↔ text retrieval R@K with several texts per image (Table 1).
- `class_hit`: whether a generated text names the image's class (classification by generation).
- `vl_scores`: cosine between the VL model's image embedding and a text's (our CLIP score, Table 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def recall_at(images: torch.Tensor, texts: torch.Tensor, owner: Sequence[int], ks=(1, 5, 10)) -> dict:
    """Unit image vectors (N, D), unit text vectors (M, D), `owner[m]` the image of text m: image→text R@K (an image
    hits when any of its texts is in its top K) and text→image R@K, in percent."""
    owner_t = torch.as_tensor(list(owner))
    sim = images.float() @ texts.float().t()  # (N, M)
    out = {}
    for k in ks:
        top_t = sim.topk(min(k, sim.shape[1]), dim=1).indices  # texts of each image
        i2t = (owner_t[top_t] == torch.arange(len(images))[:, None]).any(1).float().mean()
        top_i = sim.t().topk(min(k, sim.shape[0]), dim=1).indices  # images of each text
        t2i = (top_i == owner_t[:, None]).any(1).float().mean()
        out[f"i2t_r{k}"], out[f"t2i_r{k}"] = round(100 * float(i2t), 2), round(100 * float(t2i), 2)
    return out


def class_hit(text: str, name: str) -> bool:
    """The generated text names the class: its name appears as whole words (case and punctuation ignored)."""
    import re

    words = re.findall(r"[a-z0-9']+", text.lower())
    want = re.findall(r"[a-z0-9']+", name.lower())
    n = len(want)
    return n > 0 and any(words[i : i + n] == want for i in range(len(words) - n + 1))


@torch.inference_mode()
def vl_scores(vl, images: Sequence, texts: Sequence[str]) -> list[float]:
    """cos(VL image embedding, VL text embedding) of each (image, text) pair."""
    if not images:
        return []
    a, b = vl.encode_image(list(images)), vl.encode_text(list(texts))
    return (a * b).sum(-1).tolist()


@torch.inference_mode()
def image_similarity(vl, a: Sequence, b: Sequence) -> list[float]:
    """cos between the VL image embeddings of two lists of images (does a reconstruction keep the meaning?)."""
    if not a:
        return []
    return (vl.encode_image(list(a)) * vl.encode_image(list(b))).sum(-1).tolist()


def mean(xs: Sequence[float]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None
