"""The `v2l` command: a thin layer over the library (every verb has a Python equivalent). Built on Typer."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .errors import V2LError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="v2l: let a frozen LLM see, by translating images into words of its own vocabulary.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect and export the data sets under the data root.")
app.add_typer(data_app, name="data")
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
def words(images: Annotated[list[Path], typer.Argument(help="Image files.", show_default=False)],
          top: Annotated[int, typer.Option("--top", min=1, help="Global tokens per image (Fig. 6 shows 4).")] = 4,
          llm: LLMOpt = "smollm2-135m", vl: VLOpt = "conse",
          codebook: Annotated[Path | None, typer.Option(help="A codebook folder (default: the cached or shipped "
                                                              "one for --llm/--vl).")] = None,
          as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
          all_forms: Annotated[bool, typer.Option("--all-forms", help="Also list entries whose embedding equals a "
                                                  "listed one (e.g. 'Snake' after 'snake').")] = False) -> None:
    """Print each image's top global tokens: the LLM words it translates to (semantic interpretation)."""
    from .images import load_image
    from .words import image_words

    _setup_torch()
    for p in images:  # fail on a bad file before loading any model
        load_image(p)
    rows = image_words([str(p) for p in images], top=top, codebook=codebook, llm=llm, vl_name=vl,
                       distinct=not all_forms)
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in rows], indent=2, ensure_ascii=False))
        return
    for r in rows:
        typer.echo(f"{r.image}: " + ", ".join(r.words))


@codebook_app.command("build")
def codebook_build(
    llm: LLMOpt = "smollm2-135m", vl: VLOpt = "conse",
    filter_data: Annotated[str, typer.Option(help="Data set under the data root, or a folder of images.")]
    = "tiny-imagenet-200",
    filter_split: Annotated[str, typer.Option(help="Split of --filter-data ('' for none).")] = "train",
    filter_classes: Annotated[str, typer.Option(help="train: v2l's 160 training classes only; all.")] = "train",
    filter_per_class: Annotated[int, typer.Option(min=0, help="Images per class (0 = all).")] = 50,
    filter_top_k: Annotated[int, typer.Option(min=1, help="Entries chosen per image.")] = 5,
    min_count: Annotated[int, typer.Option(min=1, help="Keep entries chosen at least this often.")] = 1,
    dedupe: Annotated[str, typer.Option(help="Keep candidates once per text, or once per text-encoder input "
                                             "(encoder: 'Snake' = 'snake' for an uncased encoder).")] = "text",
    max_ngram: Annotated[int, typer.Option(min=1, max=3, help="1 subwords, 2 + bigrams, 3 + trigrams.")] = 3,
    top_m: Annotated[int, typer.Option(min=1, help="Next tokens per entry (M).")] = 1,
    prefix: Annotated[str, typer.Option(help="Expansion prefix.")] = "a photo of",
    templates: Annotated[str, typer.Option(help="cpu (3), imagenet80, single, or N (first N of the 80).")] = "cpu",
    no_renormalize: Annotated[bool, typer.Option("--no-renormalize", help="Keep the raw template mean.")] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 256,
    chunk_size: Annotated[int, typer.Option(min=1, help="Items per resumable chunk.")] = 2048,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: the cache, keyed by settings).")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if the artefact exists.")] = False,
    variants: Annotated[bool, typer.Option(help="Also write Table 5's --max-ngram 1 .. N-1 variants from the same "
                                                "candidates (one extra filtering pass each).")] = False,
    data_root: DataRootOpt = None,
) -> None:
    """Build the local and global codebooks (expansion + filtering). Resumable: rerun after a kill to continue."""
    import time

    from .codebook import CodebookConfig, build_codebook, variant_folder

    _setup_torch()
    cfg = CodebookConfig(llm=llm, vl=vl, prefix=prefix, top_m=top_m, max_ngram=max_ngram, templates=templates,
                         renormalize_templates=not no_renormalize, filter_data=filter_data,
                         filter_split=filter_split or None, filter_classes=filter_classes,
                         filter_per_class=filter_per_class, filter_top_k=filter_top_k, min_count=min_count,
                         dedupe=dedupe,
                         chunk_size=chunk_size, batch_size=batch_size)
    t0 = time.perf_counter()
    folder = build_codebook(cfg, out=out, data_root=data_root, force=force, variants=variants)
    seconds = time.perf_counter() - t0
    folders = [folder] + ([variant_folder(cfg, n, out) for n in range(max_ngram - 1, 0, -1)] if variants else [])
    for f in folders:
        c = json.loads((f / "manifest.json").read_text())["counts"]
        typer.echo(f"codebook: {f}")
        typer.echo(f"local: {c['local']} tokens; candidates: {c['candidates']} {c['candidates_by_kind']}; "
                   f"global: {c['global']} {c['global_by_kind']} from {c['filter_images']} images")
    typer.echo(f"({seconds:.0f} s)")


@codebook_app.command("show")
def codebook_show(folder: Path, top: Annotated[int, typer.Option(help="Most chosen entries to list.")] = 20) -> None:
    """Print a codebook's manifest summary and its most often chosen global entries."""
    from .codebook import Codebook

    cb = Codebook.load(folder)
    typer.echo(json.dumps(cb.manifest["counts"], indent=2))
    for e in sorted(cb.entries, key=lambda e: -e["count"])[:top]:
        typer.echo(f"{e['count']:6d}  {e['kind']:8s}  {e['text']}")


@data_app.command("export")
def data_export(name: Annotated[str, typer.Argument(help="Data set under the data root, e.g. imagenet-1k-sample.")],
                out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write JPEG files into.")],
                split: Annotated[str, typer.Option(help="Split ('' for none).")] = "",
                limit: Annotated[int, typer.Option(min=1, help="Images to export.")] = 8,
                every: Annotated[int, typer.Option(min=1, help="Take every N-th sample.")] = 1,
                data_root: DataRootOpt = None) -> None:
    """Write a few images of a data set as files named by key and label (to try `v2l words` on)."""
    from .data import WebDatasetShards

    ds = WebDatasetShards(name, split=split or None, root=data_root)
    out.mkdir(parents=True, exist_ok=True)
    for i in list(range(0, len(ds), every))[:limit]:
        s = ds[i]
        label = "".join(c if c.isalnum() else "_" for c in (s.label or ""))[:40]
        path = out / (f"{s.key}_{label}.jpg" if label else f"{s.key}.jpg")
        s.image.save(path, quality=95)
        typer.echo(str(path))


@app.command()
def version() -> None:
    """Print the v2l version."""
    typer.echo(__version__)


def main() -> None:
    from transformers.utils import logging as hf_logging

    from . import cli_tokenizer  # noqa: F401  (registers train / tokenize / reconstruct / decode)

    hf_logging.disable_progress_bar()  # "Loading weights" bars on every model load; v2l shows its own progress

    try:
        app()
    except V2LError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)

