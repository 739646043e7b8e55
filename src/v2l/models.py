"""The tokenizer models, by name: one registry (`models`, the `--model` option) that the V2L tokenizer and the
paper's baselines fill, and one factory, `build_network`, that `v2l.tokenizer` (loading) and `v2l.training`
(training) both call. Neither imports the other's models: each model's module registers itself
(`TOKENIZER_MODELS.add`), and the registry imports its owners on first use, so adding a model is one module and one
`add` call.

Every model returns a `TokenizerOutput` from `forward(x, global_ids)`, and declares what it is rather than being
told apart by duck typing: `local_quantizer` (None for a model that searches its own token pyramid), `pyramid_sides`
(SPAE's layer sides, else None) and `needs_image_embeddings` (SPAE's semantic loss).

    from v2l.models import build_network, list_models
    list_models()            # ['v2l', 'vqgan-llm', 'lqae', 'spae']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .registry import new_registry, registry

if TYPE_CHECKING:
    import torch

# name -> (factory(cfg, local_codebook, global_codebook, exclude=..., token_text=...) -> nn.Module)
TOKENIZER_MODELS = new_registry("models", "tokenizer model", "--model")


@dataclass
class TokenizerOutput:
    """What a tokenizer model's forward pass returns."""

    reconstruction: torch.Tensor  # x̂, images in [−1, 1]
    local_ids: torch.Tensor  # the local token ids: (B, h, w) for a grid, (B, Σ s_l²) for SPAE's pyramid
    vq_loss: torch.Tensor  # the quantiser's loss (§3.2; SPAE: eq. 8's commitment)
    semantic_loss: torch.Tensor | None = None  # SPAE's semantic loss (eq. 7) in training, else None


def list_models() -> list[str]:
    return registry("models").names()


def build_network(
    cfg,
    local_codebook: torch.Tensor,
    global_codebook: torch.Tensor,
    exclude: torch.Tensor | None = None,
    token_text: torch.Tensor | None = None,
):
    """The trainable network `cfg.model` (a `TokenizerConfig`) names: the V2L tokenizer or a baseline. `token_text`:
    the VL text embedding of each LLM token (the codebook artefact's local embeddings), which SPAE's semantic loss
    needs."""
    factory = registry("models").get(cfg.model)
    return factory(cfg, local_codebook, global_codebook, exclude=exclude, token_text=token_text)
