"""SPAE (Yu et al. 2023, "SPAE: Semantic Pyramid AutoEncoder for Multimodal Generation with Frozen LLMs", §3.1), the
baseline of V2L Tables 1–4, on v2l's encoder and decoder. No public implementation exists; this follows the paper's
equations, and every choice it leaves open is a `TokenizerConfig` field recorded in docs/decisions.md.

- **Frozen language codebook**: the LLM's input embeddings (SPAE used PaLM 2's; here the codebook's LLM).
- **Token pyramid** of D layers of s_l × s_l tokens over one h × w embedding map (`pyramid_sides`: 1, 2, 4, 8, 16, 16
  for a 16 × 16 map, the paper's k = [0, 1, 2, 3, 4, 4]), placed by the **dilation subsampler** P(l) (eq. 1,
  `dilation_positions`).
- **Streaming Average Quantization** (eqs. 2–3, `streaming_average_quantize`): at layer l a covered position's target
  is z_l = z + Σ_{i<l, covered} (z − e(k_i)), its token the nearest code to z_l, and the quantized map the running
  mean of the chosen embeddings, ẑ_{≤l} = Σ e(k_i) / count.
- **Semantic loss** (eqs. 4–7, `semantic_loss`): per image and layer, a pool of candidate tokens whose min–max
  normalised VL similarity to the image (eqs. 5–6; the token's VL text embedding is v2l's local codebook row) is at
  least ρ_l; each layer embedding z_l of the first D′ layers is pulled (softmax over −‖z_l − e(k)‖²) toward a code
  sampled from its pool.
- **Appearance loss** (eq. 8): the trainer's reconstruction, perceptual and GAN terms, plus β Σ_l ‖Z − sg(Ẑ_{≤l})‖²
  over each layer's covered positions (returned as the VQ loss). LeCAM (φ = 1e-4) is the trainer's
  `lecam_weight` (`v2l.training.LeCAM`).
- **Dynamic weight** (eq. 9): the trainer adds α · sg(L_app / L_sem) · L_sem (`dynamic_semantic_term`).

Progressive in-context decoding (§3.2, PAR then PNAR, eqs. 10–11) belongs to the denoising task: `v2l.tasks.denoise`.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..models import TOKENIZER_MODELS, TokenizerOutput
from ..tokenizer.config import TokenizerConfig
from ..tokenizer.network import Decoder, Encoder
from ..tokenizer.quantizers import GlobalQuantizer, nearest_codes


def pyramid_sides(cfg: TokenizerConfig) -> tuple[int, ...]:
    """The side of each pyramid layer: `cfg.pyramid` if set, else 1, 2, 4, … up to the latent side, and the latent
    side once more (SPAE §4.1's k = [0, 1, 2, 3, 4, 4] for a 16 × 16 map)."""
    if cfg.pyramid:
        return tuple(cfg.pyramid)
    h = cfg.latent_size
    return tuple(2**k for k in range(int(math.log2(h)) + 1)) + (h,)


def dilation_positions(side: int, full: int) -> list[int]:
    """Eq. 1 along one axis: the 0-based rows (or columns) of the `full`-sized map that a `side`-sized layer
    quantizes, h′·i − ⌈h′/2⌉ + 1 for i = 1 … side (1-based in the paper), with h′ = full / side."""
    if full % side:
        raise ValueError(f"A pyramid layer of side {side} does not divide the {full}-wide embedding map.")
    step = full // side
    return [step * i - math.ceil(step / 2) for i in range(1, side + 1)]


def layer_index(side: int, h: int, device) -> tuple:
    """Index of a `side`-sized layer's positions (eq. 1) in a (B, d, h, h) map: `z[layer_index(...)]` is
    (B, d, side, side)."""
    rows = torch.tensor(dilation_positions(side, h), device=device)
    return (slice(None), slice(None), rows[:, None], rows[None, :])


def streaming_average_quantize(
    z: torch.Tensor,
    codebook: torch.Tensor,
    sides: tuple[int, ...],
    search_codebook: torch.Tensor | None = None,
    chunk: int = 8192,
    dtype: torch.dtype = torch.float32,
    partial: bool = False,
):
    """SAQ over the pyramid (eqs. 2–3). z: (B, d, h, w). Returns the quantized map ẑ_{≤D} (B, d, h, w, no gradient),
    the token ids of each layer [(B, s_l, s_l)], each layer's embeddings z_l at its positions [(B, d, s_l, s_l), with
    gradient through z] and each layer's running mean ẑ_{≤l} there [(B, d, s_l, s_l), no gradient]. Layer l depends
    on layers < l only, so `partial=True` with the first sides gives the first layers' tokens exactly (the map is then
    not whole: positions no layer covered hold 0)."""
    b, d, h, w = z.shape
    search = codebook if search_codebook is None else search_codebook
    sums = torch.zeros_like(z).detach()
    counts = torch.zeros((1, 1, h, w), dtype=z.dtype, device=z.device)
    ids, targets, means = [], [], []
    for side in sides:
        at = layer_index(side, h, z.device)
        z_l = (counts[at] + 1) * z[at] - sums[at]  # eq. 2: z + Σ_{i<l} (z − e(k_i)) at covered positions
        flat = z_l.detach().permute(0, 2, 3, 1).reshape(-1, d)
        k = nearest_codes(flat, search, chunk, dtype).view(b, side, side)
        e = codebook[k].permute(0, 3, 1, 2)
        sums[at] = sums[at] + e
        counts[at] = counts[at] + 1
        ids.append(k)
        targets.append(z_l)
        means.append(sums[at] / counts[at])  # eq. 3 at this layer's positions
    if (counts == 0).any() and not partial:
        raise ValueError("The pyramid's last layer must cover the whole embedding map (its side = the map's side).")
    return sums / counts.clamp_min(1), ids, targets, means


def candidate_pools(
    image_embeddings: torch.Tensor,
    token_text_embeddings: torch.Tensor,
    thresholds: tuple[float, ...],
    exclude: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Eqs. 4–6: per image, the tokens whose similarity to it, min–max normalised over the vocabulary (less the
    `exclude`d tokens), is ≥ ρ_l. One (B, V) bool mask per threshold; each holds at least the most similar token."""
    s = image_embeddings.float() @ token_text_embeddings.float().T
    keep = torch.ones(s.shape[-1], dtype=torch.bool, device=s.device) if exclude is None else ~exclude
    lo = s.masked_fill(~keep, float("inf")).min(-1, keepdim=True).values
    hi = s.masked_fill(~keep, float("-inf")).max(-1, keepdim=True).values
    rel = (s - lo) / (hi - lo).clamp_min(1e-12)
    return [(rel >= rho) & keep for rho in thresholds]


def semantic_loss(
    targets: list[torch.Tensor],
    codebook: torch.Tensor,
    pools: list[torch.Tensor],
    positions: int = 0,
    exclude: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Eq. 7 over the first len(pools) layers: −log softmax_k(−‖z_l − e(k)‖²)[c] with c drawn uniformly from the
    image's pool, averaged over layers, positions and images. `positions` > 0 draws that many positions per layer and
    image (an unbiased estimate of the mean; the full softmax over a 49k vocabulary for every position is the cost).
    `exclude`d tokens (special tokens) are left out of the softmax."""
    e_sq = (codebook.float() ** 2).sum(-1)
    total, layers = 0.0, 0
    for z_l, pool in zip(targets, pools, strict=False):
        b, d = z_l.shape[:2]
        q = z_l.permute(0, 2, 3, 1).reshape(b, -1, d)  # (B, N, d)
        n = q.shape[1]
        if positions and n > positions:
            pick = torch.stack([torch.randperm(n, generator=generator, device=q.device)[:positions] for _ in range(b)])
            q = torch.gather(q, 1, pick.unsqueeze(-1).expand(-1, -1, d))
            n = positions
        logits = -((q.float() ** 2).sum(-1, keepdim=True) - 2 * q.float() @ codebook.float().T + e_sq)
        if exclude is not None:
            logits = logits.masked_fill(exclude, float("-inf"))
        c = torch.multinomial(pool.float(), n, replacement=True, generator=generator)  # (B, N)
        total = total + F.cross_entropy(logits.reshape(b * n, -1), c.reshape(-1))
        layers += 1
    return total / max(layers, 1)


def dynamic_semantic_term(appearance: torch.Tensor, semantic: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 9: α · w · L_sem, w = sg(L_app / L_sem): its value is α · L_app, its gradient α · L_app/L_sem · ∇L_sem."""
    w = (appearance / semantic.clamp_min(1e-12)).detach()
    return alpha * w * semantic


class SPAE(nn.Module):
    """Encoder → SAQ over the token pyramid (frozen LLM codebook) → decoder, with the semantic loss of eq. 7.

    Same contract as `V2LTokenizer`: `forward(x, global_ids, image_embeddings=None)` returns a `TokenizerOutput`
    (x̂, token ids, the β commitment term of eq. 8, the semantic loss or None). Token ids are the whole pyramid,
    layer by layer, flattened: (B, Σ s_l²); `layer_ids` splits them. Global ids are accepted and ignored (SPAE has
    none; its first layers are its semantic tokens). The decoder reads ẑ_{≤D}.
    """

    needs_image_embeddings = True  # the trainer passes each image's VL embedding (the semantic loss)
    local_quantizer = None  # it searches its own pyramid (`quantize`), not one grid

    def __init__(
        self,
        cfg: TokenizerConfig,
        codebook: torch.Tensor,
        global_codebook: torch.Tensor,
        exclude: torch.Tensor | None = None,
        token_text_embeddings: torch.Tensor | None = None,
    ):
        super().__init__()
        cfg = dataclasses.replace(cfg, embed_dim=codebook.shape[1])
        self.config = cfg
        self.sides = pyramid_sides(cfg)
        if self.sides[-1] != cfg.latent_size or any(a > b for a, b in zip(self.sides, self.sides[1:], strict=False)):
            raise ValueError(
                f"pyramid {self.sides}: sides must not shrink and must end at the latent side {cfg.latent_size}."
            )
        for side in self.sides:
            dilation_positions(side, cfg.latent_size)
        self.encoder = Encoder(cfg)
        self.register_buffer("codebook", codebook.float().clone(), persistent=False)
        if exclude is None:
            exclude = torch.zeros(len(codebook), dtype=torch.bool)
        self.register_buffer("exclude", exclude, persistent=False)
        # The VL text embedding of each token (SPAE's f'_T(k), eq. 5): v2l's local codebook rows.
        self.register_buffer(
            "token_text",
            token_text_embeddings.float().clone() if token_text_embeddings is not None else None,
            persistent=False,
        )
        self.global_quantizer = GlobalQuantizer(global_codebook, k=min(cfg.num_global, len(global_codebook)))
        self.decoder = Decoder(cfg, context_dim=global_codebook.shape[1])
        self.search_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.search_dtype]

    @property
    def num_codes(self) -> int:
        return self.codebook.shape[0]

    @property
    def num_tokens(self) -> int:
        return sum(s * s for s in self.sides)

    def layer_ids(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """(B, Σ s_l²) → [(B, s_l, s_l)] per layer."""
        out, start = [], 0
        for s in self.sides:
            out.append(ids[:, start : start + s * s].reshape(-1, s, s))
            start += s * s
        return out

    def _search_codebook(self) -> torch.Tensor:
        return self.codebook.masked_fill(self.exclude.unsqueeze(1), 1e4) if self.exclude.any() else self.codebook

    def quantize(self, z: torch.Tensor):
        zhat, ids, targets, means = streaming_average_quantize(
            z, self.codebook, self.sides, self._search_codebook(), self.config.search_chunk, self.search_dtype
        )
        # Eq. 8's β Σ_l ‖Z − sg(Ẑ_{≤l})‖², over each layer's covered positions (the codebook is frozen).
        commit = sum(F.mse_loss(z_l_pos, m) for z_l_pos, m in zip(self._at_layers(z), means, strict=True))
        zq = z + (zhat - z).detach()  # straight-through
        return zq, torch.cat([k.flatten(1) for k in ids], 1), self.config.beta * commit, targets

    def _at_layers(self, z: torch.Tensor) -> list[torch.Tensor]:
        return [z[layer_index(side, z.shape[-1], z.device)] for side in self.sides]

    def encode(self, x: torch.Tensor):
        """Images → (quantized map, pyramid token ids (B, Σ s_l²), commitment loss)."""
        zq, ids, commit, _ = self.quantize(self.encoder(x))
        return zq, ids, commit

    @torch.no_grad()
    def first_layers(self, x: torch.Tensor, layers: int) -> torch.Tensor:
        """The first `layers` pyramid layers' ids (B, Σ_{l ≤ layers} s_l²) of images x, without searching the rest
        (SPAE's semantic tokens for the understanding tasks; equal to `encode`'s first tokens)."""
        _, ids, _, _ = streaming_average_quantize(
            self.encoder(x),
            self.codebook,
            self.sides[:layers],
            self._search_codebook(),
            self.config.search_chunk,
            self.search_dtype,
            partial=True,
        )
        return torch.cat([k.flatten(1) for k in ids], 1)

    def decode(self, zq: torch.Tensor, global_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(zq, None)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Pyramid ids (B, Σ s_l²) → ẑ_{≤D} (B, d, h, w): the mean of each position's chosen embeddings (eq. 3)."""
        h = self.config.latent_size
        b = ids.shape[0]
        sums = torch.zeros((b, self.codebook.shape[1], h, h), device=ids.device)
        counts = torch.zeros((1, 1, h, h), device=ids.device)
        for side, k in zip(self.sides, self.layer_ids(ids), strict=True):
            at = layer_index(side, h, ids.device)
            sums[at] = sums[at] + self.codebook[k].permute(0, 3, 1, 2)
            counts[at] = counts[at] + 1
        return sums / counts

    def decode_tokens(self, ids: torch.Tensor, global_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.embed_tokens(ids))

    def semantic(self, targets: list[torch.Tensor], image_embeddings: torch.Tensor) -> torch.Tensor:
        if self.token_text is None:
            raise ValueError("SPAE's semantic loss needs the tokens' VL text embeddings (token_text_embeddings).")
        pools = candidate_pools(
            image_embeddings.to(self.token_text.device),
            self.token_text,
            tuple(self.config.semantic_thresholds),
            self.exclude,
        )
        return semantic_loss(targets, self.codebook, pools, self.config.semantic_positions, self.exclude)

    def forward(
        self, x: torch.Tensor, global_ids: torch.Tensor | None = None, image_embeddings: torch.Tensor | None = None
    ) -> TokenizerOutput:
        zq, ids, commit, targets = self.quantize(self.encoder(x))
        sem = self.semantic(targets, image_embeddings) if image_embeddings is not None and self.training else None
        return TokenizerOutput(self.decode(zq), ids, commit, sem)

    @property
    def pyramid_sides(self) -> tuple[int, ...]:
        return self.sides


def _spae(cfg, local_codebook, global_codebook, exclude=None, token_text=None) -> SPAE:
    return SPAE(cfg, local_codebook, global_codebook, exclude=exclude, token_text_embeddings=token_text)


TOKENIZER_MODELS.add("spae", _spae, "SPAE (Yu et al. 2023): a token pyramid by streaming average quantization")
