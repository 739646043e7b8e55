"""`v2l codebook build` and `v2l codebook show` (paper §3.2, appendix A, Table 5). Defaults come from
`CodebookConfig`, which validates every setting before any model loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..codebooks.config import CodebookConfig as C
from .app import DataRootOpt, DeviceOpt, DtypeOpt, JsonOpt, LLMOpt, VLOpt, codebook_app, setup_torch


@codebook_app.command("build")
def codebook_build(
    llm: LLMOpt = C.llm,
    vl: VLOpt = C.vl,
    filter_data: Annotated[
        str, typer.Option(help="Data set under the data root, or a folder of images.")
    ] = C.filter_data,
    filter_split: Annotated[str, typer.Option(help="Split of --filter-data ('' for none).")] = C.filter_split,
    filter_classes: Annotated[
        str, typer.Option(help="train: v2l's 160 training classes only; heldout; all.")
    ] = C.filter_classes,
    filter_per_class: Annotated[int, typer.Option(min=0, help="Images per class (0 = all).")] = C.filter_per_class,
    filter_top_k: Annotated[int, typer.Option(min=1, help="Entries chosen per image.")] = C.filter_top_k,
    min_count: Annotated[int, typer.Option(min=1, help="Keep entries chosen at least this often.")] = C.min_count,
    max_share: Annotated[
        float,
        typer.Option(help="Drop entries chosen by more than this share of the filtering images (hubs); 1 keeps all."),
    ] = C.max_share,
    dedupe: Annotated[
        str,
        typer.Option(
            help="Keep candidates once per text, or once per text-encoder input "
            "(encoder: 'Snake' = 'snake' for an uncased encoder)."
        ),
    ] = C.dedupe,
    max_ngram: Annotated[int, typer.Option(min=1, max=3, help="1 subwords, 2 + bigrams, 3 + trigrams.")] = C.max_ngram,
    top_m: Annotated[int, typer.Option(min=1, help="Next tokens per entry (M).")] = C.top_m,
    prefix: Annotated[str, typer.Option(help="Expansion prefix.")] = C.prefix,
    templates: Annotated[
        str, typer.Option(help="cpu (3), imagenet80, single, or N (first N of the 80).")
    ] = C.templates,
    no_renormalize: Annotated[bool, typer.Option("--no-renormalize", help="Keep the raw template mean.")] = False,
    screen: Annotated[
        str,
        typer.Option(
            help="bf16: embed expanded entries in bfloat16 first and in float32 only "
            "where they could be chosen (same codebook, faster); off: all in "
            "float32."
        ),
    ] = C.screen,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per text-encoder batch.")] = C.batch_size,
    llm_batch_size: Annotated[
        int, typer.Option(min=1, help="Prompts per LLM batch in the expansion.")
    ] = C.llm_batch_size,
    chunk_size: Annotated[int, typer.Option(min=1, help="Items per resumable chunk.")] = C.chunk_size,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: the cache, keyed by settings).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if the artefact exists.")] = False,
    variants: Annotated[
        bool,
        typer.Option(
            help="Also write Table 5's --max-ngram 1 .. N-1 variants from the same "
            "candidates (one extra filtering pass each)."
        ),
    ] = False,
    data_root: DataRootOpt = None,
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Build the local and global codebooks (expansion + filtering). Resumable: rerun after a kill to continue."""
    import time

    from ..codebooks import build_codebook, variant_folder
    from ..codebooks.artefact import is_codebook_folder
    from ..errors import OutputPathError
    from ..paths import check_output_dir
    from ..runtime import current

    cfg = C(
        llm=llm,
        vl=vl,
        prefix=prefix,
        top_m=top_m,
        max_ngram=max_ngram,
        templates=templates,
        renormalize_templates=not no_renormalize,
        filter_data=filter_data,
        filter_split=filter_split or None,
        filter_classes=filter_classes,
        filter_per_class=filter_per_class,
        filter_top_k=filter_top_k,
        min_count=min_count,
        max_share=max_share,
        dedupe=dedupe,
        screen=screen,
        chunk_size=chunk_size,
        batch_size=batch_size,
        llm_batch_size=llm_batch_size,
    )
    if out is not None:
        out = check_output_dir(out, "--out")
        if out.is_dir() and any(out.iterdir()) and not is_codebook_folder(out):
            raise OutputPathError(
                f"--out {out} is a non-empty folder that is not a codebook: pass a new folder "
                "(v2l never replaces other folders)."
            )
    setup_torch(device, dtype)
    t0 = time.perf_counter()
    folder = build_codebook(cfg, out=out, data_root=data_root, force=force, variants=variants)
    seconds = time.perf_counter() - t0
    from ..distributed import is_main, world

    if not is_main():  # under `accelerate launch`: the first process reports
        return
    folders = [folder] + ([variant_folder(cfg, n, out) for n in range(max_ngram - 1, 0, -1)] if variants else [])
    if as_json:
        counts = [json.loads((f / "manifest.json").read_text())["counts"] for f in folders]
        typer.echo(
            json.dumps(
                {
                    "codebooks": [{"folder": str(f), "counts": c} for f, c in zip(folders, counts, strict=True)],
                    "seconds": seconds,
                    "processes": world()[1],
                    "runtime": current().to_json(),
                },
                indent=2,
            )
        )
        return
    for f in folders:
        c = json.loads((f / "manifest.json").read_text())["counts"]
        typer.echo(f"codebook: {f}")
        typer.echo(
            f"local: {c['local']} tokens; candidates: {c['candidates']} {c['candidates_by_kind']}; "
            f"global: {c['global']} {c['global_by_kind']} from {c['filter_images']} images"
        )
    typer.echo(f"({seconds:.0f} s)")


@codebook_app.command("show")
def codebook_show(
    folder: Annotated[Path, typer.Argument(help="A codebook folder (written by `v2l codebook build`).")],
    top: Annotated[int, typer.Option(min=0, help="Most chosen entries to list.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Print a codebook's counts and its most often chosen global entries (as text, or JSON with --json)."""
    from ..codebooks import Codebook

    cb = Codebook.load(folder)
    entries = sorted(cb.entries, key=lambda e: -e["count"])[:top]
    if as_json:
        top_entries = [{"text": e["text"], "kind": e["kind"], "count": e["count"]} for e in entries]
        typer.echo(json.dumps({"counts": cb.manifest["counts"], "top": top_entries}, indent=2))
        return
    c = cb.manifest["counts"]
    typer.echo(f"codebook: {folder}")
    typer.echo(f"local: {c['local']} tokens; global: {c['global']} {c.get('global_by_kind', '')}")
    for e in entries:
        typer.echo(f"{e['count']:6d}  {e['kind']:8s}  {e['text']}")
