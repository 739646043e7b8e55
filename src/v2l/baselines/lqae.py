"""LQAE (Liu et al. 2023, "Language Quantized AutoEncoders"), the baseline of V2L Tables 1–4, on v2l's encoder and
decoder.

An image's encoder output is quantized to the nearest row of a frozen bidirectional language model's word
embeddings (cosine search, the raw row handed on, straight-through gradients); during training a fraction of the
tokens (default half) is replaced by the LM's [MASK] embedding; the frozen LM reads the token sequence and the decoder
reconstructs the image from its last hidden states. Settings follow LQAE's published recipe (its repository's README:
`bert_min_ratio = bert_max_ratio = 0.5`, `quantizer_loss_commitment = 0.005`, `l2_normalize = True`,
`bert_channel_image_loss_weight = 1`, `nochannel_image_loss_weight = 0`, `use_bert_ste = False`).

Differences, recorded in docs/decisions.md: the LM is all-MiniLM-L6-v2 (a 6-layer BERT, 384-d; the one offline)
instead of RoBERTa-base; MiniLM ships without its masked-LM head, so LQAE's small masked-token loss (weight 1e-4) is
left out; the encoder/decoder are v2l's VQ-GAN CNN (the `--preset`'s), not LQAE's ViT, so all baselines share one
architecture. The tokens are WordPiece ids of the LM's vocabulary; `token_texts` spells them for an LLM prompt.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..models import TOKENIZER_MODELS, TokenizerOutput
from ..tokenizer.config import TokenizerConfig
from ..tokenizer.network import Decoder, Encoder
from ..tokenizer.quantizers import GlobalQuantizer, LocalQuantizer


class LQAE(nn.Module):
    """Encoder → cosine quantizer over the LM's word embeddings → [MASK] a fraction → frozen LM → decoder.

    Same contract as `V2LTokenizer` (`encode`, `decode`, `decode_tokens`, `forward(x, global_ids)`), so the trainer,
    checkpoints and `ImageTokenizer` treat both alike; `global_ids` are accepted and ignored (LQAE has no global
    tokens). The LM is frozen and kept out of `state_dict` (it is loaded from its package, not saved per run).
    """

    pyramid_sides = None
    needs_image_embeddings = False

    def __init__(
        self,
        cfg: TokenizerConfig,
        codebook: torch.Tensor,
        global_codebook: torch.Tensor,
        exclude: torch.Tensor | None = None,
        lm: nn.Module | None = None,
        mask_id: int | None = None,
    ):
        super().__init__()
        cfg = dataclasses.replace(cfg, embed_dim=codebook.shape[1])
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.local_quantizer = LocalQuantizer(
            codebook,
            projector=False,
            beta=cfg.beta,
            chunk=cfg.search_chunk,
            exclude=exclude,
            search_dtype=cfg.search_dtype,
            normalized_search=True,
        )
        self.global_quantizer = GlobalQuantizer(global_codebook, k=min(cfg.num_global, len(global_codebook)))
        self.decoder = Decoder(cfg, context_dim=global_codebook.shape[1])
        if lm is None or mask_id is None:
            from ..backbones.bidirectional import load_bidirectional_lm

            lm, tokenizer = load_bidirectional_lm(cfg.bidirectional_lm)
            mask_id = tokenizer.mask_token_id
        self._lm = [lm.eval().requires_grad_(False)]  # a list: not a submodule, so neither trained nor saved
        self.mask_id = int(mask_id)

    @property
    def lm(self) -> nn.Module:
        return self._lm[0]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images in [−1, 1] → (quantized rows (B, d, h, w), token ids (B, h, w), VQ loss)."""
        return self.local_quantizer(self.encoder(x))

    def mask(self, shape: tuple[int, int], device) -> torch.Tensor:
        """Which tokens become [MASK]: each with probability `mask_ratio` while training, none otherwise."""
        if not self.training or self.config.mask_ratio <= 0:
            return torch.zeros(shape, dtype=torch.bool, device=device)
        return torch.rand(shape, device=device) < self.config.mask_ratio

    def read(self, zq: torch.Tensor) -> torch.Tensor:
        """The frozen LM over the token rows (B, d, h, w) → its last hidden states in the same layout."""
        b, d, h, w = zq.shape
        lm = self.lm
        if next(lm.parameters()).device != zq.device:
            lm.to(zq.device)
        seq = zq.flatten(2).transpose(1, 2)
        masked = self.mask((b, h * w), zq.device)
        if masked.any():
            mask_row = self.local_quantizer.codebook[self.mask_id].to(seq.dtype)
            seq = torch.where(masked.unsqueeze(-1), mask_row, seq)
        out = lm(inputs_embeds=seq, attention_mask=torch.ones((b, h * w), dtype=torch.long, device=zq.device))
        return out.last_hidden_state.transpose(1, 2).reshape(b, -1, h, w)

    def decode(self, zq: torch.Tensor, global_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.read(zq), None)

    def decode_tokens(self, local_ids: torch.Tensor, global_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.local_quantizer.lookup(local_ids))

    def forward(self, x: torch.Tensor, global_ids: torch.Tensor | None = None) -> TokenizerOutput:
        zq, ids, vq_loss = self.encode(x)
        return TokenizerOutput(self.decode(zq), ids, vq_loss)


def _lqae(cfg, local_codebook, global_codebook, exclude=None, token_text=None) -> LQAE:
    return LQAE(cfg, local_codebook, global_codebook, exclude=exclude)


TOKENIZER_MODELS.add("lqae", _lqae, "LQAE (Liu et al. 2023): a frozen bidirectional LM's word embeddings as codebook")
