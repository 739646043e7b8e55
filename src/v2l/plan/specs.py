"""What sets the cost (issue: paper scale): the sizes of the LLMs and VL towers, and the hardware.

Model sizes come from transformers configs (`Transformer.from_config`), so any folder or hub config works; the presets
below carry the numbers of the published `config.json` files (tests check SmolLM2's against the real model, and every
preset's parameter count against the same class built by transformers on the meta device). FLOPs are the matmul
FLOPs torch's `FlopCounterMode` counts (2·M·N·K per matmul, attention's QKᵀ and AV over the whole context); norms,
activations and softmax are left out (under 1 %).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError


@dataclass(frozen=True)
class Transformer:
    """The sizes that set a transformer's cost."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool = True
    gated: bool = True  # LLaMA's and Gemma's gated MLP (3 matrices); CLIP's and BERT's have 2
    positions: int = 0  # the tokens of one input where fixed (a ViT's patches + class token)

    @property
    def layer_params(self) -> int:
        attn = 2 * self.hidden * self.heads * self.head_dim + 2 * self.hidden * self.kv_heads * self.head_dim
        return attn + (3 if self.gated else 2) * self.hidden * self.intermediate

    @property
    def params(self) -> int:
        """Weights, norms and biases left out; the embedding counted once when tied."""
        return self.layers * self.layer_params + self.vocab * self.hidden * (1 if self.tied else 2)

    def weight_bytes(self, nbytes: int) -> int:
        return self.params * nbytes

    def forward_flops(self, tokens: float, context: float, head_tokens: float = 0) -> float:
        """Matmul FLOPs of `tokens` new tokens, each attending to `context` tokens on average, with the LM head on
        `head_tokens` of them."""
        linear = 2 * tokens * self.layers * self.layer_params
        attention = 4 * tokens * context * self.layers * self.heads * self.head_dim
        return linear + attention + 2 * head_tokens * self.hidden * self.vocab

    def kv_bytes(self, tokens: float, nbytes: int) -> float:
        """The KV cache of `tokens` tokens."""
        return 2 * self.layers * self.kv_heads * self.head_dim * tokens * nbytes

    def activation_bytes(self, batch: int, seq: int, nbytes: int, head_tokens: int = 0) -> float:
        """Inference activations alive at once (one layer's input, attention and MLP), plus float32 logits."""
        per_token = 2 * self.hidden + self.heads * self.head_dim + 2 * self.intermediate
        scores = batch * self.heads * seq * seq * nbytes if seq <= 4096 else 0  # SDPA's math path; flash keeps none
        return batch * seq * per_token * nbytes + scores + head_tokens * self.vocab * 4

    @classmethod
    def from_config(cls, name: str, cfg) -> Transformer:
        """From a transformers config (a causal LM's, a CLIP tower's, a BERT's)."""
        cfg = getattr(cfg, "text_config", None) or cfg  # a multimodal config (Gemma 3): its text model
        heads = cfg.num_attention_heads
        kind = getattr(cfg, "model_type", "")
        gated = kind not in ("clip_text_model", "clip_vision_model", "bert", "gpt2", "siglip_vision_model")
        image, patch = getattr(cfg, "image_size", 0), getattr(cfg, "patch_size", 0)
        return cls(
            name=name,
            layers=cfg.num_hidden_layers,
            hidden=cfg.hidden_size,
            heads=heads,
            kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
            head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
            intermediate=cfg.intermediate_size,
            vocab=getattr(cfg, "vocab_size", 0) if not patch else 0,
            tied=bool(getattr(cfg, "tie_word_embeddings", True)),
            gated=gated,
            positions=(image // patch) ** 2 + 1 if patch else 0,
        )


# The published config.json numbers (hidden, intermediate, layers, heads, kv heads, head dim, vocabulary, tied).
_LLMS = {
    "smollm2-135m": ("llama", 576, 1536, 30, 9, 3, 64, 49152, True),
    "gemma3-270m": ("gemma3_text", 640, 2048, 18, 4, 1, 256, 262144, True),
    "llama2-7b": ("llama", 4096, 11008, 32, 32, 32, 128, 32000, False),
    "llama2-13b": ("llama", 5120, 13824, 40, 40, 40, 128, 32000, False),
    "llama2-70b": ("llama", 8192, 28672, 80, 64, 8, 128, 32000, False),
}


def llm_config(name: str):
    """The transformers config of an LLM preset (no weights needed), or of a local folder or cached hub id."""
    if name in _LLMS:
        kind, d, inter, layers, heads, kv, hd, vocab, tied = _LLMS[name]
        from transformers import AutoConfig

        return AutoConfig.for_model(
            kind,
            hidden_size=d,
            intermediate_size=inter,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            head_dim=hd,
            vocab_size=vocab,
            tie_word_embeddings=tied,
        )
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"--llm {name!r}: no config for it here; use a preset ({', '.join(_LLMS)}) or a model folder."
        ) from e


