"""`v2l tokenize`, `v2l reconstruct`, `v2l decode`: images ⇄ LLM tokens with a trained tokenizer.

Every input is checked, and every output path, before a model loads; outputs are written atomically, an existing file
is replaced, an existing folder never is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import OutputPathError, V2LError
from .app import DeviceOpt, DtypeOpt, JsonOpt, app, setup_torch

TokOpt = Annotated[str, typer.Option("--tokenizer", "-t", help="Tokenizer folder, hub id, or 'cpu' (shipped).")]
SearchOpt = Annotated[str, typer.Option(help="Local-token search: exact, or hnsw (approximate, needs faiss-cpu).")]


def check_images(images: list[Path]) -> None:
    from ..data.images import load_image

    for p in images:  # every input is checked before any model loads or any output is written
        load_image(p)


@app.command()
def tokenize(
    images: Annotated[list[Path], typer.Argument(show_default=False, help="Image files to tokenize.")],
    tokenizer: TokOpt = "cpu",
    as_json: JsonOpt = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the JSON to this file (an existing file is replaced).")
    ] = None,
    search: SearchOpt = "exact",
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Print each image's global words and its grid of local LLM tokens."""
    from ..paths import check_output_file, write_json_atomic
    from ..tokenizer import ImageTokenizer
    from ..tokenizer.quantizers import check_search

    check_search(search)
    if out is not None:
        check_output_file(out, "--out")
    check_images(images)
    setup_torch(device, dtype)
    tok = ImageTokenizer.from_pretrained(tokenizer, search=search)
    rows = tok.tokenize([str(p) for p in images])
    payload = [{"image": str(p), **r.to_json()} for p, r in zip(images, rows, strict=True)]
    if out:
        write_json_atomic(out, payload[0] if len(payload) == 1 else payload)
    if as_json:
        typer.echo(json.dumps(payload, ensure_ascii=False))
        return
    for p, r in zip(images, rows, strict=True):
        typer.echo(f"{p}\n  global: {', '.join(r.global_words)}\n  local ({len(r.local_ids)}×{len(r.local_ids[0])}):")
        for row in r.local_tokens:
            typer.echo("    " + " ".join(repr(t)[1:-1] for t in row))


@app.command()
def reconstruct(
    image: Annotated[Path, typer.Argument(help="The image file to tokenize and decode back.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Image file to write (an existing file is replaced).")],
    tokenizer: TokOpt = "cpu",
    search: SearchOpt = "exact",
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Tokenize an image and decode it back (at the preset resolution)."""
    from ..tokenizer import ImageTokenizer
    from ..tokenizer.quantizers import check_search

    check_search(search)
    check_image_output(out)
    check_images([image])
    setup_torch(device, dtype)
    img = ImageTokenizer.from_pretrained(tokenizer, search=search).reconstruct([str(image)])[0]
    save_image(img, out)
    typer.echo(json.dumps({"image": str(image), "out": str(out)}) if as_json else str(out))


@app.command()
def decode(
    tokens: Annotated[Path, typer.Argument(help="JSON from `v2l tokenize --out`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Image file to write (an existing file is replaced).")],
    tokenizer: TokOpt = "cpu",
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Decode a tokens file (local ids + global ids) into an image. Without global ids, local tokens only."""
    from ..tokenizer import ImageTokenizer

    item = read_tokens_file(tokens)
    check_image_output(out)
    if not item.get("global_ids"):
        typer.echo(
            f"v2l: {tokens} has no global_ids; decoding from the local tokens only (the cross-attention "
            "sees no global tokens).",
            err=True,
        )
    setup_torch(device, dtype)
    img = ImageTokenizer.from_pretrained(tokenizer).decode([item])[0]
    save_image(img, out)
    typer.echo(json.dumps({"tokens": str(tokens), "out": str(out)}) if as_json else str(out))


def read_tokens_file(path: Path) -> dict:
    """One tokens object from `v2l tokenize -o`, its ids checked for type (sizes are checked by the tokenizer)."""
    if path.is_dir():
        raise V2LError(f"{path} is a folder, not a tokens file: pass the JSON from `v2l tokenize IMAGE -o FILE`.")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError as e:
        raise V2LError(f"{path} is nested too deeply to be a tokens file: write one with `v2l tokenize -o`.") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise V2LError(
            f"{path} is not a JSON tokens file ({reason}): write one with `v2l tokenize IMAGE -o FILE`."
        ) from e
    items = payload if isinstance(payload, list) else [payload]
    if len(items) != 1 or not isinstance(items[0], dict) or "local_ids" not in items[0]:
        raise V2LError(f"{path} must hold one object with local_ids (and global_ids): from `v2l tokenize -o`.")
    item = items[0]
    grid = item["local_ids"]
    if not isinstance(grid, list) or not grid or not all(isinstance(r, list) for r in grid):
        raise V2LError(f"{path}: local_ids must be a grid (a list of rows of integer token ids).")
    for name, ids in (("local_ids", [t for r in grid for t in r]), ("global_ids", item.get("global_ids") or [])):
        if not isinstance(ids, list):
            raise V2LError(f"{path}: {name} must be a list of integer ids, not {type(ids).__name__}.")
        for pos, t in enumerate(ids):
            if not isinstance(t, int) or isinstance(t, bool):
                raise V2LError(f"{path}: {name}[{pos}] is {t!r}, which is not an integer token id: check the file.")
            if not 0 <= t < 2**63:  # before torch (int64): the tokenizer checks the vocabulary size
                raise V2LError(
                    f"{path}: {name}[{pos}] is {t}, outside any vocabulary (ids are 0 or more and below 2**63): "
                    "check the file."
                )
    return item


def check_image_output(out: Path, what: str = "--out") -> None:
    from PIL import Image

    from ..paths import check_output_file

    check_output_file(out, what)
    if out.suffix.lower() not in Image.registered_extensions():
        raise OutputPathError(f"{what} {out}: use an image file name such as out.png.")


def save_image(img, out: Path) -> None:
    from PIL import Image

    from ..paths import atomic_path

    fmt = Image.registered_extensions()[out.suffix.lower()]
    with atomic_path(out) as tmp:
        img.save(tmp, format=fmt)


__all__ = ["check_images", "read_tokens_file", "save_image"]
