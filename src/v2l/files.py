"""One reader per file format (JSON, safetensors, TOML): every library error, a truncated file, a bit flip or a file of
the wrong shape becomes one `ArtefactError` sentence naming the file, what is wrong and what to do.

Nothing the project reads can run code: no pickle anywhere (not even through `torch.load`); caches are
safetensors and JSON, checked by `read_cache_tensors` and rebuilt with a one-line warning when damaged.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .errors import V2LError


class ArtefactError(V2LError, ValueError):
    """A file the project reads is missing, damaged or of the wrong shape."""


def _fix(what: str | None) -> str:
    return what or "replace it (or delete it and rebuild it)"


def read_json(path: str | os.PathLike, expect: type = dict, fix: str | None = None):
    """The JSON value in `path`, which must be an `expect` (dict or list)."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtefactError(f"{path} is missing: {_fix(fix)}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtefactError(f"{path} is not readable JSON ({e}): {_fix(fix)}.") from None
    if expect is not None and not isinstance(value, expect):
        raise ArtefactError(
            f"{path} holds a JSON {type(value).__name__} where a {expect.__name__} belongs: {_fix(fix)}."
        )
    return value


def json_field(data: dict, name: str, kind: type | tuple[type, ...], path, fix: str | None = None):
    """`data[name]`, which must exist and be of `kind` (read from `path`)."""
    if name not in data:
        raise ArtefactError(f"{path} has no {name!r} field: {_fix(fix)}.")
    value = data[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool) and int in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ArtefactError(f"{path}: field {name!r} is a {type(value).__name__}, not a {names}: {_fix(fix)}.")
    return value


def read_safetensors(path: str | os.PathLike, fix: str | None = None, names: tuple[str, ...] = ()) -> dict:
    """The tensors in a safetensors file; `names` must be among them."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ArtefactError(f"{path} is missing: {_fix(fix)}.")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ArtefactError(f"{path} is not a readable safetensors file ({e}): {_fix(fix)}.") from None
    missing = [n for n in names if n not in tensors]
    if missing:
        raise ArtefactError(f"{path} has no tensor {missing[0]!r}: {_fix(fix)}.")
    return tensors


def read_toml(path: str | os.PathLike, fix: str | None = None) -> dict:
    import tomllib

    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtefactError(f"{path} is missing: {_fix(fix)}.") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ArtefactError(f"{path} is not readable TOML ({e}): {_fix(fix)}.") from None


# ---- cache entries: safetensors with their metadata and a checksum; a damaged one is rebuilt -----------------------


def _digest(tensors: dict) -> str:
    import hashlib

    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(-1).view(__import__("torch").uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def write_cache_tensors(path: str | os.PathLike, tensors: dict, meta: dict) -> None:
    """A cache entry, atomically: `tensors` and the JSON-able `meta` in one safetensors file, with the sha256 of the
    tensors' bytes in its header (checked by `read_cache_tensors`)."""
    from safetensors.torch import save_file

    from .paths import atomic_path

    tensors = {k: v.contiguous() for k, v in tensors.items()}
    header = {"v2l": json.dumps(meta, ensure_ascii=False), "sha256": _digest(tensors)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)


def read_cache_tensors(path: str | os.PathLike) -> tuple[dict, dict] | None:
    """(tensors, meta) of a cache entry written by `write_cache_tensors`, or None when there is none or it is damaged
    (truncated, flipped, of another format): then it is removed with a one-line warning, to be rebuilt."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        meta = json.loads(header["v2l"])
        if header.get("sha256") != _digest(tensors) or not isinstance(meta, dict):
            raise ValueError("checksum mismatch")
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as e:
        logging.getLogger("v2l").warning(f"v2l: cache entry {path} is damaged ({e}); rebuilding it.")
        path.unlink(missing_ok=True)
        return None
    return tensors, meta


def typed_fields(data: dict, cls, where: str) -> dict:
    """`data`'s fields for the dataclass `cls`, each checked against the type of the field's default: a string is a
    string, an integer one from 1 to 100,000 (not a bool), a tuple of strings a JSON list of strings (a bare string
    is refused, never split into characters). A wrong one is a `ConfigError` naming `where` and the field."""
    import dataclasses

    from .errors import ConfigError

    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where} has unknown fields {unknown}: use {', '.join(fields)}.")
    out = {}
    for name, value in data.items():
        default = fields[name].default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100_000
        elif isinstance(default, tuple):
            ok = isinstance(value, list) and all(isinstance(v, str) and v for v in value)
            value = tuple(value) if ok else value
        else:  # strings (and fields without a default: the templates' texts)
            ok = isinstance(value, str)
        if not ok:
            want = {bool: "true or false", int: "an integer from 1 to 100,000", tuple: "a list of non-empty strings"}
            kind = next((v for k, v in want.items() if isinstance(default, k)), "a string")
            raise ConfigError(f"{where}: field {name!r} is {value!r}; it must be {kind}.")
        out[name] = value
    return out
