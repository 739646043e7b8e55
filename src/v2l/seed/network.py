"""SEED's tokenizer networks (SEED v1 §2.1–2.2, Fig. 2): the Causal Q-Former, the VQ codebook, the reconstruction of
the causal embeddings from codes, and the Reverse Q-Former that maps them to a generator's conditioning (here the
V2L tokenizer's decoder input: one query per local token, see `v2l.seed.config`).

The contrastive head is on the last causal query (SEED's public code; with causal attention it is the only query
that has seen all the others), projected into the VL model's text space, so the same head also gives the global
words that the V2L decoder's cross-attention reads when an image is drawn from codes alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import SeedConfig


class Block(nn.Module):
    """Pre-norm transformer layer: self-attention (causal or not), optional cross-attention, MLP."""

    def __init__(self, width: int, heads: int, cross: bool):
        super().__init__()
        self.n1, self.attn = nn.LayerNorm(width), nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross = nn.MultiheadAttention(width, heads, batch_first=True) if cross else None
        self.nc = nn.LayerNorm(width) if cross else None
        self.n2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x, context=None, causal: bool = False):
        h = self.n1(x)
        mask = None
        if causal:  # query i attends to queries 0..i only
            n = x.shape[1]
            mask = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        if self.cross is not None:
            x = x + self.cross(self.nc(x), context, context, need_weights=False)[0]
        return x + self.mlp(self.n2(x))


class CausalQFormer(nn.Module):
    """Learned queries with causal self-attention and cross-attention to the frozen image features (§2.1)."""

    def __init__(self, cfg: SeedConfig, feature_dim: int, text_dim: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(cfg.queries, cfg.width) * 0.02)
        self.feature_proj = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, cfg.width))
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cross=True) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.text_head = nn.Linear(cfg.width, text_dim)  # the last query → the VL text space
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Image features (B, N, feature_dim) → causal embeddings (B, queries, width)."""
        ctx = self.feature_proj(features)
        x = self.queries.expand(len(features), -1, -1)
        for b in self.blocks:
            x = b(x, ctx, causal=True)
        return self.norm(x)

    def embed(self, causal: torch.Tensor) -> torch.Tensor:
        """The image's unit vector in the text space, from the last causal embedding."""
        return F.normalize(self.text_head(causal[:, -1]), dim=-1)


def contrastive_loss(
    image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor | float, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP's): unit image and text vectors (B, D), pair i is (image i, text i); `exclude` (B, B)
    marks off-diagonal pairs that are not negatives (two images of one class sentence)."""
    logits = scale * image @ text.t()
    if exclude is not None:
        logits = logits.masked_fill(exclude, -1e4)
    target = torch.arange(len(image), device=image.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


class SeedQuantizer(nn.Module):
    """Causal embeddings → codes (§2.2): project width → code_dim, l2-normalise, nearest code by cosine;
    straight-through gradient plus β-weighted commitment (VQ-VAE's loss, the paper's β 0.25); codes unused for
    `dead_after` steps are restarted from this batch's encoder outputs."""

    def __init__(self, cfg: SeedConfig):
        super().__init__()
        self.down, self.up = nn.Linear(cfg.width, cfg.code_dim), nn.Linear(cfg.code_dim, cfg.width)
        self.codebook = nn.Parameter(F.normalize(torch.randn(cfg.codebook_size, cfg.code_dim), dim=-1))
        self.beta, self.dead_after = cfg.beta, cfg.dead_after
        self.register_buffer("last_used", torch.zeros(cfg.codebook_size, dtype=torch.long))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def codes(self, causal: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.down(causal), dim=-1)
        return (z @ F.normalize(self.codebook, dim=-1).t()).argmax(-1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, Q) → embeddings (B, Q, width)."""
        return self.up(F.normalize(self.codebook, dim=-1)[codes])

    def forward(self, causal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(quantized embeddings (B, Q, width) with the straight-through gradient, codes (B, Q), VQ loss)."""
        z = F.normalize(self.down(causal), dim=-1)
        book = F.normalize(self.codebook, dim=-1)
        codes = (z.detach() @ book.t()).argmax(-1)
        q = book[codes]
        loss = F.mse_loss(q, z.detach()) + self.beta * F.mse_loss(z, q.detach())
        q_st = straight_through(z, q)
        if self.training:
            self._restart(codes, z.detach())
        return self.up(q_st), codes, loss

    @torch.no_grad()
    def _restart(self, codes: torch.Tensor, z: torch.Tensor) -> None:
        self.step += 1
        self.last_used[codes.flatten().unique()] = self.step
        dead = (self.step - self.last_used > self.dead_after).nonzero().flatten()
        if len(dead):
            flat = z.reshape(-1, z.shape[-1])
            gen = torch.Generator().manual_seed(int(self.step))  # a function of the step: resumes exactly
            pick = torch.randint(len(flat), (len(dead),), generator=gen).to(flat.device)
            self.codebook.data[dead] = flat[pick]
            self.last_used[dead] = self.step


def straight_through(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """q's values with z's gradient (VQ-VAE's estimator): d(out)/dz is the identity, q gets no gradient here."""
    return z + (q - z).detach()


class Reconstructor(nn.Module):
    """Quantized embeddings → the causal embeddings again (§2.2: trained with a cosine loss)."""

    def __init__(self, cfg: SeedConfig):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(cfg.queries, cfg.width) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cross=False) for _ in range(cfg.recon_depth))
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        x = q + self.pos
        for b in self.blocks:
            x = b(x, causal=True)  # keeps the 1D causal order of the codes
        return self.norm(x)


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()


