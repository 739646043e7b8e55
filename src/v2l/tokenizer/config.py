"""The tokenizer's configuration (paper §3.2, appendix A) and its named presets (`paper`, `cpu`, `tiny`).

Every choice the paper leaves open is a field with a comment saying so, and is recorded in docs/decisions.md. A config
validates its fields when it is built: a misspelt choice (e.g. `cross_attention="afer"`) is an error, not a model that
silently trains without global tokens.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import ConfigError, check_choice, check_range
from ..registry import new_registry

CROSS_ATTENTION = ("after", "before", "none")
CODEBOOK_SOURCES = ("vl", "llm")  # and "mlm": LQAE's (the bidirectional LM's embeddings), --model lqae only
SEARCH_DTYPES = ("float32", "bfloat16")
# The tokenizer and the paper's baselines (v2l.baselines), trained and loaded the same way. Each baseline fixes the
# settings that make it what it is (checked on every config) and brings its own defaults (applied by `get_config`).
MODELS = ("v2l", "vqgan-llm", "lqae", "spae")
MODEL_FIXED = {
    "v2l": {},
    # VQ-GAN with the LLM's input embeddings as its frozen codebook: no VL embeddings, no projector, no global tokens.
    "vqgan-llm": {"codebook_source": "llm", "projector": False, "cross_attention": "none"},
    # LQAE: the frozen bidirectional LM's word embeddings as codebook, searched L2-normalised; the decoder reads the
    # LM's output over the (partly masked) tokens, not global tokens.
    "lqae": {"codebook_source": "mlm", "projector": False, "cross_attention": "none"},
    # SPAE: the LLM's input embeddings as its frozen codebook, a token pyramid, no global tokens.
    "spae": {"codebook_source": "llm", "projector": False, "cross_attention": "none"},
}
MODEL_DEFAULTS = {
    "vqgan-llm": {},
    # LQAE's published recipe (its repository's README): commitment 0.005, half of the tokens masked; its encoder
    # output is not normalised (only the search is).
    "lqae": {"beta": 0.005, "mask_ratio": 0.5, "normalize_encoder_output": False},
    # SPAE §4.1: β = 0.33 (α = 1 is `semantic_weight`'s default); its encoder output is not normalised.
    "spae": {"beta": 0.33, "normalize_encoder_output": False},
}


@dataclass
class TokenizerConfig:
    resolution: int = 64
    ch: int = 64
    ch_mult: tuple[int, ...] = (1, 2, 2)  # len(ch_mult) − 1 down-samplings: 64 → 16 (×4)
    num_res_blocks: int = 1
    embed_dim: int = 384  # the codebook's dimension (the VL text space); set from the codebook
    num_global: int = 21  # K_g (paper: 21 for restoration tasks, 5 for classification)
    # Cross-attention placement: the main text puts it after the decoder's self-attention, appendix A before.
    cross_attention: str = "after"  # "after" | "before" | "none"
    cross_attention_heads: int = 4  # the paper is silent; must divide the decoder's widest channel count
    # The official code replaces the feature map with the attention output; we add it (a residual), which keeps the
    # decoder usable when the global tokens say little. The paper is silent.
    cross_attention_residual: bool = True
    # The official code L2-normalises the encoder output per position; with unit-norm VL embeddings as codes this
    # puts encoder outputs on the codebook's scale. The paper is silent.
    normalize_encoder_output: bool = True
    beta: float = 0.3  # appendix A (the official code uses 0.33 on the codebook term instead)
    projector: bool = True  # P-LLM (Table 6 row 3); False = the VL text embeddings as they are (row 2)
    codebook_source: str = "vl"  # "vl": VL text embeddings of tokens; "llm": the LLM's raw input embeddings (row 1)
    search_chunk: int = 8192  # codes per matmul in the nearest-code search (memory bound)
    search_dtype: str = "float32"  # "bfloat16": ~2× faster search on CPUs with AVX512-BF16 (near-ties may differ)
    model: str = "v2l"  # "v2l" | "vqgan-llm" | "lqae": the paper's tokenizer or a baseline (v2l.baselines)
    mask_ratio: float = 0.5  # LQAE only: fraction of tokens replaced by [MASK] before the bidirectional LM (training)
    bidirectional_lm: str = "minilm"  # LQAE only: the frozen bidirectional LM (v2l.baselines.BIDIRECTIONAL_LMS)
    # SPAE only (SPAE §3.1, §4.1). pyramid: each layer's side; () = 1, 2, 4, … up to the latent side, then the
    # latent side again (the paper's k = [0, 1, 2, 3, 4, 4] at 16 × 16).
    pyramid: tuple[int, ...] = ()
    semantic_thresholds: tuple[float, ...] = (0.98, 0.95, 0.9, 0.85, 0.8)  # ρ_l of the first D′ layers (§4.1)
    semantic_weight: float = 1.0  # α (§4.1)
    # Positions per layer and image that the semantic loss draws (0 = all). The paper is silent; a softmax over the
    # whole vocabulary at all 341 positions of the first five layers of a batch of 32 is ~2 GB at 49k tokens.
    semantic_positions: int = 16

    def __post_init__(self):
        self.ch_mult = tuple(self.ch_mult)
        self.pyramid = tuple(self.pyramid)
        self.semantic_thresholds = tuple(self.semantic_thresholds)
        for name in (
            "resolution",
            "ch",
            "num_res_blocks",
            "embed_dim",
            "num_global",
            "search_chunk",
            "cross_attention_heads",
        ):
            check_range(name, getattr(self, name), low=1, owner="TokenizerConfig")
        if not self.ch_mult or any(not isinstance(m, int) or m < 1 for m in self.ch_mult):
            raise _error("ch_mult", self.ch_mult, "a non-empty tuple of positive integers")
        factor = 2 ** (len(self.ch_mult) - 1)
        if self.resolution % factor:
            raise _error("resolution", self.resolution, f"a multiple of {factor} (2 ** (len(ch_mult) − 1))")
        check_range("beta", self.beta, low=0.0, owner="TokenizerConfig")
        own = "TokenizerConfig"
        check_choice("cross_attention", self.cross_attention, CROSS_ATTENTION, owner=own, cli=True)
        sources = CODEBOOK_SOURCES + (("mlm",) if self.model == "lqae" else ())
        check_choice("codebook_source", self.codebook_source, sources, owner=own, cli=True)
        check_choice("search_dtype", self.search_dtype, SEARCH_DTYPES, owner=own)
        check_choice("model", self.model, MODELS, owner=own, cli=True)
        check_range("mask_ratio", self.mask_ratio, low=0.0, high=1.0, owner=own)
        check_range("semantic_weight", self.semantic_weight, low=0.0, owner=own)
        check_range("semantic_positions", self.semantic_positions, low=0, owner=own)
        if any(not 0.0 <= r <= 1.0 for r in self.semantic_thresholds):
            raise _error("semantic_thresholds", self.semantic_thresholds, "numbers in [0, 1]")
        for name, want in MODEL_FIXED[self.model].items():
            if getattr(self, name) != want:
                raise ConfigError(
                    f"TokenizerConfig.{name} {getattr(self, name)!r} contradicts model "
                    f"{self.model!r}, which needs {want!r}: build it with get_config(preset, "
                    f"model={self.model!r})."
                )
        widest = self.ch * self.ch_mult[-1]
        if self.cross_attention != "none" and widest % self.cross_attention_heads:
            raise ConfigError(
                f"TokenizerConfig.ch {self.ch!r} gives the decoder {widest} channels (ch × "
                f"ch_mult[-1]), which its {self.cross_attention_heads} cross-attention heads do not "
                f"divide: use a ch (`v2l train --ch`) that makes ch × {self.ch_mult[-1]} a multiple "
                f"of {self.cross_attention_heads}."
            )

    @property
    def latent_size(self) -> int:
        return self.resolution // 2 ** (len(self.ch_mult) - 1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TokenizerConfig:
        d = dict(d)
        d["ch_mult"] = tuple(d["ch_mult"])
        for key in ("pyramid", "semantic_thresholds"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}})


def _error(name, value, want) -> ConfigError:
    return ConfigError(f"TokenizerConfig.{name} {value!r} is invalid: use {want}.")


TOKENIZER_PRESETS = new_registry("tokenizer-presets", "tokenizer preset", "--preset")
# 128×128, ×8 down-sampling, channels 128·[1,2,2,4], 16×16 local tokens, K_g = 21 (paper appendix A).
TOKENIZER_PRESETS.add(
    "paper",
    TokenizerConfig(resolution=128, ch=128, ch_mult=(1, 2, 2, 4), num_res_blocks=2, num_global=21),
    "the paper's 128×128 model (appendix A)",
)
# 64×64 Tiny-ImageNet, ×4 down-sampling (still 16×16 = 256 local tokens), narrower: trains on 2 CPU cores.
# The 49,152-code search dominates a CPU step, hence bf16 search (measured agreement in benchmarks/results).
TOKENIZER_PRESETS.add(
    "cpu",
    TokenizerConfig(resolution=64, ch=32, ch_mult=(1, 2, 4), num_res_blocks=1, num_global=21, search_dtype="bfloat16"),
    "64×64, 16×16 local tokens: trains on a laptop CPU (the shipped checkpoint)",
)
# For tests: seconds on a CPU.
TOKENIZER_PRESETS.add(
    "tiny",
    TokenizerConfig(resolution=16, ch=16, ch_mult=(1, 2), num_res_blocks=1, num_global=3),
    "16×16, for tests (seconds on a CPU)",
)


def get_config(preset: str | TokenizerConfig, model: str | None = None, **overrides) -> TokenizerConfig:
    """A preset by name (or a config) with `overrides` applied; both are validated. `model` picks a baseline: its
    fixed settings and defaults come first, then `overrides` (an override that contradicts the model is an error)."""
    base = preset if isinstance(preset, TokenizerConfig) else TOKENIZER_PRESETS.get(preset)
    if model is not None:
        check_choice("model", model, MODELS, owner="TokenizerConfig", cli=True)
        base = dataclasses.replace(base, **{"model": model, **MODEL_DEFAULTS.get(model, {}), **MODEL_FIXED[model]})
    return dataclasses.replace(base, **overrides)
