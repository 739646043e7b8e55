"""Codebooks (paper §3.2, appendix A, Table 5): the local codebook (every LLM token embedded by the VL text
encoder), vocabulary expansion into bigrams and trigrams, and filtering into the global codebook.

`build_codebook(CodebookConfig(...))` writes a resumable artefact; `Codebook.load` reads one; `find_codebook` finds the
cached build or the shipped list for an (LLM, VL model) pair.
"""

from .artefact import (
    Codebook,
    check_manifest,
    ensure_local_embeddings,
    find_codebook,
    materialize_shipped,
    shipped_vocab,
)
from .build import build_codebook, variant_folder
from .config import KINDS, CodebookConfig
from .expansion import candidate_subwords, extend_greedy, extend_once, word_mask
from .filtering import filter_candidates
from .templates import CPU_TEMPLATES, IMAGENET_TEMPLATES, TEMPLATE_SETS, embed_entries, resolve_templates

__all__ = [
    "CPU_TEMPLATES",
    "IMAGENET_TEMPLATES",
    "KINDS",
    "TEMPLATE_SETS",
    "Codebook",
    "CodebookConfig",
    "build_codebook",
    "candidate_subwords",
    "check_manifest",
    "embed_entries",
    "ensure_local_embeddings",
    "extend_greedy",
    "extend_once",
    "filter_candidates",
    "find_codebook",
    "materialize_shipped",
    "resolve_templates",
    "shipped_vocab",
    "variant_folder",
    "word_mask",
]
