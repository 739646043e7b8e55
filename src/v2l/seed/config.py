"""SEED's settings (SEED v1, Ge et al. 2023, §2 and §3.1) and their named presets (`paper`, `cpu`, `tiny`).

The paper's tokenizer: 32 causal queries over a frozen ViT's 16×16 features, a codebook of 8,192 codes of 32 dims
(β 0.25; projections 768 → 32 → 768), a transformer that reconstructs the causal embeddings from the codes, and a
Reverse Q-Former of 77 queries that regresses Stable Diffusion's conditioning. v2l's substitutions, named in every
output: the frozen image tower is the VL model's feature map (EfficientNet-Lite0's 7×7×1280 under `conse`, a CLIP
ViT's patch tokens under `hf-clip`); the generator is the V2L tokenizer's decoder, so the Reverse Q-Former has one
query per block of the 16 × 16 decoder input (2 × 2 local features each under `cpu`: 64 queries) and regresses the
tokenizer's decoder input (its quantized local features).
The `cpu` preset has 1,024 codes, not the paper's 8,192, so that the new LLM rows and the shipped files stay small.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..config import check_range
from ..errors import ConfigError
from ..registry import Registry, new_registry
from ..tuning.config import TuneConfig


@dataclass
class SeedConfig:
    vl: str = ""  # the frozen image tower (its feature map) and the contrastive text tower; "" = the tokenizer's
    tokenizer: str = "cpu"  # the V2L tokenizer whose decoder draws (the generator substitution)
    queries: int = 32  # the causal embeddings per image (paper: 32)
    width: int = 256  # the Q-Former's width (paper: 768, BLIP-2's)
    depth: int = 2  # Q-Former layers (paper: 12)
    heads: int = 4
    codebook_size: int = 8192  # the paper's; the `cpu` preset (the shipped seed-cpu) has 1,024
    code_dim: int = 32  # paper: 32
    beta: float = 0.25  # the commitment weight (paper: 0.25)
    recon_depth: int = 2  # the transformer that reconstructs the causal embeddings from codes
    reverse_depth: int = 2  # the Reverse Q-Former
    reverse_patch: int = 2  # each Reverse Q-Former query gives a patch × patch block of the decoder's input
    dead_after: int = 100  # a code unused for this many steps is restarted from an encoder output

    def __post_init__(self):
        own = "SeedConfig"
        for name, low, high in (
            ("queries", 1, 1024),
            ("width", 8, 8192),
            ("depth", 1, 64),
            ("heads", 1, 64),
            ("codebook_size", 2, 1 << 20),
            ("code_dim", 2, 4096),
            ("recon_depth", 1, 64),
            ("reverse_depth", 1, 64),
            ("reverse_patch", 1, 64),
            ("dead_after", 1, 1 << 30),
        ):
            check_range(name, getattr(self, name), low=low, high=high, owner=own, integer=True)
        check_range("beta", self.beta, low=0.0, high=10.0, owner=own)
        if self.width % self.heads:
            raise ConfigError(f"SeedConfig.width {self.width} must be a multiple of heads {self.heads}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class SeedTrainConfig:
    """Stages I and II (the tokenizer); stage III (the LLM) is `SeedLLMConfig`."""

    per_class: int = 12  # Tiny-ImageNet training images per class, of v2l's 160 training classes (0 = all)
    coco: bool = True  # also coco-captions train (images with their five captions)
    batch_size: int = 128
    lr: float = 1e-3
    qformer_steps: int = 500  # stage I: the contrastive Causal Q-Former
    codebook_steps: int = 700  # stage II: codebook, reconstruction, Reverse Q-Former
    warmup_steps: int = 50
    seed: int = 0
    log_every: int = 20
    checkpoint_every: int = 100

    def __post_init__(self):
        own = "SeedTrainConfig"
        check_range("per_class", self.per_class, low=0, owner=own, cli=True)
        check_range("batch_size", self.batch_size, low=2, high=65536, owner=own, cli=True)
        check_range("qformer_steps", self.qformer_steps, low=1, owner=own)
        check_range("codebook_steps", self.codebook_steps, low=1, owner=own)
        check_range("warmup_steps", self.warmup_steps, low=0, owner=own)
        check_range("seed", self.seed, low=0, owner=own, cli=True)
        check_range("log_every", self.log_every, low=1, owner=own)
        check_range("checkpoint_every", self.checkpoint_every, low=1, owner=own)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"SeedTrainConfig.lr {self.lr!r} is invalid: use a positive learning rate such as 1e-3.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class SeedLLMConfig(TuneConfig):
    """Stage III: LoRA on the LLM plus the new token rows (the codes, `<img>`, `</img>`), on image → text and
    text → image sequences (SEED §2.3). The LoRA fields and the schedule are `TuneConfig`'s; `tokenizer`, `classes`,
    `per_class`, `prefix_words` and `wnids` are unused here."""

    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    r: int = 8
    lr: float = 5e-4
    token_lr: float = 2e-3  # the new rows start at the mean embedding and have far to go
    epochs: int = 2
    batch_size: int = 16
    mixed_precision: str = "bf16"
    max_caption_tokens: int = 24  # captions are cut to this many LLM tokens
    warmup_epochs: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        check_range("token_lr", self.token_lr, low=0.0, owner="SeedLLMConfig")
        check_range("max_caption_tokens", self.max_caption_tokens, low=1, high=4096, owner="SeedLLMConfig")


SEED_PRESETS: Registry = new_registry("seed-presets", "SEED preset", "--preset")
SEED_PRESETS.add(
    "paper",
    SeedConfig(width=768, depth=12, heads=12, codebook_size=8192, recon_depth=4, reverse_depth=4),
    "SEED v1's sizes (8,192 codes of 32 dims, 12 layers)",
)
SEED_PRESETS.add(
    "cpu", SeedConfig(codebook_size=1024), "1,024 codes, a 2-layer Q-Former of width 256 (the shipped seed-cpu)"
)
SEED_PRESETS.add(
    "tiny",
    SeedConfig(queries=4, width=16, depth=1, heads=2, codebook_size=16, code_dim=4, recon_depth=1, reverse_depth=1),
    "for tests",
)
