"""`v2l data export`: a few images of a data set as files (to try `v2l words` on)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import DataRootOpt, JsonOpt, data_app


@data_app.command("export")
def data_export(
    name: Annotated[str, typer.Argument(help="Data set under the data root, e.g. imagenet-1k-sample.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Folder to write JPEG files into (created; files of the same name are replaced)."
        ),
    ],
    split: Annotated[str, typer.Option(help="Split ('' for none).")] = "",
    limit: Annotated[int, typer.Option(min=1, help="Images to export.")] = 8,
    every: Annotated[int, typer.Option(min=1, help="Take every N-th sample.")] = 1,
    by_class: Annotated[
        bool,
        typer.Option(
            "--by-class", help="One sub-folder per class, named by its label: a support folder for `v2l classify`."
        ),
    ] = False,
    data_root: DataRootOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a few images of a data set as files named by key and label (to try `v2l words` and `v2l classify` on)."""
    from ..data import WebDatasetShards
    from ..errors import OutputPathError
    from ..paths import atomic_path, check_output_dir, safe_file_name

    out = check_output_dir(out, "--out")
    ds = WebDatasetShards(name, split=split or None, root=data_root)
    plan = []  # every name checked before anything is written: a hostile label or key writes nothing
    for i in list(range(0, len(ds), every))[:limit]:
        key_, label_ = ds.keys[i], ds.meta(i).get("label")  # names only: images are decoded when written
        where = f"{name} sample {key_!r}"
        key = safe_file_name(key_, f"{where}: its key")
        if by_class:
            folder = safe_file_name(str(label_ or "unlabelled"), f"{where}: its label (a --by-class folder)")
            rel = Path(folder) / f"{key}.jpg"
        else:
            label = "".join(c if c.isalnum() else "_" for c in str(label_ or ""))[:40]
            rel = Path(f"{key}_{label}.jpg" if label else f"{key}.jpg")
        path = out / rel
        if out.resolve() not in path.resolve().parents:  # a link inside --out pointing elsewhere, say
            raise OutputPathError(f"{where} would be written at {path}, outside --out {out}: nothing was written.")
        plan.append((i, path))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, path in plan:
        path.parent.mkdir(exist_ok=True)
        with atomic_path(path) as tmp:
            ds[i].image.save(tmp, format="JPEG", quality=95)
        written.append(str(path))
        if not as_json:
            typer.echo(str(path))
    if as_json:
        import json

        typer.echo(json.dumps({"files": written}, indent=2, ensure_ascii=False))
