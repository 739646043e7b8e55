"""Quantizers. Every quantizer returns `(quantized, indices, loss)` so the trainer never needs to know which one runs
(the baselines — LQAE, SPAE, VQ-GAN with an LLM codebook — plug in the same way).

- `LocalQuantizer` (paper §3.2): each position's nearest (Euclidean) row of the local codebook, i.e. the LLM vocabulary
  embedded by the VL text encoder, passed through a trainable linear projector (P-LLM embeddings). The search is a
  matrix product over bounded chunks of the codebook: memory is positions × chunk, never positions × codes × dim.
  For inference with a frozen codebook, `LocalQuantizer.use_search("hnsw")` swaps the exact search for a faiss HNSW
  graph (approximate; its recall and speed are measured in benchmarks/results/tokenizer.json).
- `GlobalQuantizer`: the K_g nearest entries of the frozen global codebook (E-LLM embeddings) to the VL image
  embedding. Nothing in it trains.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MissingPackageError
from ..registry import new_registry

SEARCH_KINDS = new_registry("local-search", "local-token search", "--search")
SEARCH_KINDS.add("exact", "exact", "exact nearest code, chunked matrix products (default)")
SEARCH_KINDS.add("hnsw", "hnsw", "faiss HNSW graph: approximate, faster on large codebooks (needs faiss-cpu)")


def check_search(kind: str) -> str:
    """`kind` if it names a local search, else one clear error (callers check before loading anything)."""
    return SEARCH_KINDS.get(kind)


_PREPARED: dict = {}  # the last frozen codebook's per-chunk search operands (see `_search_chunks`)


def _search_chunks(codebook: torch.Tensor, chunk: int, dtype: torch.dtype) -> list[tuple]:
    """Per chunk of codebook rows: (start, rows in the search dtype, ‖e‖² in fp32; halved for bf16).

    A frozen codebook (no gradient: the LLM embeddings of VQ-GAN+LLM, LQAE and SPAE; a V2L codebook at inference) is
    searched many times with the same operands (SPAE's SAQ six times per step), so the last one's are kept: the same
    computations, done once, hence bit-for-bit the same codes. A codebook with a gradient (V2L's projected one in
    training) is a new tensor each step and is never kept, nor is an inference tensor (no version counter to tell an
    in-place change)."""
    keep = not codebook.requires_grad and not codebook.is_inference()  # inference tensors have no version counter
    key = (
        codebook.data_ptr(),
        codebook._version if keep else -1,
        tuple(codebook.shape),
        codebook.dtype,
        str(codebook.device),
        chunk,
        dtype,
    )
    ref = _PREPARED.get("ref")
    if keep and _PREPARED.get("key") == key and ref is not None and ref() is codebook:
        return _PREPARED["chunks"]
    out = []
    for start in range(0, codebook.shape[0], chunk):
        e = codebook[start : start + chunk]
        e_sq = (e.float() * e.float()).sum(-1)
        out.append((start, e.float(), e_sq) if dtype == torch.float32 else (start, e.to(dtype), 0.5 * e_sq))
    if keep:
        import weakref

        _PREPARED.update(key=key, ref=weakref.ref(codebook), chunks=out)
    return out


def nearest_codes(
    x: torch.Tensor, codebook: torch.Tensor, chunk: int = 8192, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Index of the nearest codebook row (squared L2) for each row of `x`; (n, d) × (N, d) → (n,).

    ||x − e||² = ||x||² − 2 x·e + ||e||²; ||x||² does not change the argmin, so each chunk needs one matmul.
    `dtype=torch.bfloat16` does the matmul in bf16 (about 2× faster on CPUs with AVX512-BF16; near-ties may resolve
    differently — the agreement with fp32 is measured in benchmarks/results/tokenizer.json).
    """
    best_val = torch.full((x.shape[0],), float("inf"), device=x.device)
    best_idx = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    xm = x.to(dtype)
    for start, e, e_sq in _search_chunks(codebook, chunk, dtype):
        if dtype == torch.float32:
            d = torch.addmm(e_sq.unsqueeze(0), xm, e.T, beta=1.0, alpha=-2.0)  # one fused GEMM
            val, idx = d.min(dim=-1)
        else:
            # argmin(‖e‖² − 2 x·e) = argmax(x·e − ‖e‖²/2), bit for bit (scaling by 2 is exact in floating point):
            # one fp32 copy of the bf16 product, one in-place subtraction, one max; no other chunk-sized temporaries.
            d = (xm @ e.T).float()
            d.sub_(e_sq)  # e_sq is already halved for this path
            val, idx = d.max(dim=-1)
            val = val.neg_().mul_(2.0)  # back to the distance's scale (exact), to compare across chunks
        better = val < best_val
        best_val = torch.where(better, val, best_val)
        best_idx = torch.where(better, idx + start, best_idx)
    return best_idx


def nearest_k(x: torch.Tensor, codebook: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the `k` nearest codebook rows (squared L2) of each row of `x`: (n, k), nearest first."""
    d = (codebook * codebook).sum(-1).unsqueeze(0) - 2.0 * (x.float() @ codebook.float().T)
    return d.topk(min(k, codebook.shape[0]), dim=-1, largest=False).indices


def nearest_codes_naive(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The reference: `torch.cdist` over the whole codebook, then argmin (positions × codes memory)."""
    return torch.cdist(x.float(), codebook.float()).argmin(dim=-1)


class HNSWSearch:
    """Approximate nearest-code search over a fixed codebook: a faiss `IndexHNSWFlat` (squared L2).

    Built once per codebook (a few seconds for 49,152 × 384 on 2 cores); `ef_search` trades recall for speed.
    faiss is the well-kept library for this (CPU and GPU builds, exact and approximate indexes); install it with
    `pip install faiss-cpu` (or `pip install "v2l[faiss]"`).
    """

    def __init__(self, codebook: torch.Tensor, m: int = 32, ef_construction: int = 64, ef_search: int = 64):
        try:
            import faiss
        except ImportError as e:
            raise MissingPackageError(
                "Approximate search needs faiss: `pip install faiss-cpu`, or use the exact search (--search exact)."
            ) from e
        faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
        self.index = faiss.IndexHNSWFlat(codebook.shape[1], m)
        self.index.hnsw.efConstruction = ef_construction
        self.index.hnsw.efSearch = ef_search
        self.index.add(codebook.detach().float().cpu().contiguous().numpy())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _, idx = self.index.search(x.detach().float().cpu().contiguous().numpy(), 1)
        return torch.from_numpy(idx[:, 0]).long().to(x.device)


class LocalQuantizer(nn.Module):
    """Nearest P-LLM embedding per position, with the VQ losses of appendix A and a straight-through estimator.

    loss = ||sg(z) − ẑ||² + β ||sg(ẑ) − z||²: the first term trains the projector (the codebook itself is frozen), the
    second is the commitment term.
    """

    def __init__(
        self,
        codebook: torch.Tensor,
        projector: bool = True,
        beta: float = 0.3,
        chunk: int = 8192,
        exclude: torch.Tensor | None = None,
        search_dtype: str = "float32",
        normalized_search: bool = False,
    ):
        super().__init__()
        # LQAE searches by cosine (both sides L2-normalised) but hands on the code's own (raw) row.
        self.normalized_search = normalized_search
        self.register_buffer("codebook", codebook.float().clone(), persistent=False)
        dim = codebook.shape[1]
        # Identity initialisation: training starts from the VL text embeddings themselves (Table 6's middle row) and
        # the projector learns a correction; the official code starts from a random Linear (std dim^-0.5).
        self.projector = nn.Linear(dim, dim) if projector else None
        if self.projector is not None:
            nn.init.eye_(self.projector.weight)
            nn.init.zeros_(self.projector.bias)
        self.beta, self.chunk = beta, chunk
        self.search_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[search_dtype]
        # Rows that may never be chosen (e.g. special tokens); kept so that row i stays token id i.
        if exclude is None:
            exclude = torch.zeros(len(codebook), dtype=torch.bool)
        self.register_buffer("exclude", exclude, persistent=False)
        self._search = None  # (approximate index, parameter versions it was built at), see use_search

    def use_search(self, kind: str = "exact", **options) -> LocalQuantizer:
        """`exact` (chunked matmul, the default; always used while training) or `hnsw` (faiss, approximate) for
        inference. The index is built from the current projected codebook; changing the projector afterwards (an
        optimiser step) makes `forward` refuse it rather than search a stale graph."""
        if check_search(kind) == "hnsw":
            self._search = (HNSWSearch(self.search_embeddings(), **options), self._param_versions())
        else:
            self._search = None
        return self

    def _param_versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.parameters())

    @property
    def num_codes(self) -> int:
        return self.codebook.shape[0]

    def embeddings(self) -> torch.Tensor:
        e = self.codebook if self.projector is None else self.projector(self.codebook)
        return e

    def search_embeddings(self) -> torch.Tensor:
        with torch.no_grad():
            e = self.embeddings()
        if self.normalized_search:
            e = F.normalize(e, dim=-1)
        if self.exclude.any():
            e = e.masked_fill(self.exclude.unsqueeze(1), 1e4)  # far from every encoder output
        return e

    def rows(self, indices: torch.Tensor) -> torch.Tensor:
        """Projected embeddings of some token ids (the projector runs on those rows only: cheap to differentiate)."""
        c = self.codebook[indices]
        return c if self.projector is None else self.projector(c)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, h, w) token ids → (B, d, h, w) embeddings."""
        return self.rows(indices).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        if self._search is not None and not self.training:
            index, versions = self._search
            if versions != self._param_versions():
                raise RuntimeError("The projector changed since use_search('hnsw') built its index: call it again.")
            idx = index(F.normalize(flat, dim=-1) if self.normalized_search else flat)
        else:
            query = F.normalize(flat.detach(), dim=-1) if self.normalized_search else flat.detach()
            idx = nearest_codes(query, self.search_embeddings(), self.chunk, self.search_dtype)
        q = self.rows(idx)
        loss = F.mse_loss(q, flat.detach()) + self.beta * F.mse_loss(flat, q.detach())
        q = flat + (q - flat).detach()  # straight-through: the decoder's gradient reaches the encoder
        return q.view(b, h, w, d).permute(0, 3, 1, 2), idx.view(b, h, w), loss


class GlobalQuantizer(nn.Module):
    """The K_g nearest global-codebook entries (squared L2, equal to cosine ranking for unit vectors)."""

    def __init__(self, codebook: torch.Tensor, k: int = 21):
        super().__init__()
        if k > codebook.shape[0]:
            raise ValueError(f"K_g = {k} exceeds the global codebook's {codebook.shape[0]} entries.")
        self.register_buffer("codebook", codebook.float().clone(), persistent=False)
        self.k = k

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = nearest_k(f, self.codebook, self.k)
        return self.codebook[idx], idx, torch.zeros((), device=f.device)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return self.codebook[indices]
