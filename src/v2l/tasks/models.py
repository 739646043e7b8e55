"""The models an in-context task needs: the LLM, the VL model and the codebook (defaults when not given)."""

from __future__ import annotations


def load_task_models(lm=None, vl=None, codebook=None, progress: bool = False):
    """(LanguageModel, VL model, Codebook): each given one is kept; the rest are the defaults (the cached or shipped
    codebook for this LLM and VL model)."""
    from ..backbones import LanguageModel, load_vl
    from ..codebooks import Codebook, find_codebook

    lm = lm or LanguageModel.load(progress=progress)
    vl = vl or load_vl()
    if not isinstance(codebook, Codebook):
        codebook = Codebook.load(codebook or find_codebook(lm.name, vl=vl), vl=vl)
    return lm, vl, codebook
