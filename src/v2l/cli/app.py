"""The `v2l` Typer application, its shared options, and `main()` (one sentence and exit code 2 for bad input).

Verb modules (`v2l.cli.info`, `.data`, `.codebook`, `.words`, `.tokenizer`, `.train`) add their commands to `app` when
imported; `v2l.cli` imports them all, so `python -m v2l`, `python -m v2l.cli`, the `v2l` script and
`accelerate launch -m v2l` all see every verb.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import click
import typer

from ..backbones.language_model import DEFAULT_LLM
from ..backbones.vision_language import DEFAULT_VL
from ..errors import V2LError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="v2l: let a frozen LLM see, by translating images into words of its own vocabulary.",
)
data_app = typer.Typer(no_args_is_help=True, help="Inspect and export the data sets under the data root.")
app.add_typer(data_app, name="data")
codebook_app = typer.Typer(no_args_is_help=True, help="Build and inspect codebooks (vocabulary expansion + filtering).")
app.add_typer(codebook_app, name="codebook")

LLMOpt = Annotated[str, typer.Option("--llm", help="LLM preset (see `v2l info --list`), folder, .gguf or hub id.")]
VLOpt = Annotated[
    str,
    typer.Option(
        "--vl", help="Vision-language model: conse:top_t=T (plain conse: top-T 10), hf-clip, hf-clip:PATH_OR_HUB_ID."
    ),
]
DataRootOpt = Annotated[
    str | None, typer.Option("--data-root", envvar="V2L_DATA", help="Folder holding the data sets (or set V2L_DATA).")
]
AdapterOpt = Annotated[
    str | None,
    typer.Option(
        "--adapter",
        help="A LoRA adapter merged into the LLM: a shipped name (v2l-cpu) or a folder written by `v2l tune`.",
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        envvar="V2L_DEVICE",
        help="Where the models run: auto (CUDA when torch sees a GPU, the LLM spread by Accelerate's device_map), "
        "cpu, cuda, cuda:N.",
    ),
]
DtypeOpt = Annotated[
    str,
    typer.Option(
        "--dtype",
        envvar="V2L_DTYPE",
        help="The frozen models' precision: auto (bfloat16 on CUDA, float32 on the CPU), float32, bfloat16, float16.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the results as JSON (only JSON on stdout).")]
DEFAULTS = {"llm": DEFAULT_LLM, "vl": DEFAULT_VL}


def _click_errors(name: str) -> tuple[type, ...]:
    """An exception class of click and of the click that recent typer versions vendor (`typer._click`)."""
    found = [getattr(click.exceptions, name)]
    try:
        from typer._click import exceptions as vendored

        found.append(getattr(vendored, name))
    except (ImportError, AttributeError):
        pass
    return tuple(found)


_NO_ARGS = _click_errors("NoArgsIsHelpError")
_USAGE = _click_errors("UsageError")
_CLICK = _click_errors("ClickException")
_ABORT = _click_errors("Abort")


def setup_torch(device: str = "auto", dtype: str = "auto") -> None:
    """Apply `--device` / `--dtype` to every model the command loads (`v2l.runtime`), and `V2L_THREADS` (a positive
    integer) to torch's CPU threads."""
    import torch

    from ..runtime import configure

    configure(device, dtype)
    threads = os.environ.get("V2L_THREADS")
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise V2LError(f"V2L_THREADS={threads!r} is invalid: set it to a positive number of threads.")
        torch.set_num_threads(int(threads))


def quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars on every model load; v2l shows its own progress


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. Bad input of any kind ends with `error: <one sentence>` on stderr and exit code 2."""
    quiet_transformers()
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="v2l", standalone_mode=False)
    except V2LError as e:
        _fail(str(e))
    except _NO_ARGS as e:  # `v2l` or `v2l data` alone: the help, as a usage error
        text = e.ctx.get_help() if e.ctx else ""  # typer's rich help prints itself and returns ""
        if text:
            typer.echo(text, err=True)
        sys.exit(2)
    except _USAGE as e:
        where = f" (see `{e.ctx.command_path} --help`)" if e.ctx else ""
        _fail(_sentence(e.format_message()).rstrip(".") + where + ".")
    except _CLICK as e:
        _fail(_sentence(e.format_message()))
    except _ABORT:
        typer.echo("error: interrupted.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("error: interrupted (rerun the same command to resume where it is resumable).", err=True)
        sys.exit(130)
    except RecursionError:
        _fail("the input is nested too deeply to read: check the file you passed.")
    except OSError as e:  # the machine, not the input: a full disk, a read-only or vanished place
        import errno

        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO):
            raise
        where = f" writing {e.filename}" if e.filename else ""
        _fail(
            f"{e.strerror or e}{where}: free space or pass a writable place, then rerun (finished outputs are whole; "
            "nothing partial was kept)."
        )
    sys.exit(code if isinstance(code, int) else 0)


def _sentence(msg: str) -> str:
    return " ".join(msg.split())


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    sys.exit(2)