class ReverseQFormer(nn.Module):
    """Learned queries reading the reconstructed embeddings → the V2L decoder's input (B, side·side, out_dim), one
    query per `patch` × `patch` block of the side × side map."""

    def __init__(self, cfg: SeedConfig, outputs: int, out_dim: int):
        super().__init__()
        self.side, self.patch = math.isqrt(outputs), cfg.reverse_patch
        if self.side**2 != outputs or self.side % self.patch:
            raise ValueError(f"{outputs} outputs are not a square map divisible into {self.patch}-blocks")
        n = (self.side // self.patch) ** 2
        self.queries = nn.Parameter(torch.randn(n, cfg.width) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cross=True) for _ in range(cfg.reverse_depth))
        self.norm, self.out = nn.LayerNorm(cfg.width), nn.Linear(cfg.width, out_dim * self.patch**2)

    def forward(self, recon: torch.Tensor) -> torch.Tensor:
        x = self.queries.expand(len(recon), -1, -1)
        for b in self.blocks:
            x = b(x, recon)
        y = self.out(self.norm(x))  # (B, (s/p)², p·p·d)
        b, g, p = len(y), self.side // self.patch, self.patch
        y = y.reshape(b, g, g, p, p, -1).permute(0, 1, 3, 2, 4, 5)  # rows of blocks, rows within a block, …
        return y.reshape(b, self.side * self.side, -1)


class SeedNet(nn.Module):
    """The whole SEED tokenizer: image features → causal embeddings → codes → embeddings → the V2L decoder input."""

    def __init__(self, cfg: SeedConfig, feature_dim: int, text_dim: int, outputs: int, out_dim: int):
        super().__init__()
        self.config = cfg
        self.qformer = CausalQFormer(cfg, feature_dim, text_dim)
        self.quantizer = SeedQuantizer(cfg)
        self.reconstructor = Reconstructor(cfg)
        self.reverse = ReverseQFormer(cfg, outputs, out_dim)
        self.shape = {"feature_dim": feature_dim, "text_dim": text_dim, "outputs": outputs, "out_dim": out_dim}

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Image features → codes (B, queries)."""
        return self.quantizer.codes(self.qformer(features))

    def from_codes(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes → (reconstructed causal embeddings (B, Q, width), decoder input (B, outputs, out_dim))."""
        recon = self.reconstructor(self.quantizer.lookup(codes))
        return recon, self.reverse(recon)
