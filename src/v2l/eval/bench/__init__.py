"""`v2l bench`: the paper's tables in miniature from one command, resumable stage by stage, with a Markdown report
that puts the paper's numbers beside ours and says how the settings differ.

    v2l bench --suite smoke -o bench-smoke          # minutes: a handful of images and episodes
    v2l bench --suite paper-mini -o bench           # the committed report (see docs/results.md)

Each stage writes `stages/<name>.json` atomically when it finishes; a finished stage is not rerun (delete its file
to rerun it) unless it was measured with other suite settings (each records a hash of them: a smoke run into the same
folder never passes for paper-mini), and a stage killed midway leaves no stage result. The tokenizers stage also keeps
each finished row (`stages/rows/`), so a killed run, or a later `--tokenizers` that adds a newly trained baseline,
measures only the rows it lacks. `results.json` gathers the stages with the versions, the machine and the wall time of
each; `report.md` renders them.

Under `accelerate launch --num_processes P -m v2l bench ...` the work is sharded (Accelerate's `PartialState`): each
process reconstructs its share of the images and runs its share of the few-shot episodes, the per-image and
per-episode results are gathered (`gather_object`) in the one-process order, and the main process writes. Few-shot
decisions are per episode, so the sharded grid equals the one-process grid exactly; image metrics agree to float
rounding.

Stages: `reconstruction` (Table 3: PSNR, SSIM, ST-LPIPS and FID of the tokenizer's reconstructions of held-out
images), `semantic` (Table 2: the global words' class-word hit, VL score and CLIP-R, and the nearest-support
accuracies), `fewshot` (Table 1: the N-way K-shot grid under the three decision rules), `denoising` (Table 4: the five
tasks, beside restorations without an LLM), `vocabulary` (Table 5: subwords / + bigrams / + trigrams), `captioning`
and `vqa` (§4.2), `tokenizers` (the baselines and Table 6's local-codebook variants given with `--tokenizers`: each
measured like the main tokenizer; a folder that is not there is a row marked "not built"), `comparison` (Fig. 7's
layout: every built tokenizer's reconstructions and LLM restorations of the same images side by side), `restoration`
(§4.3: the LoRA-tuned LLM), `seed` (SEED beside V2L on the same images; only in the `seed` suite). Figures (PNG,
in `figures/`): reconstructions and denoising (Fig. 7), every method side by side, global words (Fig. 6), captions and
answers (Fig. 5), and the few-shot accuracy per cell.
"""

from __future__ import annotations

from .context import BenchContext, gather, process_state, shard
from .paper import PAPER_NOTE
from .report import render_report
from .runner import check_inputs, run_bench, stage_is_current
from .stages import STAGES
from .stages.comparison import COMPARISON_IMAGES
from .stages.reconstruction import heldout_eval_images, reconstruction
from .stages.tokenizers import row_file
from .suites import DEFAULT_STAGES, STAGE_DATA, SUITES, Suite, suite_key

__all__ = [
    "COMPARISON_IMAGES",
    "DEFAULT_STAGES",
    "PAPER_NOTE",
    "STAGES",
    "STAGE_DATA",
    "SUITES",
    "BenchContext",
    "Suite",
    "check_inputs",
    "gather",
    "heldout_eval_images",
    "process_state",
    "reconstruction",
    "render_report",
    "row_file",
    "run_bench",
    "shard",
    "stage_is_current",
    "suite_key",
]
