"""The cost model against measured runs on this CPU: work of other shapes than the calibration's, predicted and timed.

- LLM inference: the real default LLM (SmolLM2-135M's weights) prefills and greedily continues a batch of prompts
  through `LanguageModel.generate_ids` (the engine the verbs use), against `costs.llm_inference`'s prediction.
- Tokenizer training: one step of the `paper` preset at 128 px (calibration: the `cpu` preset at 64 px, batch 8),
  against its FLOPs (counted) over the calibrated training rate.
"""

from __future__ import annotations

import time

import torch

from .calibrate import count_train_step, cpu_hardware, train_network, train_step_fn
from .costs import llm_inference
from .specs import llm_spec

CPU_ERROR = 0.5  # the stated error on this CPU: a prediction within ±50 % of the measured time


def check_llm(lm, cal: dict, prompts: int = 8, length: int = 192, new_tokens: int = 12, batch: int = 4) -> dict:
    """Time `prompts` prompts of `length` tokens continued by `new_tokens` greedy tokens, in batches of `batch`."""
    hw = cpu_hardware(cal)
    g = torch.Generator().manual_seed(0)
    words = lm.vocab.ids_of_kind("word")
    ids = [[words[int(i)] for i in torch.randint(0, len(words), (length,), generator=g)] for _ in range(prompts)]
    lm.generate_ids(ids[:1], max_new_tokens=2, batch_size=1, logprobs=False)  # warm-up
    seconds = float("inf")
    for _ in range(2):  # the better of two runs: a noisy machine only ever slows a run down
        t0 = time.perf_counter()
        out = lm.generate_ids(ids, max_new_tokens=new_tokens, batch_size=batch, logprobs=False)
        seconds = min(seconds, time.perf_counter() - t0)
    made = sum(len(o.ids) for o in out) / prompts  # a row may stop early at end-of-sequence
    works, _ = llm_inference(llm_spec("smollm2-135m"), prompts, length, made, batch, 4, 1)
    predicted = sum(w.seconds(hw, "float32") for w in works)
    return {
        "job": f"SmolLM2 generation: {prompts} prompts × {length} tokens + {made:.1f} new, batch {batch}",
        "measured_s": round(seconds, 3),
        "predicted_s": round(predicted, 3),
        "ratio": round(predicted / seconds, 3),
    }


def check_training(cal: dict, preset: str = "paper", vocab: int = 49152, dim: int = 384) -> dict:
    """Time one training step of `preset` on one image against its counted FLOPs over the calibrated rate."""
    hw = cpu_hardware(cal)
    step_cost = count_train_step(preset, vocab, dim)
    step, _ = train_step_fn(train_network(preset, vocab, dim), 1)
    step()  # warm-up
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    seconds = min(times)
    predicted = step_cost.flops / hw.rate("conv", "float32")
    return {
        "job": f"tokenizer training step: {preset} preset, 1 image, {vocab:,}-row local codebook",
        "measured_s": round(seconds, 3),
        "predicted_s": round(predicted, 3),
        "ratio": round(predicted / seconds, 3),
    }
