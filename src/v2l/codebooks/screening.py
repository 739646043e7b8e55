"""Screening the expanded candidates' text embeddings in bfloat16: the same global codebook, less float32 work.

Embedding the ~86,000 expanded entries (bigrams, trigrams) × the templates is the largest part of a codebook build on
CPU. Filtering (paper §3.2) keeps each filtering image's top-k candidates by cosine similarity, so a candidate's
float32 embedding matters only where that candidate could be in some image's top-k (the artefact stores the chosen
entries' embeddings only). The build therefore embeds every expanded candidate in bfloat16 first (autocast; faster
on CPUs with AMX), and again in float32 only those the screened scores cannot rule out:

Let every screened embedding be within δ of its float32 one, ‖e_b − e_f‖ ≤ δ. Images and embeddings are unit vectors,
so each score moves by at most δ: |s_b − s_f| ≤ δ. For one image let τ_f be the k-th largest exact score and τ_b the
k-th largest screened one. Fewer than k candidates have s_f > τ_f, and every candidate with s_b > τ_f + δ is one of
them, so τ_b ≤ τ_f + δ. A candidate c of the exact top-k has s_b(c) ≥ s_f(c) − δ ≥ τ_f − δ ≥ τ_b − 2δ. Hence a
candidate with s_b < τ_b − 2δ for every image is in no exact top-k, and, keeping its screened embedding, it still
ranks below every exact top-k member (s_b < τ_f − δ), so filtering on the mixed matrix chooses exactly what filtering
on float32 embeddings chooses (ties aside). Table 5's variants choose among fewer candidates; each variant's
candidate set is screened too.

δ is not known in advance: `SCREEN_BOUND` is ~3× the largest error measured on real candidates
(benchmarks/results/codebook.json), and every build checks it on the candidates it re-embeds. If their largest error
exceeds half the bound, the bound is doubled and the screen repeated (more float32 work, never another codebook).
`v2l codebook build --screen off` embeds every candidate in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

SCREEN_BOUND = 0.02


def could_be_chosen(
    images: torch.Tensor, emb: torch.Tensor, groups: Sequence[torch.Tensor], top_k: int, bound: float, block: int = 512
) -> torch.Tensor:
    """Rows of `emb` whose screened score is within 2·`bound` of the k-th best of some image, within some group of
    candidates (`groups`: row indices, one tensor per filtering run that ranks them). Bool (len(emb),)."""
    need = torch.zeros(len(emb), dtype=torch.bool)
    for rows in groups:
        if len(rows) == 0:
            continue
        sub = emb[rows]
        k = min(top_k, len(rows))
        for start in range(0, len(images), block):
            scores = images[start : start + block] @ sub.T
            tau = scores.topk(k, dim=-1).values[:, -1:]
            need[rows[(scores >= tau - 2 * bound).any(0)]] = True
    return need


def confirm_screened(
    emb: torch.Tensor,
    screened: torch.Tensor,
    images: torch.Tensor,
    groups: Sequence[torch.Tensor],
    top_k: int,
    exact: Callable[[torch.Tensor], torch.Tensor],
    bound: float = SCREEN_BOUND,
) -> tuple[torch.Tensor, dict]:
    """Replace the screened rows of `emb` that could be chosen by their float32 embeddings (`exact(rows)`), raising
    the bound until the re-embedded rows' largest error is at most half of it. `screened`: bool (len(emb),), the rows
    holding bfloat16 screens. Returns the new matrix and what was done (for the manifest)."""
    emb, screened = emb.clone(), screened.clone()
    total, errors = 0, []
    while True:
        rows = (could_be_chosen(images, emb, groups, top_k, bound) & screened).nonzero().flatten()
        err = 0.0
        if len(rows):
            fp32 = exact(rows)
            err = float((fp32 - emb[rows]).norm(dim=1).max())
            emb[rows], screened[rows] = fp32, False
            total += len(rows)
        errors.append(round(err, 5))
        if err <= bound / 2:
            break
        bound *= 2
    return emb, {
        "precision": "bfloat16 screen, float32 where an entry could be chosen",
        "bound": bound,
        "largest_error_per_round": errors,
        "screened": int(screened.sum()) + total,
        "re_embedded_float32": total,
    }
