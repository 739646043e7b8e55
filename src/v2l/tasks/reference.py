"""The reference code's way of deciding a prompt, kept to measure against: one prompt per call, batch 1, nothing
shared. Each rule runs on its own: a greedy generation (paper rule), a trie-constrained generation (the official
code's rule), and one scoring call per candidate label (ranking), each recomputing the whole prompt."""

from __future__ import annotations

from ..backbones.constraints import TrieConstraint
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
