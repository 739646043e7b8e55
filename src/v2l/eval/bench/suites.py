"""What a suite runs and how much of it: `Suite`, the named suites, and the data each stage reads."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from ...registry import new_registry

DEFAULT_STAGES = (
    "reconstruction",
    "semantic",
    "fewshot",
    "denoising",
    "vocabulary",
    "captioning",
    "vqa",
    "tokenizers",
    "comparison",
    "restoration",
)


@dataclass(frozen=True)
class Suite:
    """How much of each stage to run."""

    images: int  # reconstruction: held-out images
    episodes: int  # few-shot episodes per N (and the semantic stage's nearest-support episodes)
    kg: tuple[int, ...] = (5,)
    ways: tuple[int, ...] = (2,)
    cells: tuple[str, ...] = ("ind-1shot-r0",)
    stages: tuple[str, ...] = DEFAULT_STAGES  # every stage but `seed` (its own suite)
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
    pool_per_class: int | None = None  # few-shot pool: images per held-out class (None: all 110)
    calibrate: bool = False  # Table 1: also the calibrated ranking rule (one content-free pass per prompt)
    denoise_seed: int | None = None  # Table 4's images: None, the first held-out ones; a seed, a seeded sample
    caption_pairs: tuple[str, ...] = ("random",)  # captioning and VQA: how the 10 in-context pairs are chosen
    question_only: bool = False  # VQA: also the question-only prompt (no image words), the language prior
    semantic_episodes: int | None = None  # Table 2's nearest-support episodes (None: `episodes`)
    semantic_imagenet: bool = False  # Table 2 also on imagenet-1k-sample (1,000 classes, one image each)
    restore_images: int = 2  # §4.3 masked restoration: held-out-class val images (a sample seeded by restore_seed)
    restore_tuned_images: int = 2  # … and val images of the adapter's 12 tuning classes
    restore_ratio: float = 0.3  # the fraction of local tokens masked (the paper: 30 %)
    restore_seed: int = 0
    restore_adapter: str = "v2l-cpu"  # the LoRA adapter of the tuned row ("" leaves that row out)
    restore_frozen: bool = True  # also the frozen LLM in context (the denoising machinery, n and m as above)
    generate_classes: int = 0  # images from words: the first N tuning classes' names drawn by the tuned LLM
    generate_samples: int = 4  # … this many samples each (top-k 100, temperature 1, seed restore_seed)
    seed_model: str = "seed-cpu"  # SEED beside V2L: the SEED checkpoint
    seed_retrieval: int = 8  # coco-captions test images of Table 1's retrieval (and the reconstructions' source)
    seed_captions: int = 2  # … of them captioned by SEED-LLM and by V2L in context
    seed_class_images: int = 4  # Tiny-ImageNet val images of the training classes, classified by generation
    seed_pool_per_class: int = 1  # V2L's in-context pool for that: train images per training class
    seed_prompts: int = 2  # class names drawn by SEED-LLM
    seed_recon_images: int = 2  # coco test images reconstructed through codes


_ALL_CELLS = (
    "no-ind-1shot-r0",
    "ind-1shot-r0",
    "ind-3shot-r0",
    "ind-5shot-r0",
    "ind-1shot-r1",
    "ind-1shot-r3",
    "ind-1shot-r5",
)  # Table 1's columns

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
        cells=_ALL_CELLS,
        denoise_images=6,
        captions=100,
        questions=100,
        table5_episodes=100,
        baseline_episodes=40,
    ),
    # tables: the sizes of docs/results.md's larger tables (Tables 1, 2 and 4, captioning, VQA), one stage at a
    # time (`--stage`): the whole grid is hours on 2 CPU cores (per-stage costs in docs/results.md)
    "tables": Suite(
        images=200,
        episodes=200,
        kg=(5, 21),
        ways=(2, 5),
        cells=_ALL_CELLS,
        stages=("semantic", "fewshot", "denoising", "captioning", "vqa"),
        calibrate=True,
        denoise_images=100,
        denoise_seed=0,
        captions=100,
        questions=100_000,
        caption_pairs=("random", "nearest"),
        question_only=True,
        semantic_episodes=1000,
        semantic_imagenet=True,
    ),
    # tuning: §4.3's masked restoration and images from words, at the sizes of docs/results.md (the paper-mini and
    # smoke suites run the stage on 2 + 2 images)
    "tuning": Suite(
        images=0,
        episodes=0,
        stages=("restoration",),
        restore_images=40,
        restore_tuned_images=36,
        generate_classes=8,
        generate_samples=4,
    ),
    # seed: SEED beside V2L on the same images (docs/results.md); not in the default stages of the other suites
    "seed": Suite(
        images=0,
        episodes=0,
        stages=("seed",),
        seed_retrieval=100,
        seed_captions=40,
        seed_class_images=80,
        seed_pool_per_class=2,
        seed_prompts=8,
        seed_recon_images=40,
    ),
}
_HELP = {
    "smoke": "minutes: a handful of images and episodes per stage (CI runs it)",
    "paper-mini": "the committed report: every table in miniature, about two hours on 2 CPU cores",
    "tuning": "§4.3's masked restoration by the LoRA-tuned LLM (36 + 40 images) and images from words",
    "seed": "SEED beside V2L: retrieval, captioning, classification, generation and reconstruction (100 coco images)",
    "tables": "docs/results.md's larger tables: 200-episode grids, 100 denoised images, every caption and question "
    "(hours; run one stage at a time with --stage)",
}
for _name, _suite in _SUITES.items():
    SUITES.add(_name, _suite, _HELP[_name])


def suite_key(suite: Suite) -> str:
    """What a stage's numbers depend on in the suite (all its settings but the list of stages to run)."""
    from ...paths import text_sha256

    later = {f.name: f.default for f in dataclasses.fields(Suite) if f.name in _ADDED_LATER}
    settings = {
        k: v for k, v in dataclasses.asdict(suite).items() if k != "stages" and not (k in later and v == later[k])
    }
    return text_sha256(json.dumps(settings, sort_keys=True))[:16]


