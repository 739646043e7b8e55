"""`v2l bench`: the paper's tables in miniature, resumable stage by stage (`v2l.eval.bench`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import DEFAULTS, AdapterOpt, DataRootOpt, DeviceOpt, DtypeOpt, JsonOpt, LLMOpt, app, setup_torch


@app.command()
def bench(
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Report folder (stages/, results.json, report.md); rerun the same command to resume."
        ),
    ],
    suite: Annotated[
        str, typer.Option(help="smoke (minutes), paper-mini (the committed report) or tables (hours).")
    ] = "smoke",
    tokenizer: Annotated[str, typer.Option(help="Tokenizer folder, hub id or `cpu` (the shipped checkpoint).")] = "cpu",
    llm: LLMOpt = DEFAULTS["llm"],
    adapter: AdapterOpt = None,
    codebook: Annotated[
        Path | None,
        typer.Option(
            help="A codebook folder whose global words the word-reading stages use (default: the tokenizer's); "
            "e.g. the SmolLM2 codebook with --llm gemma3-270m, or a variant of the build."
        ),
    ] = None,
    tokenizers: Annotated[
        list[str] | None,
        typer.Option(
            "--tokenizers",
            help="Another tokenizer to measure like the main one, LABEL=FOLDER (repeatable): the baselines "
            "(`v2l train --model ...`) and Table 6's variants; a missing folder is a row marked 'not built'.",
        ),
    ] = None,
    stage: Annotated[
        list[str] | None,
        typer.Option(
            "--stage",
            help="Run only this stage of the suite (repeatable); the others already done are kept in the report.",
        ),
    ] = None,
    data_root: DataRootOpt = None,
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Run the paper's tables in miniature and write a Markdown report beside the paper's numbers."""
    from ..errors import OutputPathError
    from ..eval.bench import SUITES, BenchContext, run_bench
    from ..paths import check_output_dir

    if suite not in SUITES:
        raise typer.BadParameter(f"{suite!r}: use one of {', '.join(SUITES)}.", param_hint="--suite")
    out = check_output_dir(out, "--out")
    if out.is_dir() and any(out.iterdir()) and not (out / "stages").is_dir():
        raise OutputPathError(
            f"--out {out} is a non-empty folder that is not a bench report: pass an empty or new "
            "folder (nothing in it was changed)."
        )
    others = {}
    for spec in tokenizers or []:
        label, sep, folder = spec.partition("=")
        if not sep or not label.strip() or not folder.strip():
            raise typer.BadParameter(
                f"{spec!r}: write LABEL=FOLDER, e.g. spae=runs/spae/final.", param_hint="--tokenizers"
            )
        if label.strip() in others:
            raise typer.BadParameter(
                f"{spec!r}: the label {label.strip()!r} is given twice; give each tokenizer its own label.",
                param_hint="--tokenizers",
            )
        others[label.strip()] = folder.strip()
    chosen = SUITES[suite]
    if stage:
        unknown = [s for s in stage if s not in chosen.stages]
        if unknown:
            raise typer.BadParameter(
                f"{', '.join(unknown)}: the {suite} suite's stages are {', '.join(chosen.stages)}.",
                param_hint="--stage",
            )
    setup_torch(device, dtype)
    if codebook is not None and not codebook.is_dir():
        raise typer.BadParameter(
            f"{codebook}: no such codebook folder; build one with `v2l codebook build`.", param_hint="--codebook"
        )
    if adapter:
        from ..backbones.adapters import check_adapter

        check_adapter(adapter)
    ctx = BenchContext(
        chosen,
        data_root=data_root,
        tokenizer_name=tokenizer,
        llm_name=llm,
        adapter=adapter,
        codebook_folder=None if codebook is None else str(codebook),
        others=others,
    )
    results = run_bench(suite, out, ctx, say=lambda m: typer.echo(m, err=True), only=stage)
    if as_json:
        import json

        typer.echo(
            json.dumps(
                {
                    "report": str(out / "report.md"),
                    "results": str(out / "results.json"),
                    "seconds_this_run": results["seconds_this_run"],
                }
            )
        )
        return
    typer.echo(f"report: {out / 'report.md'} ({results['seconds_this_run']:.0f} s this run)")
