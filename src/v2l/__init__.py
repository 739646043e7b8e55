"""v2l: the V2L Tokenizer — images as words of a frozen LLM's own vocabulary (Zhu et al., CVPR 2024).

Importing `v2l` is cheap and has no side effects: the entry points below load their sub-packages on first use.

    from v2l import ImageTokenizer, image_words
    tok = ImageTokenizer.from_pretrained("cpu")

Sub-packages (each `__init__` names its public API): `data`, `backbones`, `codebooks`, `tokenizer`, `training`, `eval`,
`cli`; `tasks`, `baselines`, `tuning` and `demo` land beside them (docs/architecture.md).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

from .errors import V2LError  # noqa: E402  (cheap: no third-party imports)

# name -> module that defines it; resolved on first attribute access (PEP 562)
_LAZY = {
    "ImageTokenizer": "v2l.tokenizer",
    "TokenizedImage": "v2l.tokenizer",
    "TokenizerConfig": "v2l.tokenizer",
    "image_words": "v2l.tokenizer",
    "LanguageModel": "v2l.backbones",
    "load_vl": "v2l.backbones",
    "Codebook": "v2l.codebooks",
    "CodebookConfig": "v2l.codebooks",
    "build_codebook": "v2l.codebooks",
    "find_codebook": "v2l.codebooks",
    "TrainConfig": "v2l.training",
    "train": "v2l.training",
    "registry": "v2l.registry",
}

__all__ = ["V2LError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'v2l' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