def llm_spec(name: str) -> Transformer:
    return Transformer.from_config(name, llm_config(name))


@dataclass(frozen=True)
class VisionLanguage:
    """A VL model's two towers: an image cost (FLOPs per image) and a text transformer."""

    name: str
    image_flops: float
    image_params: int
    text: Transformer
    dim: int
    text_tokens: int = 12  # a template with one entry ("a photo of a {}."), with its start and end tokens


def _clip(name, vision: tuple, text: tuple, dim: int) -> VisionLanguage:
    layers, d, heads, inter, image, patch = vision
    v = Transformer(f"{name}/vision", layers, d, heads, heads, d // heads, inter, 0, gated=False)
    tokens = (image // patch) ** 2 + 1
    tl, td, th, ti, vocab = text
    t = Transformer(f"{name}/text", tl, td, th, th, td // th, ti, vocab, gated=False)
    return VisionLanguage(name, v.forward_flops(tokens, tokens), v.params, t, dim)


# CLIP ViT-L/14 (openai/clip-vit-large-patch14): 24 layers of 1024 at 224 px / patch 14; text 12 layers of 768.
VLS = {
    "clip-vit-l14": _clip("clip-vit-l14", (24, 1024, 16, 4096, 224, 14), (12, 768, 12, 3072, 49408), 768),
    # ConSE: EfficientNet-Lite0 (0.77 GFLOPs per 224-px image: torch's FlopCounterMode on the real model, tested) and
    # all-MiniLM-L6-v2 (6 layers of 384).
    "conse": VisionLanguage(
        "conse", 0.77e9, 4_650_000, Transformer("minilm", 6, 384, 12, 12, 32, 1536, 30522, gated=False), 384
    ),
}


def vl_spec(name: str) -> VisionLanguage:
    base = name.split(":", 1)[0]
    if base in ("hf-clip", "clip-vit-l14") and (name in ("hf-clip", "clip-vit-l14") or "large-patch14" in name):
        return VLS["clip-vit-l14"]
    if base == "conse":
        return VLS["conse"]
    raise ConfigError(f"--vl {name!r}: the cost model knows {', '.join(VLS)} (and hf-clip, = clip-vit-l14).")


# The fraction of a GPU's peak each kind of work reaches. Matmul and bandwidth: assumed (no GPU was lent to measure
# them). Tokenizer training: measured once — the shipped checkpoint's pre-training (4,690 steps × 64 images at 64 px,
# ch 64, bf16 autocast) took 429 s on one H200, 4.3 % of its bf16 peak for the FLOPs counted on that network
# (benchmarks/bench_plan.py); convolutions this small keep a GPU far from its peak.
GPU_EFFICIENCY = {"matmul": 0.45, "conv": 0.043, "bandwidth": 0.70}


@dataclass(frozen=True)
class Hardware:
    """Peak FLOP/s per dtype, memory bandwidth, memory; `efficiency`: the fraction of peak reached per kind of work
    (measured on this CPU; assumed on GPUs, where nothing was measured)."""

    name: str
    memory_gb: float
    flops: dict
    bandwidth: float
    efficiency: dict = field(default_factory=lambda: dict(GPU_EFFICIENCY))
    calibrated: bool = False
    # A GPU overlaps a decode step's weight read with its compute (the step takes the slower); this CPU's measured
    # steps take the read plus the rows' compute at `decode_flops` FLOP/s (two calibration points: 1 and 8 rows).
    decode_flops: float | None = None

    def rate(self, kind: str, dtype: str) -> float:
        peak = self.flops.get(dtype) or self.flops.get("float16") or self.flops["float32"]
        return peak * self.efficiency[kind]


# Dense tensor-core peaks from the vendors' data sheets (SXM parts); V100 has no bfloat16 (float16 used instead).
GPUS = {
    "H100": Hardware("NVIDIA H100 SXM 80GB", 80, {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12}, 3.35e12),
    "A100": Hardware("NVIDIA A100 SXM 80GB", 80, {"bfloat16": 312e12, "float16": 312e12, "float32": 19.5e12}, 2.04e12),
    "V100": Hardware("NVIDIA V100 SXM2 32GB", 32, {"float16": 125e12, "float32": 15.7e12}, 0.90e12),
}
# Cards not in the default table, for measured points (the shipped checkpoint's pre-training ran on an H200).
OTHER_GPUS = {
    "H200": Hardware("NVIDIA H200 SXM 141GB", 141, {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12}, 4.8e12),
}
