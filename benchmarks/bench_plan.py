"""The cost model's report (`v2l plan`): the paper's jobs with LLaMA-2 7B, 13B and 70B and CLIP ViT-L/14 on H100, A100,
V100 and this CPU; how cost grows with the LLM's size and vocabulary; and measured points against predicted ones.

    python benchmarks/bench_plan.py

Calibrates this CPU afresh (run it on a quiet machine), checks the prediction on runs of other shapes than the
calibration's, compares two recorded whole jobs (the default codebook build on this CPU, the shipped checkpoint's
pre-training on an H200), and writes benchmarks/results/plan.json and docs/plan.md (the tables).
"""

from __future__ import annotations

import json
from dataclasses import asdict

from common import REPO, RESULTS, update_results
from v2l.backbones import LanguageModel
from v2l.plan import (
    calibrate,
    codebook_job,
    count_train_step,
    cpu_hardware,
    llm_spec,
    plan,
    plan_table,
    table1_job,
    training_job,
    vl_spec,
)
from v2l.plan.check import CPU_ERROR, check_llm, check_training
from v2l.plan.costs import TokenStats
from v2l.plan.specs import OTHER_GPUS


def recorded_jobs(cal: dict, stats: TokenStats) -> list[dict]:
    """Whole jobs measured earlier (their result files), against the model's prediction for them."""
    rows = []
    cpu = cpu_hardware(cal)
    book = json.loads((RESULTS / "codebook.json").read_text())["full_build"]
    job = codebook_job(llm_spec("smollm2-135m"), vl_spec("conse"), stats, 3, book["counts"]["filter_images"], "float32")
    predicted = job.seconds(cpu, "float32")
    rows.append(
        {
            "job": "the default codebook build (SmolLM2-135M, ConSE, 3 templates, 10,000 images) on this CPU",
            "source": "benchmarks/results/codebook.json (full_build, wall_s_total)",
            "measured_s": book["wall_s_total"],
            "predicted_s": round(predicted, 1),
            "ratio": round(predicted / book["wall_s_total"], 3),
        }
    )
    # resources/recipes/cpu.toml: 4,690 steps of 64 images at 64 px (ch 64) on one H200 in 429 s, bf16 autocast
    step = count_train_step("cpu", 49152, 384, ch=64)
    train = training_job(step, vl_spec("conse"), 4690 * 64, 1, 64, 64, "bfloat16").works[0]
    predicted = train.seconds(OTHER_GPUS["H200"], "bfloat16")
    rows.append(
        {
            "job": "the shipped checkpoint's pre-training (4,690 steps × 64 images, 64 px, ch 64) on one H200",
            "source": "src/v2l/resources/recipes/cpu.toml (its recorded wall time)",
            "measured_s": 429.0,
            "predicted_s": round(predicted, 1),
            "ratio": round(predicted / 429.0, 3),
            "note": "the calibration point of the GPUs' training efficiency (specs.GPU_EFFICIENCY['conv']): "
            "equal by construction, up to rounding",
        }
    )
    return rows


def vocabulary_rows(stats: TokenStats) -> list[dict]:
    """Cost against the LLM's size and vocabulary, at the paper's sizes with CLIP ViT-L/14."""
    clip = vl_spec("clip-vit-l14")
    rows = []
    for name in ("smollm2-135m", "gemma3-270m", "llama2-7b", "llama2-70b"):
        m = llm_spec(name)
        book = codebook_job(m, clip, stats, 80, 1_281_167, "bfloat16")
        step = count_train_step("paper", m.vocab, clip.dim)
        grid = table1_job(m, stats, 1000, "bfloat16")
        per_token = m.forward_flops(1, 256, 1)
        rows.append(
            {
                "llm": name,
                "params": m.params,
                "vocab": m.vocab,
                "codebook_texts": book.counts["texts"],
                "codebook_flops": book.flops,
                "train_gflops_per_image": step.flops / 1e9,
                "table1_flops": grid.flops,
                "head_share_per_token": 2 * m.hidden * m.vocab / per_token,
            }
        )
    return rows


