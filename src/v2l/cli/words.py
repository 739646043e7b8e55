"""`v2l words`: the LLM words each image translates to (paper Fig. 6)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .app import DEFAULTS, DeviceOpt, DtypeOpt, LLMOpt, VLOpt, app, setup_torch


@app.command()
def words(
    images: Annotated[list[Path], typer.Argument(help="Image files.", show_default=False)],
    top: Annotated[
        int, typer.Option("--top", min=1, help="Global tokens per image (Fig. 6 shows 4); at most the codebook's size.")
    ] = 4,
    llm: LLMOpt = DEFAULTS["llm"],
    vl: VLOpt = DEFAULTS["vl"],
    codebook: Annotated[
        Path | None, typer.Option(help="A codebook folder (default: the cached or shipped one for --llm/--vl).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    all_forms: Annotated[
        bool,
        typer.Option(
            "--all-forms", help="Also list entries whose embedding equals a listed one (e.g. 'Snake' after 'snake')."
        ),
    ] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Print each image's top global tokens: the LLM words it translates to (semantic interpretation)."""
    from ..paths import line_safe
    from ..tokenizer.words import image_words
    from .tokenizer import check_images

    setup_torch(device, dtype)
    check_images(images)  # fail on a bad file before loading any model
    rows = image_words(
        [str(p) for p in images], top=top, codebook=codebook, llm=llm, vl_name=vl, distinct=not all_forms
    )
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in rows], indent=2, ensure_ascii=False))
        return
    for r in rows:
        typer.echo(f"{line_safe(r.image)}: " + line_safe(", ".join(r.words)))
