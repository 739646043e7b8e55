"""Constraints on generation: which token ids a row may produce next.

A constraint is asked, before every step, `allowed(generated) -> ids | None`: `None` lets the row choose freely, an
empty list ends the row, otherwise the row chooses the most likely of the given ids. Two are built in:

- `TrieConstraint`: the output must be one of a set of token sequences (the N class names of a few-shot episode, as in
  the official V2L code's constrained decoding). Sequences may share first tokens; a sequence that is a proper prefix
  of another can end only through an end-of-sequence id (`end_ids`), so give each sequence a terminator token if none
  of them should need one.
- `TokenSetConstraint`: exactly `length` tokens, each from a fixed set of ids (the denoising tasks predict `m` local
  tokens from the LLM vocabulary).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class Trie:
    """Token-id sequences as a prefix tree; `node(prefix)` walks it (None when the prefix leaves it)."""

    def __init__(self, sequences: Iterable[Sequence[int]]):
        self.root: dict = {}
        self.count = 0
        for seq in sequences:
            seq = [int(t) for t in seq]
            if not seq:
                raise ValueError("Trie: every sequence needs at least one token.")
            node = self.root
            for t in seq:
                node = node.setdefault(t, {})
            node[None] = True  # the end marker
            self.count += 1

    def node(self, prefix: Sequence[int]) -> dict | None:
        node = self.root
        for t in prefix:
            node = node.get(int(t))
            if node is None:
                return None
        return node

    @staticmethod
    def children(node: dict) -> list[int]:
        return sorted(k for k in node if k is not None)

    @staticmethod
    def is_end(node: dict) -> bool:
        return None in node

    def __contains__(self, seq: Sequence[int]) -> bool:
        node = self.node(seq)
        return node is not None and self.is_end(node)


class TrieConstraint:
    """Generate one of `sequences` exactly; at a complete sequence that others extend, `end_ids` may end the row."""

    def __init__(self, sequences: Iterable[Sequence[int]], end_ids: Iterable[int] = ()):
        self.trie = Trie(sequences)
        self.end_ids = sorted({int(t) for t in end_ids})

    def allowed(self, generated: Sequence[int]) -> list[int] | None:
        node = self.trie.node(generated)
        if node is None:
            return []  # cannot happen when only allowed ids were chosen; end the row rather than run wild
        kids = self.trie.children(node)
        if self.trie.is_end(node):
            return kids + self.end_ids if kids else []
        return kids


class TokenSetConstraint:
    """Exactly `length` tokens, each one of `ids`."""

    def __init__(self, ids: Iterable[int], length: int):
        self.ids = sorted({int(t) for t in ids})
        if not self.ids:
            raise ValueError("TokenSetConstraint: the set of allowed ids is empty.")
        if length < 1:
            raise ValueError(f"TokenSetConstraint: length {length} must be at least 1.")
        self.length = int(length)

    def allowed(self, generated: Sequence[int]) -> list[int] | None:
        return self.ids if len(generated) < self.length else []
