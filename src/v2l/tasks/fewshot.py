"""In-context classification by a frozen LLM (paper §3.3 and §4.2, Fig. 3, Table 1), fast.

Every prompt ends with the query's words and "output:"; the LLM's answer is then decided by one of three rules, all
computed from one scoring pass over the N candidate labels (each label's tokens plus the first token of its end,
e.g. "."), so they cost no further forward passes:

- `paper`: greedy generation; correct only if the generated tokens equal the class name's tokens (paper §4.2). The
  greedy path is read from the scoring pass: while it follows a label, the argmax at each position is known; the
  moment it leaves every label the answer cannot be a label, and after a complete label it is that label exactly when
  the next greedy token starts with a stop string (or is end-of-sequence). `paper_rule` applies the same rule to a
  real generation; `reference.py` checks that the two agree.
- `constrained`: greedy decoding restricted to the N labels (a trie; the official V2L code's rule).
- `rank`: the label with the highest log-probability (sum over its tokens and its end token).
- `calibrated` (a documented correction, not one of the paper's rules): `rank` after contextual calibration (Zhao et
  al., ICML 2021): subtract each label's log-probability after a content-free query ("N/A") in the same context.

Speed: prompts are token pieces; all prompts of a batch of work go into one prefix tree, and the KV cache of every
shared start (the instruction and first round of an episode, shared by six of its seven Table 1 cells, its longer
prompts growing from its shorter ones) is computed once (`LanguageModel.extend`). The candidates are scored as one
batch over a view of the prompt's cache.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..backbones.language_model import LanguageModel, Prefix
from .prompts import FewShotTemplate

RULES = ("paper", "constrained", "rank")
CORRECTIONS = ("calibrated",)


@dataclass
class Prompt:
    """One prompt to decide: its token pieces, the candidate class names, and an optional content-free twin."""

    key: object
    pieces: list[tuple[int, ...]]
    classes: list[str]
    content_free: list[tuple[int, ...]] | None = None


@dataclass
class Decision:
    """The decision rules' choices (class index, or None when the paper rule's answer is not a class name)."""

    choice: dict[str, int | None]
    logprob: list[float]  # per class: log-probability of label + end
    mean_logprob: list[float]  # per class: per token
    calibrated: list[float] | None = None
    greedy: list[int] = field(default_factory=list)  # the greedy tokens read from the scoring pass


class InContextClassifier:
    """Builds prompts from a template and decides them with a frozen LLM; see the module docstring."""

    def __init__(self, lm: LanguageModel, template: FewShotTemplate, calibrate: bool = True, batch_size: int = 64):
        template.check()
        self.lm, self.template, self.calibrate, self.batch_size = lm, template, calibrate, batch_size
        self._ids: dict[str, tuple[int, ...]] = {}
        self.eos = lm.eos_ids
        end = self.ids(template.label_end)
        self.end_token = end[0]
        if not any(lm.decode([self.end_token]).startswith(s) for s in template.stops):
            raise ValueError(
                f"The template's label_end {template.label_end!r} must start with one of its stops "
                f"{list(template.stops)}."
            )

    # ---- prompt pieces -----------------------------------------------------------------------------------------
    def ids(self, text: str) -> tuple[int, ...]:
        got = self._ids.get(text)
        if got is None:
            got = self._ids[text] = tuple(self.lm.encode(text))
        return got

    def label_ids(self, name: str) -> tuple[int, ...]:
        return self.ids(self.template.label_prefix + name)

    def candidates(self, classes: Sequence[str]) -> list[list[int]]:
        return [list(self.label_ids(c)) + [self.end_token] for c in classes]

    def pieces(
        self, classes: list[str], samples: list[tuple[list[str], str]], query: list[str] | str, induction: bool = True
    ) -> list[tuple[int, ...]]:
        start = [self.lm.start_ids] if self.lm.start_ids else []  # e.g. Gemma's <bos>, as a whole prompt would have
        return start + [self.ids(text) for _, text in self.template.pieces(classes, samples, query, induction)]

    def prompt(
        self, key, classes: list[str], samples: list[tuple[list[str], str]], query: list[str], induction: bool = True
    ) -> Prompt:
        p = self.pieces(classes, samples, query, induction)
        cf = self.pieces(classes, samples, self.template.content_free, induction) if self.calibrate else None
        return Prompt(key, p, list(classes), cf)

    # ---- running -----------------------------------------------------------------------------------------------
    def decide(self, prompts: Sequence[Prompt], progress: Callable[[int], None] | None = None) -> dict:
        """{prompt.key: Decision} for all prompts, sharing the KV cache of every common start."""
        leaves: list[tuple[object, list[tuple[int, ...]]]] = []
        for i, p in enumerate(prompts):
            total = sum(len(x) for x in p.pieces) + max(len(c) for c in self.candidates(p.classes))
            self.lm.check_context(total, "prompt")
            leaves.append(((i, "query"), p.pieces))
            if p.content_free is not None:
                leaves.append(((i, "cf"), p.content_free))
        scored: dict = {}
        self._walk(None, leaves, scored, prompts, progress)
        out = {}
        for i, p in enumerate(prompts):
            d = scored[(i, "query")]
            if p.content_free is not None:
                cf = scored[(i, "cf")]
                d.calibrated = [a - b for a, b in zip(d.logprob, cf.logprob, strict=True)]
                d.choice["calibrated"] = _argmax(d.calibrated)
            out[p.key] = d
        return out

    def _walk(self, prefix: Prefix | None, items, scored: dict, prompts, progress) -> None:
        groups: dict[tuple[int, ...], list] = defaultdict(list)
        for key, rest in items:
            if not rest:
                scored[key] = self._decide_leaf(prefix, prompts[key[0]].classes)
                if progress is not None and key[1] == "query":
                    progress(1)
            else:
                groups[rest[0]].append((key, rest))
        for group in groups.values():
            n = 1  # extend over the longest run of pieces the whole group shares
            while all(len(r) > n for _, r in group) and all(r[n] == group[0][1][n] for _, r in group):
                n += 1
            ext = [t for piece in group[0][1][:n] for t in piece]
            child = self.lm.extend(prefix, ext)
            self._walk(child, [(k, r[n:]) for k, r in group], scored, prompts, progress)

    def _decide_leaf(self, prefix: Prefix, classes: list[str]) -> Decision:
        cands = self.candidates(classes)
        scored = self.lm.score_tokens(prefix.ids, cands, prefix=prefix, batch_size=self.batch_size)
        logp = [float(s.logprobs.sum()) for s in scored]
        mean = [float(s.logprobs.mean()) for s in scored]
        paper, greedy = self._greedy(cands, [s.greedy for s in scored])
        choice = {
            "paper": paper,
            "constrained": _trie_walk(cands, [s.logprobs.tolist() for s in scored]),
            "rank": _argmax(logp),
        }
        return Decision(choice, logp, mean, None, greedy)

    def _greedy(self, cands: list[list[int]], greedy: list[list[int]]) -> tuple[int | None, list[int]]:
        """The paper rule on the greedy path read from the scoring pass (see the module docstring)."""
        alive, depth, path = list(range(len(cands))), 0, []
        while True:
            g = greedy[alive[0]][depth]
            done = [c for c in alive if len(cands[c]) - 1 == depth]  # the label is complete: its end comes next
            if done and self.ends_answer(g):
                return done[0], path
            path.append(g)
            alive = [c for c in alive if depth < len(cands[c]) - 1 and cands[c][depth] == g]
            if not alive:
                return None, path
            depth += 1

    def ends_answer(self, token: int) -> bool:
        return token in self.eos or any(self.lm.decode([token]).startswith(s) for s in self.template.stops)

    def paper_rule(self, generated: Sequence[int], classes: Sequence[str]) -> int | None:
        """The paper's rule on a real greedy generation: the tokens before the first token that starts with a stop
        (or end-of-sequence) must equal one class name's tokens, and that token must come."""
        answer = []
        for t in generated:
            if self.ends_answer(t):
                break
            answer.append(t)
        else:
            return None  # no end: the answer ran on (or was cut by the token budget)
        for c, name in enumerate(classes):
            if tuple(answer) == self.label_ids(name):
                return c
        return None


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def _trie_walk(cands: list[list[int]], logprobs: list[list[float]]) -> int:
    """Greedy decoding constrained to the candidates, read from their per-token log-probabilities: at each depth the
    best next token among the live candidates (ties: the lowest id, as argmax picks)."""
    alive, depth = list(range(len(cands))), 0
    while True:
        best = max(
            {cands[c][depth] for c in alive},
            key=lambda t: (next(logprobs[c][depth] for c in alive if cands[c][depth] == t), -t),
        )
        alive = [c for c in alive if cands[c][depth] == best]
        depth += 1
        for c in alive:
            if len(cands[c]) == depth:
                return c
