"""The V2L tokenizer network (paper §3.2, Fig. 2, appendix A Fig. 10): VQ-GAN's CNN encoder, the local and global
quantizers, and VQ-GAN's decoder with one cross-attention layer to the global tokens.

The configuration and its presets are in `v2l.tokenizer.config`.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..models import TOKENIZER_MODELS, TokenizerOutput
from .config import TokenizerConfig
from .quantizers import GlobalQuantizer, LocalQuantizer

# ---- VQ-GAN building blocks -------------------------------------------------------------------------------------


def group_count(c: int) -> int:
    """GroupNorm groups for `c` channels: the largest divisor of `c` not above min(32, c // 4) (VQ-GAN uses 32 groups
    of ≥ 4 channels). Equals the old min(32, c // 4) wherever that divided `c`; works for any `c`."""
    cap = max(1, min(32, c // 4))
    return max(g for g in range(1, cap + 1) if c % g == 0)


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(group_count(c), c, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.n1, self.c1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.n2, self.c2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.c1(F.silu(self.n1(x)))
        h = self.c2(F.silu(self.n2(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """VQ-GAN's single-head spatial self-attention."""

    def __init__(self, c: int):
        super().__init__()
        self.norm, self.qkv, self.out = _norm(c), nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class CrossAttention(nn.Module):
    """The local feature map attends to the K_g global-token embeddings (queries: positions; keys/values: tokens)."""

    def __init__(self, c: int, context_dim: int, heads: int = 4, residual: bool = True):
        super().__init__()
        if c % heads:
            raise ValueError(f"cross-attention over {c} channels cannot use {heads} heads (not a divisor).")
        self.norm, self.heads, self.residual = _norm(c), heads, residual
        self.q, self.kv = nn.Linear(c, c), nn.Linear(context_dim, 2 * c)
        self.out = nn.Linear(c, c)

    def forward(self, x, context):
        b, c, h, w = x.shape
        q = self.q(self.norm(x).flatten(2).transpose(1, 2))  # (b, hw, c)
        k, v = self.kv(context).chunk(2, dim=-1)  # (b, K, c)
        split = lambda t: t.reshape(b, t.shape[1], self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        a = F.scaled_dot_product_attention(split(q), split(k), split(v))
        a = self.out(a.transpose(1, 2).reshape(b, h * w, c)).transpose(1, 2).reshape(b, c, h, w)
        return x + a if self.residual else a


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        chs = [cfg.ch * m for m in cfg.ch_mult]
        self.conv_in = nn.Conv2d(3, chs[0], 3, padding=1)
        blocks, cin = [], chs[0]
        for i, cout in enumerate(chs):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cin, cout))
                cin = cout
            if i < len(chs) - 1:
                blocks.append(nn.Conv2d(cin, cin, 3, stride=2, padding=1))
        self.down = nn.Sequential(*blocks)
        self.mid = nn.Sequential(ResBlock(cin, cin), SelfAttention(cin), ResBlock(cin, cin))
        self.norm_out, self.conv_out = _norm(cin), nn.Conv2d(cin, cfg.embed_dim, 1)
        self.normalize = cfg.normalize_encoder_output

    def forward(self, x):
        h = self.mid(self.down(self.conv_in(x)))
        z = self.conv_out(F.silu(self.norm_out(h)))
        return F.normalize(z, dim=1) if self.normalize else z


class Decoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig, context_dim: int):
        super().__init__()
        chs = [cfg.ch * m for m in cfg.ch_mult][::-1]
        self.conv_in = nn.Conv2d(cfg.embed_dim, chs[0], 3, padding=1)
        self.res1, self.attn, self.res2 = ResBlock(chs[0], chs[0]), SelfAttention(chs[0]), ResBlock(chs[0], chs[0])
        self.cross_mode = cfg.cross_attention
        self.cross = (
            CrossAttention(chs[0], context_dim, heads=cfg.cross_attention_heads, residual=cfg.cross_attention_residual)
            if cfg.cross_attention != "none"
            else None
        )
        blocks, cin = [], chs[0]
        for i, cout in enumerate(chs):
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResBlock(cin, cout))
                cin = cout
            if i < len(chs) - 1:
                blocks += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(cin, cin, 3, padding=1)]
        self.up = nn.Sequential(*blocks)
        self.norm_out, self.conv_out = _norm(cin), nn.Conv2d(cin, 3, 3, padding=1)

    @property
    def last_layer(self) -> torch.Tensor:
        return self.conv_out.weight

    def forward(self, zq, context=None):
        h = self.res1(self.conv_in(zq))
        if self.cross is not None and self.cross_mode == "before" and context is not None:
            h = self.cross(h, context)
        h = self.attn(h)
        if self.cross is not None and self.cross_mode == "after" and context is not None:
            h = self.cross(h, context)
        h = self.up(self.res2(h))
        return self.conv_out(F.silu(self.norm_out(h)))


class V2LTokenizer(nn.Module):
    """Encoder → local quantizer → decoder (cross-attending to the global tokens' embeddings).

    The VL image encoder (global encoder) stays outside: global token ids are computed from it once per image and
    passed in, which lets training cache them.
    """

    pyramid_sides = None  # a grid of local tokens, not SPAE's pyramid (see v2l.models)
    needs_image_embeddings = False

    def __init__(
        self,
        cfg: TokenizerConfig,
        local_codebook: torch.Tensor,
        global_codebook: torch.Tensor,
        exclude: torch.Tensor | None = None,
    ):
        super().__init__()
        cfg = dataclasses.replace(cfg, embed_dim=local_codebook.shape[1])
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.local_quantizer = LocalQuantizer(
            local_codebook,
            projector=cfg.projector,
            beta=cfg.beta,
            chunk=cfg.search_chunk,
            exclude=exclude,
            search_dtype=cfg.search_dtype,
        )
        self.global_quantizer = GlobalQuantizer(global_codebook, k=min(cfg.num_global, len(global_codebook)))
        self.decoder = Decoder(cfg, context_dim=global_codebook.shape[1])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images in [−1, 1] (B, 3, R, R) → (quantized, local token ids (B, h, w), VQ loss)."""
        return self.local_quantizer(self.encoder(x))

    def decode(self, zq: torch.Tensor, global_ids: torch.Tensor | None) -> torch.Tensor:
        context = self.global_quantizer.lookup(global_ids) if global_ids is not None else None
        return self.decoder(zq, context)

    def decode_tokens(self, local_ids: torch.Tensor, global_ids: torch.Tensor | None) -> torch.Tensor:
        return self.decode(self.local_quantizer.lookup(local_ids), global_ids)

    def forward(self, x: torch.Tensor, global_ids: torch.Tensor | None) -> TokenizerOutput:
        zq, local_ids, vq_loss = self.encode(x)
        return TokenizerOutput(self.decode(zq, global_ids), local_ids, vq_loss)


def _v2l(cfg, local_codebook, global_codebook, exclude=None, token_text=None) -> V2LTokenizer:
    return V2LTokenizer(cfg, local_codebook, global_codebook, exclude=exclude)


TOKENIZER_MODELS.add("v2l", _v2l, "the V2L tokenizer (§3.2): projected LLM codebook, global tokens, cross-attention")
TOKENIZER_MODELS.add("vqgan-llm", _v2l, "VQ-GAN with the LLM's embeddings as its codebook (baseline, Tables 1-4)")
