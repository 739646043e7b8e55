"""`v2l plan`: what a suite of the paper's jobs costs before starting it (FLOPs, peak memory, time per GPU and here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .app import JsonOpt, app


@app.command()
def plan(
    llm: Annotated[
        str, typer.Option("--llm", help="LLM preset (llama2-7b, llama2-70b, smollm2-135m, ...) or a model folder.")
    ] = "llama2-7b",
    vl: Annotated[str, typer.Option("--vl", help="VL model: clip-vit-l14 (= hf-clip) or conse.")] = "clip-vit-l14",
    suite: Annotated[str, typer.Option("--suite", help="Job sizes: paper, or cpu (our runs' sizes).")] = "paper",
    dtype: Annotated[
        str, typer.Option("--dtype", help="Precision on the GPUs: bfloat16, float16 or float32 (the CPU: float32).")
    ] = "bfloat16",
    calibrate: Annotated[
        bool, typer.Option("--calibrate", help="Measure this CPU again (about a minute) instead of the cached one.")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the plan as JSON here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Estimate the FLOPs, peak memory and wall time of the codebook build, tokenizer training, the Table 1 grid, the
    Table 4 restorations and captioning, on H100, A100, V100 and this CPU (calibrated by measuring it)."""
    from ..errors import ConfigError
    from ..paths import check_output_file, write_json_atomic
    from ..plan import PLAN_SUITES, llm_spec, plan_table, vl_spec
    from ..plan import calibrate as measure
    from ..plan import plan as make_plan
    from ..plan.costs import DTYPE_BYTES

    if dtype not in DTYPE_BYTES:
        raise ConfigError(f"--dtype {dtype!r} is not one of {', '.join(DTYPE_BYTES)}.")
    PLAN_SUITES.get(suite)  # an unknown suite: one sentence naming the suites
    llm_spec(llm)  # unknown models: one sentence, before any measuring
    vl_spec(vl)
    if out is not None:
        check_output_file(out)
    say = (lambda m: None) if as_json else (lambda m: typer.echo(m, err=True))
    if calibrate:
        measure(force=True, say=say)
    result = make_plan(llm, vl, suite, dtype, say=say)
    if out is not None:
        write_json_atomic(out, result)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    p = result["llm"]
    typer.echo(f"{llm} ({p['params'] / 1e9:.2f} B parameters, vocabulary {p['vocab']:,}) with {vl}, suite {suite}:")
    typer.echo(plan_table(result))
    typer.echo(
        "GPU times: data-sheet peaks × efficiencies (matmul 45 % and bandwidth 70 %: assumed; training 4.3 %: one "
        "measured H200 run); CPU: calibrated here. ×N: devices the memory needs (device_map for the LLM, DDP for "
        "training)."
    )
