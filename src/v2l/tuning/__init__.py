"""Tuning the LLM to read and write V2L tokens (paper §4.3 "Masked Image Restoration", Fig. 8, appendix A): LoRA with
peft, trained with Accelerate on the tokenizer's tokens (global words as a text prefix, the loss on the local ids),
masked restoration by the tuned LLM (`Restorer`), and images drawn from words (`generate_images`).

    from v2l.tuning import TuneConfig, tune, Restorer
    tune(TuneConfig(epochs=1), "runs/lora")
"""

from ..backbones.adapters import DEFAULT_ADAPTER, adapter_folder, load_adapter
from .adapter import attach_lora, save_adapter
from .config import TuneConfig, lr_factor
from .data import IGNORE, collate, local_loss, prefix_ids, sequence, tuning_classes
from .recipe import TuneRecipe, list_tune_recipes, load_tune_recipe, ship_adapter
from .trainer import EpochBatches, tune

__all__ = [
    "DEFAULT_ADAPTER",
    "IGNORE",
    "EpochBatches",
    "TuneConfig",
    "TuneRecipe",
    "adapter_folder",
    "attach_lora",
    "collate",
    "list_tune_recipes",
    "load_adapter",
    "load_tune_recipe",
    "local_loss",
    "lr_factor",
    "prefix_ids",
    "save_adapter",
    "sequence",
    "ship_adapter",
    "tune",
    "tuning_classes",
]
