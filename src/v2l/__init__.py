"""v2l: the V2L Tokenizer — images as words of a frozen LLM's own vocabulary (Zhu et al., CVPR 2024)."""

__version__ = "0.1.0"

from .errors import V2LError  # noqa: E402

__all__ = ["V2LError", "__version__"]
