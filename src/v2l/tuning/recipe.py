"""LoRA recipes: a tuning run as data in one TOML file, like the tokenizer's recipes (`v2l.training.recipe`).

    v2l tune --recipe lora-cpu --dry-run     # the resolved settings; nothing runs
    v2l tune --recipe lora-cpu               # runs/lora-cpu/; pass --resume after a kill
    v2l tune --recipe lora-cpu --ship        # final/ into the package as the shipped adapter (`ship_as`)

A recipe has `format`, `kind = "lora"`, `name`, `version`, `description`, `ship_as` and a `[tune]` table of
`TuneConfig` fields. A wrong key or type is one sentence naming the file.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..backbones.adapters import SHIPPED
from ..errors import ConfigError, V2LError
from ..files import read_json, read_toml
from ..paths import atomic_path, text_sha256
from .config import TuneConfig

RECIPES = Path(__file__).resolve().parent.parent / "resources" / "recipes" / "tuning"
FORMAT = 1
TOP_KEYS = {"format", "kind", "name", "version", "description", "ship_as", "tune"}


@dataclass(frozen=True)
class TuneRecipe:
    name: str
    version: int
    description: str
    ship_as: str
    config: TuneConfig
    path: Path
    sha256: str


def list_tune_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.toml"))


def typed_value(name: str, value, default, where: str):
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, tuple):
        ok = isinstance(value, list)
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{where}: [tune] {name} = {value!r} has the wrong type (like {default!r}).")
    return value


def read_recipe(name_or_file: str | Path, folder: Path, kind: str, what: str, keys: set[str]) -> tuple[Path, dict]:
    """(path, raw table) of a recipe of `kind` (a shipped name in `folder` or a file), with its top-level keys,
    format and kind checked: the one reader of LoRA and SEED recipes."""
    path = folder / f"{name_or_file}.toml"
    if not path.is_file():
        path = Path(name_or_file)
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in folder.glob("*.toml")))
        raise V2LError(f"--recipe {name_or_file}: no such {what} recipe or file (shipped: {shipped}).")
    raw = read_toml(path, fix="fix the file or pass a shipped recipe")
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown}; a {what} recipe has {', '.join(sorted(keys))}.")
    if raw.get("format") != FORMAT or raw.get("kind") != kind:
        raise ConfigError(f'{path} is not a {what} recipe of format {FORMAT}: it needs format = 1 and kind = "{kind}".')
    return path, raw


def load_tune_recipe(name_or_file: str | Path) -> TuneRecipe:
    path, raw = read_recipe(name_or_file, RECIPES, "lora", "LoRA", TOP_KEYS)
    fields = {f.name: f.default for f in dataclasses.fields(TuneConfig)}
    tune = raw.get("tune", {})
    if not isinstance(tune, dict):
        raise ConfigError(f"{path}: [tune] must be a table of TuneConfig fields.")
    bad = sorted(set(tune) - set(fields))
    if bad:
        raise ConfigError(f"{path}: [tune] has unknown fields {bad}; use {', '.join(fields)}.")
    cfg = TuneConfig(**{k: typed_value(k, v, fields[k], str(path)) for k, v in tune.items()})
    for key in ("name", "description", "ship_as"):
        if not isinstance(raw.get(key, ""), str):
            raise ConfigError(f"{path}: {key} must be a string.")
    return TuneRecipe(
        name=raw.get("name", path.stem),
        version=int(raw.get("version", 1)),
        description=raw.get("description", ""),
        ship_as=raw.get("ship_as", ""),
        config=cfg,
        path=path,
        sha256=text_sha256(path.read_text()),
    )


def ship_adapter(recipe: TuneRecipe, run: Path, dest: Path | None = None) -> Path:
    """Copy the run's `final/` adapter into the package as `ship_as`, with the recipe named in its metadata."""
    import json

    final = Path(run) / "final"
    if not (final / "adapter_config.json").is_file():
        raise V2LError(
            f"{run} has no finished adapter (final/): run `v2l tune --recipe {recipe.name}` to the end first."
        )
    if not recipe.ship_as:
        raise V2LError(f"{recipe.path} names no ship_as: add one to ship its adapter.")
    dest = Path(dest or SHIPPED / recipe.ship_as)
    meta = read_json(final / "v2l_adapter.json")
    meta["recipe"] = {"name": recipe.name, "version": recipe.version, "sha256": recipe.sha256}
    with atomic_path(dest, replace=True) as tmp:
        shutil.copytree(final, tmp)
        (tmp / "v2l_adapter.json").write_text(json.dumps(meta, indent=1) + "\n")
        if (Path(run) / "log.csv").is_file():
            shutil.copy2(Path(run) / "log.csv", tmp / "log.csv")
    return dest
