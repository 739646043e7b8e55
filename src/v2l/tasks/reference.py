"""The reference code's way of deciding a prompt, kept to measure against: one prompt per call, batch 1, nothing
shared. Each rule runs on its own: a greedy generation (paper rule), a trie-constrained generation (the official
code's rule), and one scoring call per candidate label (ranking), each recomputing the whole prompt. The denoising
tasks' plain way is `reference_loop`: one restoration prompt per call."""

from __future__ import annotations

from collections.abc import Sequence

from ..backbones.constraints import TokenSetConstraint, TrieConstraint
from .fewshot import InContextClassifier, Prompt


def reference_decide(clf: InContextClassifier, prompt: Prompt) -> dict[str, int | None]:
    lm = clf.lm
    ids = [t for piece in prompt.pieces for t in piece]
    cands = clf.candidates(prompt.classes)
    longest = max(len(c) for c in cands)
    gen = lm.generate_ids([ids], max_new_tokens=longest, batch_size=1)[0]
    paper = clf.paper_rule(gen.ids, prompt.classes)
    con = lm.generate_ids([ids], max_new_tokens=longest, batch_size=1, constraint=TrieConstraint(cands))[0]
    constrained = next((c for c, cand in enumerate(cands) if cand == con.ids), None)
    logp = [float(lm.score(ids, [cand], batch_size=1)[0]) for cand in cands]
    rank = max(range(len(logp)), key=lambda i: (logp[i], -i))
    return {"paper": paper, "constrained": constrained, "rank": rank}


def reference_loop(lm, constraint_ids: Sequence[int]):
    """The plain way, to measure against: one prompt per call, batch 1, nothing shared (`Denoiser.restore`'s
    `generate=`, `v2l.tasks.denoise`)."""

    def generate(prompts, length: int) -> list[list[int]]:
        cons = TokenSetConstraint(constraint_ids, length)
        return [
            lm.generate_ids([[t for piece in p for t in piece]], max_new_tokens=length, constraint=cons, batch_size=1)[
                0
            ].ids
            for p in prompts
        ]

    return generate
