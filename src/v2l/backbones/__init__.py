"""The frozen models: the LLM whose vocabulary we speak, and the vision–language model that grounds it."""

from .constraints import TokenSetConstraint, Trie, TrieConstraint
from .language_model import DEFAULT_LLM, LLM_PRESETS, Generation, LanguageModel, Prefix, TokenScores
from .vision_language import DEFAULT_VL, HFCLIP, VL_MODELS, ConSE, VisionLanguageModel, load_vl
from .vocabulary import Vocabulary

__all__ = [
    "DEFAULT_LLM",
    "DEFAULT_VL",
    "HFCLIP",
    "LLM_PRESETS",
    "VL_MODELS",
    "ConSE",
    "Generation",
    "LanguageModel",
    "Prefix",
    "TokenScores",
    "TokenSetConstraint",
    "Trie",
    "TrieConstraint",
    "VisionLanguageModel",
    "Vocabulary",
    "load_vl",
]
