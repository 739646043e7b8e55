"""One module per stage; `STAGES` maps each name to its function (data -> prompts -> metric), run in order."""

from __future__ import annotations

from collections.abc import Callable

from ..context import BenchContext
from .captioning import stage_captioning
from .comparison import stage_comparison
from .denoising import stage_denoising
from .fewshot import stage_fewshot
from .reconstruction import stage_reconstruction
from .semantic import stage_semantic
from .tokenizers import stage_tokenizers
from .vocabulary import stage_vocabulary
from .vqa import stage_vqa

STAGES: dict[str, Callable[[BenchContext], dict]] = {
    "reconstruction": stage_reconstruction,
    "semantic": stage_semantic,
    "fewshot": stage_fewshot,
    "denoising": stage_denoising,
    "vocabulary": stage_vocabulary,
    "captioning": stage_captioning,
    "vqa": stage_vqa,
    "tokenizers": stage_tokenizers,
    "comparison": stage_comparison,
}
