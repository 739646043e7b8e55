"""Tasks a frozen LLM performs on images turned into its words (paper §3.3, §4.2): in-context N-way K-shot
classification (Table 1, Table 5) today; captioning, VQA and denoising build on the same machinery.

`InContextClassifier` builds prompts from an editable template (`prompts.py`) and decides them by the paper's rule,
constrained decoding or likelihood ranking, sharing KV caches across prompts; `episodes.py` draws and saves
episodes; `grid.py` runs the Table 1 grid; `classify.py` classifies images against a folder of labelled examples.
"""

from .classify import ClassifyResult, classify_images, load_support
from .episodes import REPEATS, TABLE1_CELLS, Cell, Episode, load_episodes, sample_episodes, save_episodes
from .fewshot import CORRECTIONS, RULES, Decision, InContextClassifier, Prompt
from .grid import FeatureStore, heldout_features, run_grid, summarize, wilson
from .prompts import PROMPT_TEMPLATES, FewShotTemplate, load_template

__all__ = ["CORRECTIONS", "PROMPT_TEMPLATES", "REPEATS", "RULES", "TABLE1_CELLS", "Cell", "ClassifyResult",
           "Decision", "Episode", "FeatureStore", "FewShotTemplate", "InContextClassifier", "Prompt",
           "classify_images", "heldout_features", "load_episodes", "load_support", "load_template", "run_grid",
           "sample_episodes", "save_episodes", "summarize", "wilson"]
