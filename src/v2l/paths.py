"""Where v2l keeps its cache and finds its data, and atomic file writes.

The cache root is `V2L_CACHE` (default `~/.cache/v2l`); the data root is `--data-root` or `V2L_DATA` and is never
guessed, so that a user's own ImageNet or COCO is never mixed up with another copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import DataNotFoundError


def cache_root() -> Path:
    """The cache folder (`V2L_CACHE`, default `~/.cache/v2l`), created on first use."""
    root = Path(os.environ.get("V2L_CACHE") or Path.home() / ".cache" / "v2l").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data root: `explicit` (the CLI's `--data-root`) if given, else `V2L_DATA`."""
    value = explicit if explicit is not None else os.environ.get("V2L_DATA")
    if not value:
        raise DataNotFoundError("No data root given: pass --data-root PATH or set V2L_DATA to the folder of data sets.")
    root = Path(value).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"Data root {root} is not a folder: pass --data-root PATH or set V2L_DATA correctly.")
    return root


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def text_sha256(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    Works for files and folders: a kill at any point leaves either the old target or the new one, never a half.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.rmdir()  # the caller creates a file or a folder at this path
    try:
        yield tmp
        _default_permissions(tmp)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _default_permissions(path: Path) -> None:
    """Give what we wrote the permissions of a normally created file (mkdtemp and some writers use 0600/0700)."""
    umask = os.umask(0)
    os.umask(umask)
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        if p.exists():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
