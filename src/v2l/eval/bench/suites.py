"""What a suite runs and how much of it: `Suite`, the named suites, and the data each stage reads."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from ...registry import new_registry


@dataclass(frozen=True)
class Suite:
    """How much of each stage to run."""

    images: int  # reconstruction: held-out images
    episodes: int  # few-shot episodes per N (and the semantic stage's nearest-support episodes)
    kg: tuple[int, ...] = (5,)
    ways: tuple[int, ...] = (2,)
    cells: tuple[str, ...] = ("ind-1shot-r0",)
    stages: tuple[str, ...] = (
        "reconstruction",
        "semantic",
        "fewshot",
        "denoising",
        "vocabulary",
        "captioning",
        "vqa",
        "tokenizers",
        "comparison",
    )
    denoise_images: int = 2  # Table 4: held-out images per task
    denoise_tasks: tuple[str, ...] = ("inpaint", "outpaint", "deblur", "shift", "rotate")
    denoise_n: int = 16  # condition length (the paper's default; appendix B)
    denoise_m: int = 2  # tokens predicted at a time
    captions: int = 4  # coco-captions test images captioned
    questions: int = 4  # derived VQA questions answered
    table5_cells: tuple[str, ...] = ("ind-1shot-r0",)  # Table 5: 5-way, K_g = 5, per codebook variant
    table5_episodes: int = 4
    baseline_episodes: int = 4  # 5-way 1-shot episodes per other tokenizer
    baseline_denoise_tasks: tuple[str, ...] = ("inpaint", "deblur")  # per other tokenizer, on denoise_images
    pool_per_class: int | None = None  # few-shot pool: images per held-out class (None: all 60)


SUITES = new_registry("bench-suites", "bench suite", "--suite")
_SUITES = {
    # smoke: denoising with short windows (n 4, m 8): a prompt per window costs the LLM a full prefill on a CPU
    "smoke": Suite(
        images=8,
        episodes=4,
        denoise_images=1,
        denoise_tasks=("inpaint", "deblur"),
        denoise_n=4,
        denoise_m=8,
        captions=4,
        questions=4,
        pool_per_class=10,
    ),
    # paper-mini: sized for two hours on 2 CPU cores (per-stage costs in docs/results.md): denoising costs SmolLM2
    # ~17-80 s per image and task, a 256-token tokenizer's 5-way 1-shot episode ~20 s
    "paper-mini": Suite(
        images=200,
        episodes=100,
        kg=(5,),
        ways=(2, 5),
        cells=(
            "no-ind-1shot-r0",
            "ind-1shot-r0",
            "ind-3shot-r0",
            "ind-5shot-r0",
            "ind-1shot-r1",
            "ind-1shot-r3",
            "ind-1shot-r5",
        ),
        denoise_images=6,
        captions=100,
        questions=100,
        table5_episodes=100,
        baseline_episodes=40,
    ),
}
_HELP = {
    "smoke": "minutes: a handful of images and episodes per stage (CI runs it)",
    "paper-mini": "the committed report: every table in miniature, about two hours on 2 CPU cores",
}
for _name, _suite in _SUITES.items():
    SUITES.add(_name, _suite, _HELP[_name])


def suite_key(suite: Suite) -> str:
    """What a stage's numbers depend on in the suite (all its settings but the list of stages to run)."""
    from ...paths import text_sha256

    return text_sha256(
        json.dumps({k: v for k, v in dataclasses.asdict(suite).items() if k != "stages"}, sort_keys=True)
    )[:16]


STAGE_DATA = {
    "reconstruction": [("tiny-imagenet-200", "val")],
    "semantic": [("tiny-imagenet-200", "train"), ("tiny-imagenet-200", "val")],
    "fewshot": [("tiny-imagenet-200", "train"), ("tiny-imagenet-200", "val")],
    "denoising": [("tiny-imagenet-200", "val")],
    "vocabulary": [("tiny-imagenet-200", "train"), ("tiny-imagenet-200", "val")],
    "captioning": [("coco-captions", "train"), ("coco-captions", "test")],
    "vqa": [("coco-captions", "train"), ("coco-captions", "test")],
    "tokenizers": [("tiny-imagenet-200", "train"), ("tiny-imagenet-200", "val")],
    "comparison": [("tiny-imagenet-200", "val")],
}
