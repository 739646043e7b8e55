"""The paper's baselines (V2L Tables 1–4) in the same framework as the V2L tokenizer: one encoder/decoder, one
trainer (`v2l train --model ...`), one checkpoint format (`ImageTokenizer.from_pretrained`).

- `vqgan-llm`: VQ-GAN with the LLM's input embeddings as its frozen codebook (`V2LTokenizer` with
  `codebook_source="llm"`, no projector, no global tokens; `get_config(preset, model="vqgan-llm")`).
- `lqae`: `LQAE` (Liu et al. 2023): a frozen bidirectional LM's word embeddings as codebook, half the tokens masked
  and read by that LM, the decoder reconstructing from its output.
- `spae`: `SPAE` (Yu et al. 2023, §3.1): a pyramid of LLM tokens by Streaming Average Quantization over the dilation
  subsampler's positions, a semantic loss toward tokens the VL model finds similar to the image, and its dynamic
  weight.

Each registers itself in `v2l.models` (the model registry; `v2l.models.build_network` makes the network a config
names); `load_bidirectional_lm` (in `v2l.backbones`) loads LQAE's frozen LM;
`token_ids` / `token_words` give the tokens any of them puts in an LLM prompt (`with_token_words` puts them in the
few-shot grid), `token_text_embeddings` their VL text embeddings (for the semantic measures).
"""

from __future__ import annotations

from ..backbones.bidirectional import BIDIRECTIONAL_LMS, lm_vocabulary, lm_word_embeddings, load_bidirectional_lm
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

__all__ = [
    "BIDIRECTIONAL_LMS",
    "LQAE",
    "SPAE",
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
