"""One module per stage; `STAGES` maps each name to its function (data -> prompts -> metric), run in order."""

from __future__ import annotations

from ....registry import new_registry
from ..suites import STAGE_DATA
from .captioning import stage_captioning
from .comparison import stage_comparison
from .denoising import stage_denoising
from .fewshot import stage_fewshot
from .reconstruction import stage_reconstruction
from .restoration import stage_restoration
from .seed import stage_seed
from .semantic import stage_semantic
from .tokenizers import stage_tokenizers
from .vocabulary import stage_vocabulary
from .vqa import stage_vqa

STAGES = new_registry("bench-stages", "bench stage")
_HELP = {
    "reconstruction": "Table 3: PSNR, SSIM, ST-LPIPS and FID of held-out reconstructions",
    "semantic": "Table 2: the global words' class-word hit, VL score, CLIP-R, nearest-support accuracy",
    "fewshot": "Table 1: the N-way K-shot grid under the three decision rules",
    "denoising": "Table 4: the five in-context restoration tasks beside LLM-free restorations",
    "vocabulary": "Table 5: subwords, + bigrams, + trigrams",
    "captioning": "§4.2: captions in context (BLEU-4, METEOR, ROUGE-L, CIDEr)",
    "vqa": "§4.2: questions derived from COCO annotations, beside the majority answer",
    "tokenizers": "the baselines and Table 6's variants, measured like the main tokenizer",
    "comparison": "Fig. 7's layout: every built tokenizer side by side",
    "restoration": "§4.3, Fig. 8: masked restoration by the LoRA-tuned LLM beside the frozen one and LLM-free fills",
    "seed": "SEED beside V2L: retrieval (its Table 1), captioning, classification, generation, reconstruction",
}
for _name, _stage in (
    ("reconstruction", stage_reconstruction),
    ("semantic", stage_semantic),
    ("fewshot", stage_fewshot),
    ("denoising", stage_denoising),
    ("vocabulary", stage_vocabulary),
    ("captioning", stage_captioning),
    ("vqa", stage_vqa),
    ("tokenizers", stage_tokenizers),
    ("comparison", stage_comparison),
    ("restoration", stage_restoration),
    ("seed", stage_seed),
):
    STAGES.add(_name, _stage, _HELP[_name])
assert set(STAGES) == set(STAGE_DATA)
