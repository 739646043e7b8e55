"""SEED in v2l's framework (Ge et al. 2023, "Planting a SEED of Vision in Large Language Model"): a causal,
semantic image tokenizer (`network`, trained by `train`), an LLM tuned to read and write its codes (`llm`,
`tune_llm`), recipes (`recipe`), the checkpoint facade (`model.SeedModel`) and its measures (`evaluate`)."""

from .config import SEED_PRESETS, SeedConfig, SeedLLMConfig, SeedTrainConfig
from .model import DEFAULT_SEED, SeedModel, is_seed_folder, seed_folder

__all__ = [
    "DEFAULT_SEED",
    "SEED_PRESETS",
    "SeedConfig",
    "SeedLLMConfig",
    "SeedModel",
    "SeedTrainConfig",
    "is_seed_folder",
    "seed_folder",
]
