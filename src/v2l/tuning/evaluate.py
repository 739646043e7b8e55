"""Masked restoration measured (paper §4.3, Fig. 8): the tuned LLM beside the frozen LLM in context, LLM-free fills,
the paper's "input" and the tokenizer's own reconstruction, all on the same images and the same seeded mask.

Rows (each decoded with the image's own global ids):
- `tuned`: the LoRA-tuned LLM (`TunedLLM.fill`);
- `frozen`: the frozen LLM in context (`Denoiser.restore_masked`, the denoising machinery; no example shows a hidden
  token);
- `nearest`: each masked token copied from its nearest unmasked neighbour on the grid;
- `frequent`: each masked token set to the image's most frequent unmasked token;
- `input`: the masked tokens set to id 0 (the paper's "input" of Fig. 8);
- `ceiling`: nothing masked: the tokenizer's own reconstruction, what a perfect prediction would give.
"""

from __future__ import annotations

import torch

from .restore import TunedLLM, random_mask

ROWS = ("tuned", "frozen", "nearest", "frequent", "input", "ceiling")


def fill_frequent(local: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L): every masked position set to the most frequent unmasked id of its own image (ties: the smallest id)."""
    out = local.clone()
    for b in range(len(local)):
        ids, counts = local[b, ~mask].unique(return_counts=True)
        out[b, mask] = ids[counts.argmax()]
    return out


def restoration_maps(tok, images: list, ratio: float, seed: int, tuned_lm=None, frozen_lm=None, denoise_cfg=None):
    """({row: (B, L) token maps}, global ids, the true maps, the mask) for `images` already at the tokenizer's
    resolution. `tuned_lm` / `frozen_lm` None: that row is left out."""
    from ..tasks.denoise import DenoiseConfig, Denoiser, nearest_fill
    from .data import image_tokens

    gids, local = image_tokens(tok, images)
    mask = random_mask(local.shape[1], ratio, seed)
    h = tok.config.latent_size
    maps = {}
    if tuned_lm is not None:
        reader = TunedLLM(tok, tuned_lm)
        maps["tuned"] = reader.fill(reader.prefixes(gids), local, mask)
    if frozen_lm is not None:
        den = Denoiser(tok, frozen_lm, denoise_cfg or DenoiseConfig(seed=seed))
        maps["frozen"] = den.restore_masked(local, mask)[0]
    grid = mask.reshape(h, h)
    maps["nearest"] = torch.stack([nearest_fill(m.reshape(h, h), grid).reshape(-1) for m in local])
    maps["frequent"] = fill_frequent(local, mask)
    zeros = local.clone()
    zeros[:, mask] = 0
    maps["input"] = zeros
    maps["ceiling"] = local.clone()
    return maps, gids, local, mask


def masked_accuracy(maps: dict, local: torch.Tensor, mask: torch.Tensor) -> dict:
    """Per row: the fraction of masked positions given the tokenizer's own id."""
    return {k: float((m[:, mask] == local[:, mask]).float().mean()) for k, m in maps.items() if k != "ceiling"}
