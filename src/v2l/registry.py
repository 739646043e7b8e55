"""Named registries: one pattern for everything a user picks by name (after open_clip's `list_models` /
`add_model_config`).

Each registry maps a name to an object (a preset, a class, a factory) with a one-line description. Lookups of an
unknown name raise a `V2LError` that lists the valid names, so every CLI option that takes a name fails with one
sentence. Registries are filled at import of the module that owns the entries; `all_registries()` imports those
modules so `v2l info --list` sees every one.

    from v2l.registry import registry
    registry("tokenizer-presets").names()          # ['cpu', 'paper', 'tiny']
    registry("tokenizer-presets").add("mine", TokenizerConfig(...), "my preset")
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import UnknownNameError, V2LError

T = TypeVar("T")
_MISSING = object()


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    value: T
    help: str = ""


class Registry(Generic[T]):
    """An ordered name → value map with clear errors. `what` names the kind of thing in messages."""

    def __init__(self, name: str, what: str, option: str | None = None):
        self.name, self.what, self.option = name, what, option
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, value: T, help: str = "", *, replace: bool = False) -> T:
        if not name or not isinstance(name, str):
            raise V2LError(f"A {self.what} needs a non-empty name.")
        if name in self._entries and not replace:
            raise V2LError(f"A {self.what} named {name!r} is already registered: pass replace=True to override it.")
        self._entries[name] = Entry(name, value, help)
        return value

    def register(self, name: str, help: str = "", *, replace: bool = False):
        """Decorator form of `add`."""

        def deco(value: T) -> T:
            self.add(name, value, help, replace=replace)
            return value

        return deco

    def get(self, name: str, default: Any = _MISSING) -> T:
        """The value registered as `name`; an unknown name raises `UnknownNameError` listing the valid ones (or
        returns `default` when one is given, as `dict.get` does)."""
        if name not in self._entries:
            if default is not _MISSING:
                return default
            raise UnknownNameError(self.unknown(name))
        return self._entries[name].value

    def unknown(self, name: Any) -> str:
        where = f"{self.option} " if self.option else ""
        return f"Unknown {self.what} {where}{name!r}: use one of {', '.join(self._entries)}."

    # mapping-style access, so a registry reads like the dict it replaces (and `monkeypatch.setitem` works in tests)
    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __setitem__(self, name: str, value: T) -> None:
        """Replace (or add) a value; an entry's help stays (`monkeypatch.setitem` swaps a value and puts it back)."""
        old = self._entries.get(name)
        self.add(name, value, old.help if old is not None else "", replace=True)

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)


_REGISTRIES: dict[str, Registry] = {}
# the modules whose import fills the registries (kept lazy so `import v2l` stays cheap)
_OWNERS = (
    "v2l.backbones.language_model",
    "v2l.backbones.vision_language",
    "v2l.tokenizer.config",
    "v2l.codebooks.templates",
    "v2l.training.losses",
    "v2l.tokenizer.quantizers",
    "v2l.tasks.prompts",
    "v2l.tokenizer.network",
    "v2l.baselines.lqae",
    "v2l.baselines.spae",
    "v2l.eval.bench.suites",
    "v2l.eval.bench.stages",
    "v2l.seed.config",
    "v2l.plan.plans",
)


def new_registry(name: str, what: str, option: str | None = None) -> Registry:
    if name in _REGISTRIES:
        return _REGISTRIES[name]
    reg = _REGISTRIES[name] = Registry(name, what, option)
    return reg


def registry(name: str) -> Registry:
    """A registry by name (see `all_registries()` for the list)."""
    regs = all_registries()
    if name not in regs:
        raise V2LError(f"Unknown registry {name!r}: use one of {', '.join(regs)}.")
    return regs[name]


def all_registries() -> dict[str, Registry]:
    for mod in _OWNERS:
        importlib.import_module(mod)
    return dict(_REGISTRIES)
