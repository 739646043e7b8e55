"""The LM head's top-k in bfloat16 with a proven float32 answer: a screen that cannot change the chosen tokens.

The codebook's expansion (paper appendix A) asks the LLM for the most likely next token ~79,000 times (SmolLM2's
39,410 `word` tokens, then their bigrams). With the shared prefix's KV cache each prediction costs one token through
the decoder plus one row of the LM head over the allowed tokens (SmolLM2: 39,410 × 576); on a 2-core CPU that head is
a fifth to a third of the time in float32. Its bfloat16 product runs faster (AVX512-BF16), but a bfloat16 LLM picks
another top-1 for a few per cent of prompts (benchmarks/results/codebook.json), which would change the codebook.
`ScreenedHead` uses the bfloat16 product only as an *upper bound* on every logit and computes float32 logits for a few
candidates per row, with a check that proves no other token can beat them; a row whose proof fails is computed in
float32 in full.

**The bound.** For a hidden state h and a head row w (both float32), let ĥ, ŵ be their bfloat16 roundings (relative
error ≤ u = 2⁻⁸ each). A bfloat16 matrix product that accumulates in float32 (oneDNN's AVX512-BF16 kernels and
torch's fallback both do) returns s with |s − h·w| ≤ (2u + u²)·Σ|hᵢwᵢ| + γ·Σ|ĥᵢŵᵢ|, γ ≤ n·2⁻²⁴ for n terms, and
Σ|hᵢwᵢ| ≤ ‖h‖‖w‖ (Cauchy–Schwarz). So one extra column, ĥ' = c·‖h‖ against ŵ' = ‖w‖ with c = (2u + u² + 10⁻⁴)·1.02
(the 2 % covers the rounding of the extra column itself, 10⁻⁴ the float32 accumulation, ours and the float32
reference's), turns the same product into U ≥ h·w for every row. Its bfloat16 output adds at most u/(1−u)·|Û| (Û is
the rounded output), so h·w ≤ Û + u/(1−u)·|Û| =: B(Û), which is increasing in Û.

**The proof per row.** Take the K + 1 largest Û of a row; compute the float32 logits of the first K (a gather and a
small product); let v be the k-th largest of them. Every token outside the K has h·w ≤ B(Û_{K+1}); if
v > B(Û_{K+1}), none of them can enter the top k, and the top k of the K float32 logits are the top k of all (up to
float32 rounding between two logits, as with any change of float32 kernel). Rows where v ≤ B(Û_{K+1}) are redone in
float32 over every allowed token.

On SmolLM2's 2,048 real expansion prompts of `python benchmarks/bench_codebook.py --ceiling` (K = 16): 1.8 % of rows
needed the float32 fallback, every top-1 equalled float32's, and the head took 294 ms per 1,024 rows against 589 ms
in float32 (docs/results.md, "The expansion at ≥40×").
"""

from __future__ import annotations

import functools

import torch

U = 2.0**-8  # bfloat16's unit roundoff (8 significant bits, round to nearest)
BOUND_C = (2 * U + U * U + 1e-4) * 1.02  # the extra column's weight: ‖h‖‖w‖ times this bounds the product's error
OUTPUT_C = U / (1 - U)  # the bfloat16 output's rounding, relative to the rounded value


def bf16_matmul_is_fast(device: torch.device | str = "cpu") -> bool:
    """Whether this CPU has native bfloat16 matrix products (oneDNN with AVX512-BF16 or AMX); without them a bfloat16
    product is slower than float32 and the screen would cost time. Asked once per device type."""
    return _native_bf16(torch.device(device).type)


@functools.cache
def _native_bf16(device_type: str) -> bool:
    if device_type != "cpu":
        return False
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without the query
        return False


class ScreenedHead:
    """The float32 top-k of `h @ rows.T` (rows: (m, d) float32), screened in bfloat16 (see the module docstring).

    `fallback_rows` counts the rows computed in float32 in full since construction (tests and benchmarks read it).
    """

    def __init__(self, rows: torch.Tensor, candidates: int = 16):
        if rows.dtype != torch.float32 or rows.dim() != 2:
            raise ValueError("ScreenedHead needs a float32 (m, d) matrix of head rows.")
        self.rows = rows
        self.candidates = int(candidates)
        norms = rows.norm(dim=-1, keepdim=True)
        self.augmented = torch.cat([rows, norms], 1).to(torch.bfloat16).contiguous()  # (m, d + 1)
        self.fallback_rows = 0

    def topk(self, h: torch.Tensor, k: int = 1) -> torch.Tensor:
        """Indices (n, k) into the rows: the k largest float32 logits of each row of h (n, d), best first."""
        m = self.rows.shape[0]
        big_k = min(max(self.candidates, 2 * k), m - 1)
        if h.dtype != torch.float32 or big_k < k:  # too few rows for a screen to pay
            return (h.float() @ self.rows.T).topk(k, dim=-1).indices
        bound_col = BOUND_C * h.norm(dim=-1, keepdim=True)
        upper = torch.cat([h, bound_col], 1).to(torch.bfloat16) @ self.augmented.T  # (n, m) bfloat16, ≥ h·w
        top = upper.topk(big_k + 1, dim=-1)
        cand = top.indices[:, :big_k]  # (n, K)
        exact = torch.bmm(self.rows[cand], h.unsqueeze(-1)).squeeze(-1)  # (n, K) float32
        vals, order = exact.topk(k, dim=-1)
        nxt = top.values[:, big_k].float()
        proven = vals[:, -1] > nxt + OUTPUT_C * nxt.abs()
        out = cand.gather(1, order)
        bad = (~proven).nonzero().flatten()
        if len(bad):
            self.fallback_rows += len(bad)
            out[bad] = (h[bad] @ self.rows.T).topk(k, dim=-1).indices
        return out
