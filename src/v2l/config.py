"""Field checks shared by every config dataclass (`TokenizerConfig`, `CodebookConfig`, `TrainConfig`).

Each check raises `ConfigError` (a `V2LError`) with one sentence that names the field, the bad value and what to use,
so a config built from a CLI flag, a JSON file or Python fails the same clear way, before any work starts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .errors import ConfigError

MAX_INT = 2**31 - 1  # the largest count, step or size any config field takes


def check_choice(name: str, value, choices: Iterable, owner: str = "", cli: bool = False) -> None:
    """`value` is one of `choices`. `cli=True`: the field is set by the option `--name` (named in the message)."""
    choices = tuple(choices)
    if value not in choices:
        names = ", ".join(map(str, choices))
        raise ConfigError(f"{_invalid(owner, name, value, cli)}: use one of {names}.")


def check_range(
    name: str,
    value,
    low: float | None = None,
    high: float | None = None,
    owner: str = "",
    integer: bool | None = None,
    cli: bool = False,
) -> None:
    """`value` is a number (an int where the default is one) within [low, high]; an integer with no upper bound is
    still at most `MAX_INT` (a huge count is a typo, and would overflow torch's and numpy's int32 sizes)."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if integer is None:
        integer = isinstance(low, int) and not isinstance(low, bool) and (high is None or isinstance(high, int))
    if integer and high is None:
        high = MAX_INT
    ok = is_int if integer else (is_int or isinstance(value, float)) and math.isfinite(value)
    if ok and low is not None and value < low:
        ok = False
    if ok and high is not None and value > high:
        ok = False
    if not ok:
        kind = "an integer" if integer else "a number"
        bounds = (f" from {low} to {high}" if high is not None else f" of at least {low}") if low is not None else ""
        raise ConfigError(f"{_invalid(owner, name, value, cli)}: use {kind}{bounds}.")


def _invalid(owner: str, name: str, value, cli: bool) -> str:
    """`--top-m 0 is invalid (CodebookConfig.top_m)` for an option, `TokenizerConfig.beta -1 is invalid` else."""
    field = f"{owner}.{name}" if owner else name
    if cli:
        return f"--{name.replace('_', '-')} {value!r} is invalid" + (f" ({field})" if owner else "")
    return f"{field} {value!r} is invalid"


__all__ = ["ConfigError", "check_choice", "check_range"]
