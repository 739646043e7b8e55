"""The jobs of the paper at any scale (issue: paper scale), as work — matmul FLOPs, decode steps that read the weights,
convolution training FLOPs — and its time and memory on a piece of hardware.

A job's time is the sum of its parts: matmul work at the hardware's matmul rate, training at its convolution rate,
and each decode step at the slower of its FLOPs and one read of the weights on a GPU (small-batch generation is bound
by memory bandwidth), or at their sum on this CPU (measured that way). Peak memory is the largest part's weights + KV
cache + activations (inference), or 16 bytes per trained parameter (float32 weights, gradients and Adam's two
moments) + the activations saved for the backward pass (training). The job sizes are the paper's (§4, appendix A) or
ours where the paper does not say; each job states them in `setting`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .specs import Hardware, Transformer, VisionLanguage

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass
class Work:
    kind: str  # "matmul", "conv" (training the tokenizer) or "decode"
    flops: float
    steps: float = 0  # decode steps, each reading `step_bytes` of weights
    step_bytes: float = 0
    what: str = ""

    def seconds(self, hw: Hardware, dtype: str) -> float:
        if self.kind == "decode":
            reads = self.steps * self.step_bytes / (hw.bandwidth * hw.efficiency["bandwidth"])
            if hw.decode_flops:  # measured on this CPU: the read and the rows' compute add up
                return reads + self.flops / hw.decode_flops
            return max(self.flops / hw.rate("matmul", dtype), reads)
        return self.flops / hw.rate(self.kind, dtype)


@dataclass
class Job:
    name: str
    setting: str  # the sizes, in words
    works: list[Work]
    memory: float  # peak bytes
    counts: dict = field(default_factory=dict)  # tokens, images, steps: what the estimate is made of

    @property
    def flops(self) -> float:
        return sum(w.flops for w in self.works)

    def seconds(self, hw: Hardware, dtype: str) -> float:
        return sum(w.seconds(hw, dtype) for w in self.works)

    def fits(self, hw: Hardware) -> int:
        """GPUs of this kind the job's memory needs (1 when it fits one); the LLM is spread with `device_map`."""
        return max(1, math.ceil(self.memory / (hw.memory_gb * 1024**3 * 0.9)))


@dataclass(frozen=True)
class TokenStats:
    """How many LLM tokens the prompts' pieces take (measured with the LLM's tokenizer: `calibrate`)."""

    per_word: float  # a global word (codebook entry) in a prompt
    per_label: float  # a class name
    per_caption: float  # a COCO caption
    word_fraction: float  # vocabulary tokens of kind "word" (the expansion's subword candidates)


def llm_inference(
    llm: Transformer, prompts: float, prompt_tokens: float, new_tokens: float, batch: int, nbytes: int, head: float
) -> tuple[list[Work], float]:
    """Prefill `prompts` prompts, then generate `new_tokens` each in batches: (works, peak bytes)."""
    prefill = Work("matmul", llm.forward_flops(prompts * prompt_tokens, prompt_tokens, prompts * head), what="prefill")
    steps = math.ceil(prompts / batch) * new_tokens
    ctx = prompt_tokens + new_tokens / 2
    decode = Work(
        "decode",
        llm.forward_flops(prompts * new_tokens, ctx, prompts * new_tokens),
        steps,
        llm.weight_bytes(nbytes),
        "decode",
    )
    seq = int(prompt_tokens + new_tokens)
    memory = (
        llm.weight_bytes(nbytes)
        + llm.kv_bytes(batch * seq, nbytes)
        + llm.activation_bytes(batch, int(prompt_tokens), nbytes, batch)
    )
    return [prefill, decode] if new_tokens else [prefill], memory


def codebook_job(
    llm: Transformer, vl: VisionLanguage, stats: TokenStats, templates: int, images: int, dtype: str, batch: int = 64
) -> Job:
    """Paper §3.2: embed every LLM token under the templates, extend the word tokens into bigrams and trigrams with the
    LLM (greedy, M = 1), embed the new entries, embed the filtering images, and rank every candidate for each image."""
    nb = DTYPE_BYTES[dtype]
    tt = vl.text_tokens
    words = stats.word_fraction * llm.vocab
    local = Work("matmul", vl.text.forward_flops(llm.vocab * templates * tt, tt), what="embed the vocabulary")
    gen, gen_mem = llm_inference(llm, words, 8, 2, batch, nb, 0)  # the prefix, then two greedy steps
    cands = Work("matmul", vl.text.forward_flops(2 * words * templates * tt, tt), what="embed bigrams, trigrams")
    image = Work("matmul", images * vl.image_flops, what="embed the filtering images")
    rank = Work("matmul", 2 * images * 3 * words * vl.dim, what="rank candidates per image")
    memory = max(gen_mem, vl.image_params * nb + vl.text.weight_bytes(nb) + 3 * words * vl.dim * 4)
    return Job(
        "codebook build",
        f"{llm.vocab:,} tokens × {templates} templates, {words:,.0f} word tokens extended twice, {images:,} images",
        [local, *gen, cands, image, rank],
        memory,
        {"texts": llm.vocab * templates + 2 * words * templates, "images": images, "llm_tokens": words * 10},
    )


