"""`plan(llm, vl, suite)`: every job of a suite with its FLOPs, peak memory and time on each piece of hardware."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..registry import new_registry
from .costs import captioning_job, codebook_job, table1_job, table4_job, training_job


@dataclass(frozen=True)
class PlanSuite:
    """The sizes of a suite's jobs."""

    templates: int  # codebook build: templates per entry
    filter_images: int  # codebook build: filtering images
    train_preset: str
    train_images: int
    epochs: float
    train_batch: int
    episodes: int  # Table 1: episodes per N and K_g
    table4_images: int
    caption_images: int
    where: str  # where the sizes come from


PLAN_SUITES = new_registry("plan-suites", "plan suite", "--suite")
PLAN_SUITES.add(
    "paper",
    PlanSuite(80, 1_281_167, "paper", 1_281_167, 100, 256, 1000, 5000, 5000, "the paper (§4, appendix A)"),
    "the paper's sizes: 80 templates, ImageNet-1K train for filtering and 100 epochs at 128 px, Table 4 and "
    "captioning on 5,000 images (1,000 Table 1 episodes per N and K_g, batch 256: ours, the paper gives neither)",
)
PLAN_SUITES.add(
    "cpu",
    PlanSuite(3, 10_000, "cpu", 16_000, 18.8, 64, 200, 64, 40, "our CPU runs (docs/results.md)"),
    "the sizes of our runs: 3 templates, 50 filtering images per Tiny-ImageNet class, the shipped recipe's "
    "pre-training (16,000 images, 18.8 epochs at 64 px), 200 episodes, 64 and 40 images",
)


def plan(
    llm: str = "llama2-7b",
    vl: str = "clip-vit-l14",
    suite: str = "paper",
    dtype: str = "bfloat16",
    hardware: dict | None = None,
    stats=None,
    say=lambda m: None,
) -> dict:
    """The suite's jobs for (llm, vl): FLOPs, peak memory, and seconds and GPUs needed on each hardware (default: the
    GPUs of `specs.GPUS` and this CPU, calibrated on first use)."""
    from .calibrate import calibrate, count_train_step, cpu_hardware
    from .costs import TokenStats
    from .specs import GPUS, llm_spec, vl_spec

    s = PLAN_SUITES[suite]
    lm, v = llm_spec(llm), vl_spec(vl)
    cal = calibrate(say=say)
    stats = stats or TokenStats(**cal["tokens"])  # measured with the default LLM's tokenizer (SmolLM2's)
    if hardware is None:
        hardware = {**GPUS, "CPU": cpu_hardware(cal)}
    say(f"v2l: counting one {s.train_preset} training step (FLOPs, activations)")
    step = count_train_step(s.train_preset, lm.vocab, v.dim)
    from ..tokenizer import get_config

    res = get_config(s.train_preset).resolution
    jobs = [
        codebook_job(lm, v, stats, s.templates, s.filter_images, dtype),
        training_job(step, v, s.train_images, s.epochs, s.train_batch, res, dtype),
        table1_job(lm, stats, s.episodes, dtype),
        table4_job(lm, s.table4_images, dtype),
        captioning_job(lm, stats, s.caption_images, dtype),
    ]
    rows = []
    for job in jobs:
        row = {"job": job.name, "setting": job.setting, "flops": job.flops, "memory_gb": job.memory / 1024**3}
        row["hardware"] = {
            name: {"seconds": job.seconds(hw, "float32" if name == "CPU" else dtype), "devices": job.fits(hw)}
            for name, hw in hardware.items()
        }
        rows.append(row)
    return {
        "llm": {"name": llm, "params": lm.params, "vocab": lm.vocab},
        "vl": {"name": vl, "image_gflops": v.image_flops / 1e9},
        "suite": suite,
        "dtype": dtype,
        "token_stats": asdict(stats),
        "hardware": {
            k: {"name": h.name, "memory_gb": h.memory_gb, "calibrated": h.calibrated} for k, h in hardware.items()
        },
        "jobs": rows,
    }


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def plan_table(result: dict) -> str:
    """The plan as a Markdown table (one row per job; time per hardware, ×N where N devices are needed)."""
    names = list(result["hardware"])
    head = ["job", "setting", "FLOPs", "peak memory", *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["jobs"]:
        cells = [r["job"], r["setting"], f"{r['flops']:.2e}", f"{r['memory_gb']:.1f} GB"]
        for n in names:
            h, hw = r["hardware"][n], result["hardware"][n]
            if n == "CPU":
                over = r["memory_gb"] > hw["memory_gb"]
                cells.append(_duration(h["seconds"]) + (f" (needs over {hw['memory_gb']:.0f} GB RAM)" if over else ""))
            else:
                cells.append(_duration(h["seconds"]) + (f" (×{h['devices']})" if h["devices"] > 1 else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
