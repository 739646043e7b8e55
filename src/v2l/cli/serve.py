"""`v2l serve`: the local web page and JSON API (`v2l.serve`), on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import V2LError
from .app import DEFAULTS, DataRootOpt, DeviceOpt, DtypeOpt, app, setup_torch

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback needs --allow-remote.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 7860,
    tokenizer: Annotated[str, typer.Option("--tokenizer", "-t", help="Tokenizer folder, hub id, or 'cpu'.")] = "cpu",
    llm: Annotated[str, typer.Option(help="The frozen LLM (preset, folder, .gguf or hub id).")] = DEFAULTS["llm"],
    vl: Annotated[str | None, typer.Option(help="VL model (default: the tokenizer's).")] = None,
    max_waiting: Annotated[int, typer.Option(min=1, help="Requests served or waiting at once; more get 503 busy.")] = 8,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds a request may compute before a 504.")] = 300.0,
    max_upload_mb: Annotated[float, typer.Option(min=0.01, help="Largest upload accepted (MB).")] = 20.0,
    allow_remote: Annotated[
        bool, typer.Option(help="Allow binding to a non-loopback address (no authentication!).")
    ] = False,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Serve the web page and the JSON API (`/api/v1/...`, OpenAPI at `/docs`) for words, token maps,
    reconstruction, classification, captions, VQA, denoising and SEED."""
    if host not in LOOPBACK and not allow_remote:
        raise V2LError(f"--host {host} would expose the server beyond this machine: pass --allow-remote to mean it.")
    import uvicorn

    from ..serve import Service, create_app

    if host not in LOOPBACK:
        typer.echo(f"warning: serving on {host}:{port} to the network, without authentication.", err=True)
    setup_torch(device, dtype)
    service = Service(tokenizer=tokenizer, llm=llm, vl=vl, data_root=data_root)
    web = create_app(service, max_waiting=max_waiting, timeout_s=timeout, max_upload_mb=max_upload_mb)
    typer.echo(f"v2l serve: http://{host}:{port}/ (API: /api/v1/, OpenAPI: /docs)", err=True)
    uvicorn.run(web, host=host, port=port, log_level="warning")