def main() -> None:
    cal = calibrate(force=True, say=print)
    stats = TokenStats(**cal["tokens"])
    lm = LanguageModel.load(progress=False)
    checks = [
        check_llm(lm, cal),
        check_llm(lm, cal, prompts=16, length=96, new_tokens=24, batch=8),
        check_llm(lm, cal, prompts=4, length=512, new_tokens=8, batch=2),
        check_training(cal),
        check_training(cal, "cpu"),
    ]
    jobs = recorded_jobs(cal, stats)
    plans = {n: plan(n, "clip-vit-l14", "paper") for n in ("llama2-7b", "llama2-13b", "llama2-70b")}
    vocab = vocabulary_rows(stats)
    res = {
        "calibration": cal,
        "cpu_error": CPU_ERROR,
        "checks": checks,
        "recorded_jobs": jobs,
        "plans": plans,
        "vocabulary": vocab,
        "token_stats": asdict(stats),
    }
    update_results("plan", res)
    write_doc(res)
    print(json.dumps({"checks": checks, "recorded_jobs": jobs}, indent=1))


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def write_doc(res: dict) -> None:
    cpu = cpu_hardware(res["calibration"])
    lines = [
        "# What the paper's jobs cost (`v2l plan`)",
        "",
        "Generated by `python benchmarks/bench_plan.py` (numbers in `benchmarks/results/plan.json`); the model is",
        "`v2l.plan` (see docs/decisions.md). GPU times are data-sheet peaks × efficiencies (matmul 45 %,",
        "bandwidth 70 %: **assumed, no GPU was lent to measure them**) and, for tokenizer training, 4.3 % of",
        "the peak: the one GPU run measured (the shipped checkpoint's pre-training on an H200, below).",
        "CPU times are calibrated on",
        f"this machine ({cpu.name}): {cpu.flops['float32'] / 1e9:.0f} GFLOP/s in LLM matmuls,",
        f"{cpu.rate('conv', 'float32') / 1e9:.0f} GFLOP/s in tokenizer training, {cpu.bandwidth / 1e9:.2f} GB/s",
        "effective in decode steps. Token counts come from SmolLM2's tokenizer (no LLaMA-2 tokenizer offline):",
        f"{res['token_stats']['per_word']} tokens per global word, {res['token_stats']['per_label']} per class name,",
        f"{res['token_stats']['per_caption']} per caption. ×N: devices the memory needs.",
        "",
    ]
    for name, p in res["plans"].items():
        lines += [f"## {name} with CLIP ViT-L/14, the paper's sizes ({p['dtype']} on GPUs)", "", plan_table(p), ""]
    lines += [
        "## Cost against the LLM's size and vocabulary (the paper's sizes, CLIP ViT-L/14)",
        "",
        _row(
            [
                "LLM",
                "parameters",
                "vocabulary",
                "codebook texts",
                "codebook FLOPs",
                "training GFLOPs / image",
                "Table 1 FLOPs",
                "LM head share of a token's FLOPs",
            ]
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["vocabulary"]:
        lines.append(
            _row(
                [
                    r["llm"],
                    f"{r['params'] / 1e9:.2f} B",
                    f"{r['vocab']:,}",
                    f"{r['codebook_texts']:,.0f}",
                    f"{r['codebook_flops']:.2e}",
                    f"{r['train_gflops_per_image']:.0f}",
                    f"{r['table1_flops']:.2e}",
                    f"{100 * r['head_share_per_token']:.1f} %",
                ]
            )
        )
    lines += [
        "",
        f"## Measured against predicted (this CPU; stated error ±{100 * res['cpu_error']:.0f} %)",
        "",
        _row(["run", "measured", "predicted", "predicted / measured"]),
        "|---|---|---|---|",
    ]
    for r in res["checks"]:
        lines.append(_row([r["job"], f"{r['measured_s']:.2f} s", f"{r['predicted_s']:.2f} s", r["ratio"]]))
    lines += ["", "Whole jobs recorded earlier:", "", _row(["job", "measured", "predicted", "ratio", "source"])]
    lines.append("|---|---|---|---|---|")
    for r in res["recorded_jobs"]:
        lines.append(_row([r["job"], f"{r['measured_s']:.0f} s", f"{r['predicted_s']:.0f} s", r["ratio"], r["source"]]))
    (REPO / "docs" / "plan.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