# Settings added after reports were committed: they count in `suite_key` only when set, so a stage measured before
# they existed (which ran with their defaults) stays current.
_ADDED_LATER = (
    "calibrate",
    "denoise_seed",
    "caption_pairs",
    "question_only",
    "semantic_episodes",
    "semantic_imagenet",
    "restore_images",
    "restore_tuned_images",
    "restore_ratio",
    "restore_seed",
    "restore_adapter",
    "restore_frozen",
    "generate_classes",
    "generate_samples",
    "seed_model",
    "seed_retrieval",
    "seed_captions",
    "seed_class_images",
    "seed_pool_per_class",
    "seed_prompts",
    "seed_recon_images",
)


STAGE_DATA = {
    "reconstruction": [("tiny-imagenet-200", "val")],
    "semantic": [("tiny-imagenet-200", "train"), ("tiny-imagenet-200", "val")],
    "fewshot": [("tiny-imagenet-200", "train"), ("tiny-imagenet-200", "val")],
    "denoising": [("tiny-imagenet-200", "val")],
    "vocabulary": [("tiny-imagenet-200", "train"), ("tiny-imagenet-200", "val")],
    "captioning": [("coco-captions", "train"), ("coco-captions", "test")],
    "vqa": [("coco-captions", "train"), ("coco-captions", "test")],
    "tokenizers": [("tiny-imagenet-200", "train"), ("tiny-imagenet-200", "val")],
    "restoration": [("tiny-imagenet-200", "val")],
    "comparison": [("tiny-imagenet-200", "val")],
    "seed": [
        ("coco-captions", "train"),
        ("coco-captions", "test"),
        ("tiny-imagenet-200", "train"),
        ("tiny-imagenet-200", "val"),
    ],
}
