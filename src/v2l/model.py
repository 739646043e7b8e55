"""The V2L tokenizer network (paper §3.2, Fig. 2, appendix A Fig. 10): VQ-GAN's CNN encoder, the local and global
quantizers, and VQ-GAN's decoder with one cross-attention layer to the global tokens.

Configs are dataclasses with named presets (`paper`, `cpu`); every choice the paper leaves open is a field with a
comment saying so, and is recorded in docs/decisions.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .quantizers import GlobalQuantizer, LocalQuantizer


@dataclass
class TokenizerConfig:
    resolution: int = 64
    ch: int = 64
    ch_mult: tuple[int, ...] = (1, 2, 2)  # len(ch_mult) − 1 down-samplings: 64 → 16 (×4)
    num_res_blocks: int = 1
    embed_dim: int = 384  # the codebook's dimension (the VL text space); set from the codebook
    num_global: int = 21  # K_g (paper: 21 for restoration tasks, 5 for classification)
    # Cross-attention placement: the main text puts it after the decoder's self-attention, appendix A before.
    cross_attention: str = "after"  # "after" | "before" | "none"
    # The official code replaces the feature map with the attention output; we add it (a residual), which keeps the
    # decoder usable when the global tokens say little. The paper is silent.
    cross_attention_residual: bool = True
    # The official code L2-normalises the encoder output per position; with unit-norm VL embeddings as codes this
    # puts encoder outputs on the codebook's scale. The paper is silent.
    normalize_encoder_output: bool = True
    beta: float = 0.3  # appendix A (the official code uses 0.33 on the codebook term instead)
    projector: bool = True  # P-LLM (Table 6 row 3); False = the VL text embeddings as they are (row 2)
    codebook_source: str = "vl"  # "vl": VL text embeddings of tokens; "llm": the LLM's raw input embeddings (row 1)
    search_chunk: int = 8192  # codes per matmul in the nearest-code search (memory bound)
    search_dtype: str = "float32"  # "bfloat16": ~2× faster search on CPUs with AVX512-BF16 (near-ties may differ)
    extra: dict = field(default_factory=dict)

    @property
    def latent_size(self) -> int:
        return self.resolution // 2 ** (len(self.ch_mult) - 1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TokenizerConfig:
        d = dict(d)
        d["ch_mult"] = tuple(d["ch_mult"])
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}})


PRESETS: dict[str, TokenizerConfig] = {
    # 128×128, ×8 down-sampling, channels 128·[1,2,2,4], 16×16 local tokens, K_g = 21 (METHOD.md §2).
    "paper": TokenizerConfig(resolution=128, ch=128, ch_mult=(1, 2, 2, 4), num_res_blocks=2, num_global=21),
    # 64×64 Tiny-ImageNet, ×4 down-sampling (still 16×16 = 256 local tokens), narrower: trains on 2 CPU cores.
    # The 49,152-code search dominates a CPU step, hence bf16 search (measured agreement in benchmarks/results).
    "cpu": TokenizerConfig(resolution=64, ch=32, ch_mult=(1, 2, 4), num_res_blocks=1, num_global=21,
                           search_dtype="bfloat16"),
    # For tests: seconds on a CPU.
    "tiny": TokenizerConfig(resolution=16, ch=16, ch_mult=(1, 2), num_res_blocks=1, num_global=3),
}


def get_config(preset: str | TokenizerConfig, **overrides) -> TokenizerConfig:
    if isinstance(preset, TokenizerConfig):
        return dataclasses.replace(preset, **overrides)
    if preset not in PRESETS:
        raise ValueError(f"Unknown tokenizer preset {preset!r}: use one of {', '.join(PRESETS)}.")
    return dataclasses.replace(PRESETS[preset], **overrides)


# ---- VQ-GAN building blocks -------------------------------------------------------------------------------------

def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, c // 4) if c >= 8 else 1, c, eps=1e-6)


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
        self.norm, self.heads, self.residual = _norm(c), heads if c % heads == 0 else 1, residual
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
        self.cross = (CrossAttention(chs[0], context_dim, residual=cfg.cross_attention_residual)
                      if cfg.cross_attention != "none" else None)
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

    def __init__(self, cfg: TokenizerConfig, local_codebook: torch.Tensor, global_codebook: torch.Tensor,
                 exclude: torch.Tensor | None = None):
        super().__init__()
        cfg = dataclasses.replace(cfg, embed_dim=local_codebook.shape[1])
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.local_quantizer = LocalQuantizer(local_codebook, projector=cfg.projector, beta=cfg.beta,
                                              chunk=cfg.search_chunk, exclude=exclude, search_dtype=cfg.search_dtype)
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

    def forward(self, x: torch.Tensor, global_ids: torch.Tensor | None):
        zq, local_ids, vq_loss = self.encode(x)
        return self.decode(zq, global_ids), local_ids, vq_loss
