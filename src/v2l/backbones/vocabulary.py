"""The LLM vocabulary as v2l sees it: every token id with its exact text, a readable display form and a kind.

Kinds decide what may become a global-codebook candidate (the paper, §3.2 and appendix A, leaves it to us):
- `special`: control tokens (`<|im_start|>`, `<bos>`, added special tokens). Never candidates.
- `byte`: byte-fallback tokens (`<0xNN>`) and byte-level pieces that are not valid UTF-8 on their own. Never candidates.
- `whitespace`: only spaces, tabs or newlines. Never candidates.
- `punctuation`: no letter or digit (e.g. `.`, `)),`). Not candidates by default: they carry no image content.
- `word`: everything else: the candidates.

Every id keeps its row in the local codebook whatever its kind (row i = token id i).
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from functools import cache

KINDS = ("word", "punctuation", "whitespace", "byte", "special")


@cache
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table (byte-level BPE shows byte b as a printable character)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def _readable(text: str) -> str:
    """Escape control characters so a token prints on one line (`\\n`, `\\t`, `\\x0b`)."""
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif unicodedata.category(ch) in ("Cc", "Cf") and ch != " ":
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def classify(text: str | None, special: bool) -> str:
    if special:
        return "special"
    if text is None:
        return "byte"
    if text.strip() == "":
        return "whitespace"
    if not any(ch.isalnum() for ch in text):
        return "punctuation"
    return "word"


@dataclass
class Vocabulary:
    """`texts[i]`: the exact text of token i (None for a lone byte); `display[i]`: readable; `kinds[i]`: see above."""

    texts: list[str | None]
    display: list[str]
    kinds: list[str]
    scheme: str  # "byte-level", "sentencepiece" or "other"

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for t in self.display:
            h.update(t.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        return h.hexdigest()

    def ids_of_kind(self, *kinds: str) -> list[int]:
        return [i for i, k in enumerate(self.kinds) if k in kinds]

    @classmethod
    def from_tokenizer(cls, tokenizer, size: int | None = None) -> Vocabulary:
        """Build from a transformers tokenizer; `size` (the embedding rows) may exceed the tokenizer's length."""
        n = max(size or 0, len(tokenizer))
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        pieces += [None] * (n - len(pieces))
        special = set(tokenizer.all_special_ids)
        for tid, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
            if getattr(added, "special", False):
                special.add(tid)
        sample = [p for p in pieces[:5000] if p]
        if sum(p.startswith("▁") for p in sample) > len(sample) // 20:
            scheme = "sentencepiece"
        elif sum(p.startswith("Ġ") for p in sample) > len(sample) // 20:
            scheme = "byte-level"
        else:
            scheme = "other"
        dec = _byte_decoder()
        texts, display, kinds = [], [], []
        for i, piece in enumerate(pieces):
            is_special = i in special
            if piece is None:  # an embedding row the tokenizer never produces
                text, shown, is_special = None, f"<unused{i}>", True
            elif is_special:
                text, shown = piece, piece
            elif scheme == "byte-level" and all(ch in dec for ch in piece):
                raw = bytes(dec[ch] for ch in piece)
                try:
                    text = raw.decode("utf-8")
                    shown = _readable(text)
                except UnicodeDecodeError:
                    text, shown = None, "".join(f"<0x{b:02X}>" for b in raw)
            elif scheme == "sentencepiece" and len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                text, shown = None, piece
            else:
                text = piece.replace("▁", " ") if scheme == "sentencepiece" else piece
                shown = _readable(text)
            texts.append(text)
            display.append(shown)
            kinds.append(classify(text, is_special))
        return cls(texts=texts, display=display, kinds=kinds, scheme=scheme)
