"""The frozen models: the LLM whose vocabulary we speak, and the vision–language model that grounds it."""

from .language_model import DEFAULT_LLM, LLM_PRESETS, LanguageModel
from .vision_language import DEFAULT_VL, HFCLIP, VL_MODELS, ConSE, VisionLanguageModel, load_vl
from .vocabulary import Vocabulary

__all__ = ["DEFAULT_LLM", "DEFAULT_VL", "HFCLIP", "LLM_PRESETS", "VL_MODELS", "ConSE", "LanguageModel",
           "VisionLanguageModel", "Vocabulary", "load_vl"]
