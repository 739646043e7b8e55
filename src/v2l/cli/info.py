"""`v2l info` (resolved models, vocabulary sizes, cache and data roots; `--list`: every registry) and
`v2l version`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .. import __version__
from ..errors import V2LError
from .app import DEFAULTS, DataRootOpt, DeviceOpt, DtypeOpt, JsonOpt, LLMOpt, VLOpt, app, setup_torch


@app.command()
def info(
    llm: LLMOpt = DEFAULTS["llm"],
    vl: VLOpt = DEFAULTS["vl"],
    data_root: DataRootOpt = None,
    load: Annotated[bool, typer.Option(help="Load the models to report their vocabulary and sizes.")] = True,
    list_all: Annotated[
        bool,
        typer.Option("--list", help="List every registry (presets, models, template sets, losses, searches) and exit."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Print the resolved models, vocabulary sizes, cache and data roots."""
    if list_all:
        _print_registries(as_json)
        return
    import torch

    from ..backbones import LanguageModel, load_vl
    from ..paths import cache_root
    from ..paths import data_root as resolve_data_root

    report: dict = {
        "v2l": __version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cache_root": str(cache_root()),
    }
    try:
        root = resolve_data_root(data_root)
        report["data_root"] = str(root)
        report["data_sets"] = sorted(p.name for p in root.iterdir() if p.is_dir())
    except V2LError as e:
        report["data_root"] = f"(none: {e})"
    if load:
        setup_torch(device, dtype)
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


def _print_registries(as_json: bool) -> None:
    from ..registry import all_registries

    regs = all_registries()
    if as_json:
        typer.echo(json.dumps({name: {e.name: e.help for e in reg.entries()} for name, reg in regs.items()}, indent=2))
        return
    for name, reg in regs.items():
        typer.echo(f"{name} ({reg.option or 'Python only'}):")
        width = max(len(e.name) for e in reg.entries())
        for e in reg.entries():
            typer.echo(f"  {e.name:<{width}}  {e.help}")


@app.command()
def version(as_json: JsonOpt = False) -> None:
    """Print the v2l version."""
    typer.echo(json.dumps({"version": __version__}) if as_json else __version__)
