"""The `v2l` command: a thin layer over the library (every verb has a Python equivalent). Built on Typer."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from . import __version__
from .errors import V2LError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="v2l: let a frozen LLM see, by translating images into words of its own vocabulary.")
codebook_app = typer.Typer(no_args_is_help=True, help="Build and inspect codebooks (vocabulary expansion + filtering).")
app.add_typer(codebook_app, name="codebook")

LLMOpt = Annotated[str, typer.Option("--llm", help="LLM preset (smollm2-135m, gemma3-270m), folder, .gguf or hub id.")]
VLOpt = Annotated[str, typer.Option("--vl", help="Vision-language model: conse, hf-clip, hf-clip:PATH_OR_HUB_ID.")]
DataRootOpt = Annotated[str | None, typer.Option("--data-root", envvar="V2L_DATA",
                                                 help="Folder holding the data sets (or set V2L_DATA).")]


def _setup_torch() -> None:
    import torch

    threads = os.environ.get("V2L_THREADS")
    if threads:
        torch.set_num_threads(int(threads))


@app.command()
def info(llm: LLMOpt = "smollm2-135m", vl: VLOpt = "conse", data_root: DataRootOpt = None,
         load: Annotated[bool, typer.Option(help="Load the models to report their vocabulary and sizes.")] = True,
         as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Print the resolved models, vocabulary sizes, cache and data roots."""
    import torch

    from .backbones import LanguageModel, load_vl
    from .paths import cache_root

    report: dict = {"v2l": __version__, "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cache_root": str(cache_root())}
    try:
        from .paths import data_root as _dr

        root = _dr(data_root)
        report["data_root"] = str(root)
        report["data_sets"] = sorted(p.name for p in root.iterdir() if p.is_dir())
    except V2LError as e:
        report["data_root"] = f"(none: {e})"
    if load:
        _setup_torch()
        report["llm"] = LanguageModel.load(llm).info()
        model = load_vl(vl)
        report["vl"] = {**model.fingerprint(), "image_size": model.image_size}
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        if isinstance(value, dict):
            typer.echo(f"{key}:")
            for k, v in value.items():
                typer.echo(f"  {k}: {v}")
        else:
            typer.echo(f"{key}: {value}")


@app.command()
def version() -> None:
    """Print the v2l version."""
    typer.echo(__version__)


def main() -> None:
    try:
        app()
    except V2LError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)

