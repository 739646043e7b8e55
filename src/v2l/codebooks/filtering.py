"""Global-codebook filtering (paper §3.2): each image of a filtering set chooses its top-k expanded-vocabulary
entries by cosine similarity; the union (entries chosen at least `min_count` times) is the global codebook."""

from __future__ import annotations

import torch

from ..errors import V2LError
from .config import CodebookConfig


def filter_images(cfg: CodebookConfig, data_root):
    from ..data import open_images, select_indices

    ds = open_images(cfg.filter_data, split=cfg.filter_split, root=data_root)
    return ds, select_indices(ds, cfg.filter_classes, cfg.filter_per_class, data_name=cfg.filter_data)


def filter_candidates(
    cfg: CodebookConfig,
    img_emb: torch.Tensor,
    cand_emb: torch.Tensor,
    texts: list[str],
    kinds: list[str],
    ids: list[list[int]],
) -> tuple[list[dict], torch.Tensor]:
    """Each image's top-k candidates by cosine similarity; keep the union (min_count <= count <= max_share × images)."""
    counts = torch.zeros(len(texts), dtype=torch.long)
    for start in range(0, len(img_emb), 256):
        top = (img_emb[start : start + 256] @ cand_emb.T).topk(min(cfg.filter_top_k, len(texts)), dim=-1).indices
        counts += torch.bincount(top.flatten(), minlength=len(texts))
    most = cfg.max_share * len(img_emb)
    keep = [i for i in range(len(texts)) if cfg.min_count <= counts[i] <= most]
    if not keep:
        raise V2LError(
            f"No entry was chosen at least {cfg.min_count} times by at most {most:g} images: lower "
            "--min-count or raise --max-share."
        )
    entries = [{"text": texts[i], "kind": kinds[i], "ids": ids[i], "count": int(counts[i])} for i in keep]
    return entries, cand_emb[keep]