@dataclass(frozen=True)
class TrainStep:
    """One tokenizer training step on one image, counted on the real network (`calibrate.count_train_step`)."""

    flops: float  # forward + backward: generator, perceptual network, discriminator
    saved_bytes: float  # activations kept for the backward pass
    params: int  # trained parameters (generator + discriminator)


def training_job(
    step: TrainStep, vl: VisionLanguage, images: int, epochs: int, batch: int, resolution: int, dtype: str
) -> Job:
    """Paper §4.1: the tokenizer trained for `epochs` over `images` (the VL image embeddings cached once)."""
    train = Work("conv", step.flops * images * epochs, what="train")
    embed = Work("matmul", images * vl.image_flops, what="embed images once")
    act = step.saved_bytes * batch * (0.5 if dtype != "float32" else 1.0)  # autocast keeps half-size activations
    return Job(
        "tokenizer training",
        f"{images:,} images × {epochs} epochs at {resolution} px, batch {batch}",
        [train, embed],
        16 * step.params + act,
        {"image_steps": images * epochs},
    )


def table1_job(
    llm: Transformer, stats: TokenStats, episodes: int, dtype: str, ways=(2, 5), kgs=(5, 21), batch: int = 16
) -> Job:
    """Table 1's grid: for each N and K_g, `episodes` episodes of the seven cells (§4.2), each prompt scored by
    the rank rule (every class name after the query). No prefix sharing counted: an upper bound on the work."""
    from ..tasks.episodes import TABLE1_CELLS

    nb = DTYPE_BYTES[dtype]
    prompts, tokens, longest = 0, 0.0, 0.0
    for n in ways:
        for kg in kgs:
            example = kg * stats.per_word + stats.per_label + 6  # "Input: words, output: label."
            for cell in TABLE1_CELLS:
                length = (8 + 4 * n if cell.induction else 0) + n * cell.shots * (1 + cell.repeats) * example
                length += kg * stats.per_word + 5 + n * (stats.per_label + 1)  # the query and the N candidates
                prompts += episodes
                tokens += episodes * length
                longest = max(longest, length)
    mean = tokens / prompts
    works, memory = llm_inference(llm, prompts, mean, 0, batch, nb, max(ways) * (stats.per_label + 1))
    return Job(
        "Table 1 grid",
        f"{episodes:,} episodes per N ∈ {list(ways)} and K_g ∈ {list(kgs)}, 7 cells, rank rule",
        works,
        max(memory, llm.weight_bytes(nb) + llm.kv_bytes(batch * longest, nb)),
        {"prompts": prompts, "prompt_tokens": tokens},
    )


def table4_job(llm: Transformer, images: int, dtype: str, batch: int = 32) -> Job:
    """Table 4's five restorations on `images` images (appendix B: 10 noisy copies, condition length 16, 2 tokens
    predicted per prompt, 16×16 local tokens)."""
    from ..tasks.denoise import TASKS, DenoiseConfig, prompt_steps

    cfg = DenoiseConfig()
    nb = DTYPE_BYTES[dtype]
    steps = sum(prompt_steps(t, cfg) for t in TASKS)
    prompts = images * steps
    length = 12 + cfg.copies * (cfg.n + cfg.m + 4) + cfg.n + 2
    works, memory = llm_inference(llm, prompts, length, cfg.m, batch, nb, 1)
    return Job(
        "Table 4 restorations",
        f"{images:,} images × {len(TASKS)} tasks ({steps} prompts per image of ~{length} tokens)",
        works,
        memory,
        {"prompts": prompts, "prompt_tokens": prompts * length, "new_tokens": prompts * cfg.m},
    )


def captioning_job(llm: Transformer, stats: TokenStats, images: int, dtype: str, shots: int = 10, kg: int = 21) -> Job:
    """Captioning in context (§3.3): `shots` captioned examples' words and captions, then the image's words."""
    nb = DTYPE_BYTES[dtype]
    length = 20 + shots * (kg * stats.per_word + stats.per_caption + 8) + kg * stats.per_word + 6
    works, memory = llm_inference(llm, images, length, stats.per_caption + 1, 16, nb, 1)
    return Job(
        "captioning",
        f"{images:,} images, {shots} in-context examples of {kg} words",
        works,
        memory,
        {"prompts": images, "prompt_tokens": images * length},
    )
