"""Tasks a frozen LLM performs on images turned into its words (paper §3.3, §4.2): in-context N-way K-shot
classification (Table 1, Table 5), captioning and visual question answering (Fig. 5); denoising builds on the same
machinery.

`InContextClassifier` builds prompts from an editable template (`prompts.py`) and decides them by the paper's rule,
constrained decoding or likelihood ranking, sharing KV caches across prompts; `episodes.py` draws and saves
episodes; `grid.py` runs the Table 1 grid; `classify.py` classifies images against a folder of labelled examples.
`InContextGenerator` (`incontext.py`) generates answers to many prompts with shared starts computed once; on it,
`Captioner` (`captioning.py`) and `VisualQA` (`vqa.py`, questions derived from COCO annotations by `questions.py`)
draw their in-context samples from a pool (`pool.py`, `coco.py`).
"""

from .captioning import Captioner, CaptionResult, caption_images, evaluate_captions
from .classify import ClassifyResult, classify_images, load_support
from .coco import CocoImage, load_coco
from .episodes import REPEATS, TABLE1_CELLS, Cell, Episode, load_episodes, sample_episodes, save_episodes
from .fewshot import CORRECTIONS, RULES, Decision, InContextClassifier, Prompt
from .grid import FeatureStore, heldout_features, run_grid, summarize, wilson
from .incontext import CAPTION_PAPER, VQA_PAPER, GenerationTemplate, InContextGenerator, reference_generate
from .pool import PAIRS, WordVectors, choose_samples, word_vectors
from .prompts import PROMPT_TEMPLATES, FewShotTemplate, load_template
from .questions import QUESTION_TYPES, Question, derive_questions, normalize_answer
from .vqa import VisualQA, VQAResult, accuracy_by_type, answer_questions, majority_answers

__all__ = [
    "CAPTION_PAPER",
    "CORRECTIONS",
    "PAIRS",
    "PROMPT_TEMPLATES",
    "QUESTION_TYPES",
    "REPEATS",
    "RULES",
    "TABLE1_CELLS",
    "VQA_PAPER",
    "CaptionResult",
    "Captioner",
    "Cell",
    "ClassifyResult",
    "CocoImage",
    "Decision",
    "Episode",
    "FeatureStore",
    "FewShotTemplate",
    "GenerationTemplate",
    "WordVectors",
    "InContextClassifier",
    "InContextGenerator",
    "Prompt",
    "Question",
    "VQAResult",
    "VisualQA",
    "accuracy_by_type",
    "answer_questions",
    "caption_images",
    "choose_samples",
    "classify_images",
    "derive_questions",
    "evaluate_captions",
    "heldout_features",
    "word_vectors",
    "load_coco",
    "load_episodes",
    "load_support",
    "load_template",
    "majority_answers",
    "normalize_answer",
    "reference_generate",
    "run_grid",
    "sample_episodes",
    "save_episodes",
    "summarize",
    "wilson",
]
