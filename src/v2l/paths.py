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
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import DataNotFoundError, OutputPathError


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


def check_output_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """`path` as a folder we may create or write into: not a file, not inside a file, in a writable place.

    Checked before any work starts; raises `OutputPathError` (one sentence naming `what`) and creates nothing."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path} is a file, not a folder: pass a folder path.")
    _check_parent(path, what)
    return path


def check_output_file(path: str | os.PathLike, what: str = "--out") -> Path:
    """`path` as a file we may write (or atomically replace): not an existing folder, not inside a file, writable.

    An existing folder is never replaced by a file (that would delete what is in it); raises `OutputPathError`."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is an existing folder: pass a file path (nothing was written).")
    _check_parent(path, what)
    return path


def _check_parent(path: Path, what: str, probe: bool = True) -> None:
    """The nearest existing ancestor of `path` is a folder and (with `probe`) one we can create a file in."""
    parent = path.absolute().parent
    for p in (parent, *parent.parents):  # the nearest existing ancestor decides
        if p.exists():
            if not p.is_dir():
                raise OutputPathError(f"{what} {path} lies inside {p}, which is a file: pass a path in a folder.")
            if not probe:
                return
            try:  # a real probe: permission bits say nothing for root, read-only mounts or /proc
                fd, probe = tempfile.mkstemp(prefix=".v2l-write-test.", dir=p)
                os.close(fd)
                os.unlink(probe)
            except OSError as e:
                raise OutputPathError(
                    f"{what} {path}: cannot write in {p} ({e.strerror or e}): pass a writable place."
                ) from e
            return


def _writable_hint(target: Path) -> str:
    """What to do about an unwritable place: a cache entry is moved by V2L_CACHE, an output by its option."""
    root = Path(os.environ.get("V2L_CACHE") or Path.home() / ".cache" / "v2l").expanduser().absolute()
    if target.absolute().is_relative_to(root):
        return f"the cache folder {root} is not writable; set V2L_CACHE to a writable folder"
    return "pass a writable place"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, replace: bool | Callable[[Path], bool] = False) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    Works for files and folders: a kill at any point leaves either the old target or the new one, never a half. An
    existing *file* target is replaced. An existing *folder* target is replaced only if `replace` is True or
    `replace(target)` says it is ours to replace (e.g. an earlier artefact of the same kind), or if it is empty and a
    folder replaces it; otherwise `OutputPathError` is raised and nothing is written or removed.
    """
    target = Path(target)
    ours = replace(target) if callable(replace) else replace
    empty = target.is_dir() and not any(target.iterdir())  # an empty folder loses nothing if a folder replaces it
    if target.is_dir() and not target.is_symlink() and not (ours or empty):
        raise OutputPathError(
            f"{target} is an existing folder that v2l will not replace: pass another path, or remove it yourself."
        )
    _check_parent(target, "output", probe=False)  # mkdtemp below is the write test (and fails clearly)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as e:
        raise OutputPathError(f"Cannot write {target} ({e.strerror or e}): {_writable_hint(target)}.") from e
    tmp.rmdir()  # the caller creates a file or a folder at this path
    try:
        yield tmp
        _default_permissions(tmp)
        if tmp.is_dir() and target.exists() and not target.is_dir():
            raise OutputPathError(f"{target} is an existing file; a folder cannot replace it: pass another path.")
        if not tmp.is_dir() and target.is_dir() and not ours:
            raise OutputPathError(f"{target} is an existing folder; a file cannot replace it: pass a file path.")
        old = None
        if target.is_dir() and not target.is_symlink():
            # Move the old folder aside first (os.replace cannot replace a non-empty folder), then remove it once the
            # new one is in place: a kill in between leaves the old folder beside the new one, never neither.
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
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


# ---- names from data that become paths (hostile shards: CVE-2007-4559) --------------------------------------------

_UNSAFE_CHARS = {"/", "\\", "\0", ":"} | {chr(c) for c in range(32)} | {"\x7f"}


def unsafe_member(name: str) -> str | None:
    """Why a tar member name may not be read as data (None if it may): an absolute path, a drive letter, a `..`
    component, a NUL byte or an empty name. The rules of `tarfile.data_filter`, for names we never extract."""
    if not name or "\0" in name:
        return "an empty name or a NUL byte"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if any(part == ".." for part in name.replace("\\", "/").split("/")):
        return "a '..' component"
    return None


def safe_file_name(text: str, what: str, fallback: str | None = None) -> str:
    """`text` made into one path component: separators, NUL, control characters and ':' become '_'. A name that is
    empty, '.' or '..' after that is `fallback`, or an `OutputPathError` naming `what` when there is none."""
    clean = "".join("_" if c in _UNSAFE_CHARS else c for c in text).strip()
    if clean in ("", ".", ".."):
        if fallback is not None:
            return fallback
        raise OutputPathError(f"{what}: {text!r} cannot name a file or folder: rename it in the data.")
    return clean[:200]


def check_distinct(outputs: dict, inputs: dict | None = None) -> None:
    """Outputs (option -> path or None) that name one file, or an output that names an input: one sentence, before
    any work (two outputs would silently overwrite each other; an output over an input would destroy it)."""
    seen: dict[Path, str] = {}
    for what, path in (inputs or {}).items():
        if path is not None:
            seen.setdefault(Path(path).resolve(), f"the input {what}")
    for what, path in outputs.items():
        if path is None:
            continue
        key = Path(path).resolve()
        if key in seen:
            raise OutputPathError(
                f"{what} {path} is also {seen[key]}: give each output its own file (nothing was written)."
            )
        seen[key] = what


def line_safe(text: object) -> str:
    """`text` for one field of a line-oriented output (`IMAGE<TAB>CLASS`): backslash, tab, newline and carriage
    return written as escapes (`\\t`, `\\n`, ...), so a hostile name cannot split or add a line (`--json` gives the raw
    text)."""
    return str(text).translate({0x5C: "\\\\", 0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
