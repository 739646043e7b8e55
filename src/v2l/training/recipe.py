"""Recipes: every training stage of a model as data in one versioned TOML file, run by the library (after torchtune's
recipes and Lightning's CLI configs).

A recipe names its stages in order. Each stage is a `v2l train` run: the model and its preset, the codebook (LLM and
VL model), the data and class split, where it starts (`init`: nothing, another stage, or a tokenizer folder), and
every training setting (`TrainConfig`'s fields: steps, batch, losses and weights, schedule, precision, snapshots).
`[defaults]` holds what every stage shares. A recipe is validated as the configs are: an unknown key, a bad value or
an `init` that names no earlier stage fails in one sentence naming the file.

    v2l recipe run cpu --dry-run      # stage 1: ..., one line per stage; nothing runs
    v2l recipe run cpu                # every stage in order into runs/cpu/<stage>/, resuming after a kill
    v2l train --recipe cpu --stage whole-ft
    v2l recipe ship cpu               # the shipped stage's model into the package, training.json from the records

Each stage's run folder holds `stage.json` (the stage as resolved from the recipe, the data it read, and the machines
it ran on) beside the trainer's own `config.json` and `log.csv`; `ship_recipe` writes the shipped model's
`training.json` from those records and the recipe, never from scripts.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import MAX_INT
from ..errors import ConfigError, V2LError
from ..paths import text_sha256
from .config import TrainConfig

RECIPES = Path(__file__).resolve().parent.parent / "resources" / "recipes"
FORMAT = 1  # the recipe file format this code reads

# The model settings a stage may set (the rest come from the preset, or from `init`'s folder).
MODEL_KEYS = ("preset", "model", "projector", "codebook_source", "cross_attention", "ch", "num_res_blocks")
CODEBOOK_KEYS = ("llm", "vl", "codebook")
DATA_KEYS = ("data", "split", "classes", "per_class")
TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("init", "preset"))
# stop_after: the stage ends at that step while its schedule spans `steps` (Table 6's short ablations)
STAGE_KEYS = (
    "name",
    "note",
    "init",
    "init_weights",
    "stop_after",
    *MODEL_KEYS,
    *CODEBOOK_KEYS,
    *DATA_KEYS,
    *TRAIN_KEYS,
)
# the data and codebook keys' types (the model and training keys are checked by their config dataclasses)
_SETTING_TYPES = {
    "note": str,
    "data": str,
    "split": str,
    "classes": str,
    "per_class": int,
    "llm": str,
    "vl": str,
    "codebook": str,
    "model": str,
    "preset": str,
}
_KIND_NAMES = {str: "a string", int: "a whole number"}
INIT_WEIGHTS = ("as-trained", "fp16")  # fp16: the init stage's weights rounded as `ship` writes them


@dataclass(frozen=True)
class Stage:
    """One training stage: its name and its settings (the recipe's defaults merged with the stage's own)."""

    name: str
    settings: dict

    def get(self, key: str, default=None):
        return self.settings.get(key, default)

    @property
    def init(self) -> str | None:
        return self.settings.get("init") or None


@dataclass
class Recipe:
    name: str
    version: int
    description: str
    stages: list[Stage]
    ship: str | None = None  # the stage whose final model `ship_recipe` puts in the package
    ship_as: str | None = None  # the package checkpoint it becomes (resources/checkpoints/<ship_as>)
    source: Path | None = None
    sha256: str = ""

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise ConfigError(
            f"--stage {name!r}: recipe {self.name} has no such stage; use one of "
            f"{', '.join(s.name for s in self.stages)}."
        )

    def index(self, name: str) -> int:
        return [s.name for s in self.stages].index(name)


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.toml"))


def recipe_path(name_or_file: str | Path) -> Path:
    """The file of a shipped recipe name, or the given file."""
    p = Path(name_or_file)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ConfigError(f"Recipe file {p} does not exist: check the path, or name a shipped recipe.")
        return p
    shipped = RECIPES / f"{name_or_file}.toml"
    if not shipped.is_file():
        raise ConfigError(
            f"Unknown recipe {str(name_or_file)!r}: use one of {', '.join(list_recipes())}, or a .toml file."
        )
    return shipped


def load_recipe(name_or_file: str | Path) -> Recipe:
    """Read and validate a recipe (a shipped name or a file); every problem is one sentence naming the file."""
    path = recipe_path(name_or_file)
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"Recipe {path} is not valid TOML ({e}): fix the file.") from None
    return parse_recipe(raw, path, text)


def default_root(recipe: Recipe) -> Path:
    """Where a recipe's stage runs go unless told: runs/RECIPE/STAGE."""
    return Path("runs") / recipe.name


def parse_recipe(raw: dict, path: Path | None = None, text: str | None = None) -> Recipe:
    where = f"Recipe {path}" if path else "The recipe"

    def bad(msg: str) -> ConfigError:
        return ConfigError(f"{where}: {msg}")

    allowed = {"format", "name", "version", "description", "ship", "ship_as", "defaults", "stages"}
    if unknown := sorted(set(raw) - allowed):
        raise bad(f"unknown top-level keys {unknown}; use {', '.join(sorted(allowed))}.")
    if raw.get("format", FORMAT) != FORMAT:
        raise bad(f"format {raw.get('format')!r} is not one this v2l reads ({FORMAT}).")
    name = raw.get("name") or (path.stem if path else "")
    version = raw.get("version", 1)
    if not isinstance(name, str) or not name:
        raise bad("needs a name.")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad(f"version {version!r} must be a positive integer.")
    defaults = raw.get("defaults", {})
    stages_raw = raw.get("stages")
    if not isinstance(defaults, dict):
        raise bad("[defaults] must be a table.")
    if not isinstance(stages_raw, list) or not stages_raw or not all(isinstance(s, dict) for s in stages_raw):
        raise bad("needs at least one [[stages]] table.")
    for key in defaults:
        if key not in STAGE_KEYS or key in ("name", "init", "note"):
            raise bad(f"[defaults] has unknown or per-stage key {key!r}.")
    stages: list[Stage] = []
    for i, own in enumerate(stages_raw, 1):
        sname = own.get("name")
        if not isinstance(sname, str) or not sname or "/" in sname or sname.startswith("."):
            raise bad(f"stage {i} needs a name (a folder name: no '/').")
        if any(s.name == sname for s in stages):
            raise bad(f"two stages are named {sname!r}.")
        if unknown := sorted(set(own) - set(STAGE_KEYS)):
            raise bad(f"stage {sname!r} has unknown keys {unknown}; use {', '.join(STAGE_KEYS)}.")
        settings = {**defaults, **own}
        init = settings.get("init")
        if init is not None and not isinstance(init, str):
            raise bad(f"stage {sname!r}: init must be a stage name, a tokenizer folder or 'cpu'.")
        if settings.get("init_weights", "as-trained") not in INIT_WEIGHTS:
            raise bad(f"stage {sname!r}: init_weights must be one of {', '.join(INIT_WEIGHTS)}.")
        if init == sname:
            raise bad(f"stage {sname!r} cannot start from itself.")
        if init in [s.get("name") for s in stages_raw] and init not in [s.name for s in stages]:
            raise bad(f"stage {sname!r} starts from stage {init!r}, which comes after it.")
        for key, kind in _SETTING_TYPES.items():  # what TrainConfig and TokenizerConfig do not check themselves
            value = settings.get(key)
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise bad(f"stage {sname!r}: {key} = {value!r} must be {_KIND_NAMES[kind]}.")
        if isinstance(settings.get("per_class"), int) and not 0 <= settings["per_class"] <= MAX_INT:
            raise bad(f"stage {sname!r}: per_class = {settings['per_class']} must be from 0 (all) to {MAX_INT}.")
        stop = settings.get("stop_after")
        if stop is not None and (not isinstance(stop, int) or isinstance(stop, bool) or stop < 1):
            raise bad(f"stage {sname!r}: stop_after must be a positive number of steps.")
        stage = Stage(sname, settings)
        try:
            train_config(stage, init_folder="<init>" if init else "")
            if not init:
                model_config(stage)
        except V2LError as e:  # a bad value or an unknown name (preset, model, ...)
            raise bad(f"stage {sname!r}: {e}") from None
        stages.append(stage)
    ship = raw.get("ship")
    if ship is not None and ship not in [s.name for s in stages]:
        raise bad(f"ship = {ship!r} names no stage.")
    text = text if text is not None else json.dumps(raw, sort_keys=True)
    return Recipe(
        name=name,
        version=version,
        description=str(raw.get("description", "")),
        stages=stages,
        ship=ship,
        ship_as=raw.get("ship_as"),
        source=path,
        sha256=text_sha256(text),
    )


def train_config(stage: Stage, init_folder: str = "") -> TrainConfig:
    """The stage's `TrainConfig` (validated); `init_folder` is the folder its `init` resolves to."""
    kw = {k: stage.settings[k] for k in TRAIN_KEYS if k in stage.settings}
    if "snapshot_steps" in kw:
        kw["snapshot_steps"] = tuple(kw["snapshot_steps"])
    if "betas" in kw:
        kw["betas"] = tuple(kw["betas"])
    return TrainConfig(preset=stage.get("preset", "cpu"), init=init_folder, **kw)


def model_config(stage: Stage):
    """The stage's model config from its preset and model settings (a stage with `init` takes its folder's)."""
    from ..tokenizer.config import get_config

    given = {k: stage.settings[k] for k in MODEL_KEYS if k in stage.settings and k not in ("preset", "model")}
    return get_config(stage.get("preset", "cpu"), model=stage.get("model", "v2l"), **given)


def stage_folder(root: Path, stage: Stage) -> Path:
    return Path(root) / stage.name


def stage_state(root: Path, stage: Stage) -> str:
    """`done` (its final model is written), `started` (a run to resume) or `new`."""
    from .checkpoints import is_run

    folder = stage_folder(root, stage)
    stop = stage.get("stop_after")
    if stop is not None and _logged_steps(folder) >= stop:
        return "done"
    if (folder / "final" / "model.safetensors").is_file() and _logged_steps(folder) >= _steps(stage):
        return "done"
    return "started" if folder.is_dir() and is_run(folder) else "new"


def _steps(stage: Stage) -> int:
    return int(stage.get("steps", TrainConfig.steps))


def _logged_steps(folder: Path) -> int:
    try:
        rows = list(csv.DictReader(open(folder / "log.csv")))
        return int(float(rows[-1]["step"])) if rows else 0
    except (OSError, KeyError, ValueError):
        return 0


def init_folder(recipe: Recipe, stage: Stage, root: Path) -> str:
    """The folder the stage starts from: an earlier stage's final model (or, with `init_weights = "fp16"`, that
    model rounded to float16 as shipping writes it, which is how the shipped checkpoint's later stages started)."""
    init = stage.init
    if not init:
        return ""
    if init not in recipe.names:
        return init  # a tokenizer folder or `cpu`
    earlier = recipe.stage(init)
    final = stage_folder(root, earlier) / "final"
    if stage_state(root, earlier) != "done":
        raise V2LError(f"Stage {stage.name!r} starts from stage {init!r}, which has not finished: run it first.")
    if stage.get("init_weights", "as-trained") == "fp16":
        rounded = stage_folder(root, earlier) / "final-fp16"
        if not (rounded / "model.safetensors").is_file():
            export_fp16(final, rounded)
        return str(rounded)
    return str(final)


def stage_job(recipe: Recipe, stage: Stage, root: Path, data_root: str | None = None, stop_after: int | None = None):
    """The `TrainJob` of a stage: its run folder under `root`, resumed if it was started."""
    from .job import TrainJob

    folder = stage_folder(root, stage)
    state = stage_state(root, stage)
    init = init_folder(recipe, stage, root) if stage.init else ""
    cfg = train_config(stage, init_folder=init)
    data = {k: stage.settings[k] for k in DATA_KEYS if k in stage.settings}
    books = {k: stage.settings[k] for k in CODEBOOK_KEYS if k in stage.settings}
    record = {
        "recipe": recipe.name,
        "recipe_version": recipe.version,
        "recipe_sha256": recipe.sha256,
        "stage": stage.name,
        "index": recipe.index(stage.name) + 1,
        "settings": stage.settings,
    }
    return TrainJob(
        out=folder,
        train=cfg,
        model=None if init else model_config(stage),
        data_root=data_root,
        resume=state == "started",
        allow_nonempty=True,  # the stage folder is the recipe's own (its stage.json is written first)
        stop_after=stop_after or stage.get("stop_after"),
        record=record,
        **books,
        **data,
    )


def describe(recipe: Recipe, stage: Stage) -> str:
    """One line: `stage N: NAME — what it trains, from where, on what, for how long`."""
    s = stage.settings
    start = (
        f"from stage {stage.init}"
        if stage.init in recipe.names
        else (f"from {stage.init}" if stage.init else "from scratch")
    )
    if s.get("init_weights") == "fp16":
        start += " (fp16 weights)"
    what = "decoder only" if s.get("train_only") == "decoder" else "whole model"
    model = s.get("model", "v2l")
    preset = f"preset {s.get('preset', 'cpu')}" + (f", ch {s['ch']}" if "ch" in s else "")
    per_class = s.get("per_class", 0) or "all"
    data = f"{s.get('data', 'tiny-imagenet-200')} {s.get('classes', 'train')} classes, {per_class}/class"
    cfg = train_config(stage, init_folder="<init>" if stage.init else "")
    losses = f"perceptual {cfg.perceptual_weight:g} ({cfg.perceptual}), GAN {cfg.gan_weight:g} from {cfg.disc_start}"
    until = f", ending at step {s['stop_after']}" if s.get("stop_after") else ""
    return (
        f"stage {recipe.index(stage.name) + 1}: {stage.name} — {model}, {preset}, {what} {start}; {data}; "
        f"{cfg.steps} steps × {cfg.batch_size}{until}, lr {cfg.lr:g}, warm-up {cfg.warmup_steps}; {losses}; "
        f"{cfg.mixed_precision} precision"
    )


def run_recipe(
    recipe: Recipe,
    root: Path,
    stages: list[str] | None = None,
    data_root: str | None = None,
    stop_after: int | None = None,
    say: Callable[[str], None] = print,
) -> list[str]:
    """Run the recipe's stages in order (or the named ones), skipping finished stages and resuming a started one."""
    from .job import run_job

    done = []
    for stage in recipe.stages:
        if stages and stage.name not in stages:
            continue
        state = stage_state(root, stage)
        if state == "done":
            say(f"v2l recipe: {describe(recipe, stage)}: already done ({stage_folder(root, stage)})")
            done.append(stage.name)
            continue
        say(f"v2l recipe: {describe(recipe, stage)}" + (" (resuming)" if state == "started" else ""))
        rows = run_job(stage_job(recipe, stage, root, data_root=data_root, stop_after=stop_after), say=say)
        if stage_state(root, stage) != "done":
            last = rows[-1]["step"] if rows else "?"
            say(f"v2l recipe: stage {stage.name} stopped at step {last}; rerun to continue.")
            return done
        done.append(stage.name)
    return done


# ---- shipping ----------------------------------------------------------------------------------------------------


def export_fp16(final: Path, dest: Path) -> Path:
    """A trained model folder as shipped: float16 weights and the config without the local codebook path."""
    import torch
    from safetensors.torch import save_file

    from ..files import read_safetensors
    from ..paths import atomic_path
    from ..tokenizer.image_tokenizer import read_checkpoint_config

    final, dest = Path(final), Path(dest)
    meta = read_checkpoint_config(final)[0]
    used = meta.pop("codebook_folder", None)
    if used and "global_sha256" not in meta.get("codebook", {}):
        from ..codebooks import Codebook

        meta["codebook"]["global_sha256"] = Codebook.load(used).global_sha256
    sd = {k: v.to(torch.float16).contiguous() for k, v in read_safetensors(final / "model.safetensors").items()}
    dest.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest / "model.safetensors", replace=True) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt"})
    with atomic_path(dest / "config.json", replace=True) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return dest


def stage_record(recipe: Recipe, stage: Stage, root: Path) -> dict:
    """What a finished stage's run says of itself: the stage as the recipe resolved it, the trainer's own config,
    its log's first and last rows and median speed, the data it read and the machines it ran on."""
    from ..files import json_field, read_json

    folder = stage_folder(root, stage)
    fix = f"rerun the stage ({folder} is damaged)"
    run = read_json(folder / "config.json", dict, fix)
    for name in ("train", "model"):
        json_field(run, name, dict, folder / "config.json", fix)
    own = read_json(folder / "stage.json", dict, fix) if (folder / "stage.json").is_file() else {}
    rows = list(csv.DictReader(open(folder / "log.csv")))
    rates = sorted(float(r["images_per_s"]) for r in rows) or [0.0]
    return {
        "stage": stage.name,
        "settings": stage.settings,
        "train_config": run["train"],
        "model_config": run["model"],
        "data": own.get("data"),
        "images": own.get("images"),
        "steps": int(float(rows[-1]["step"])) if rows else 0,
        "images_seen": int(float(rows[-1]["step"])) * run["train"]["batch_size"] if rows else 0,
        "first_logged": {k: float(v) for k, v in rows[0].items()} if rows else {},
        "last_logged": {k: float(v) for k, v in rows[-1].items()} if rows else {},
        "images_per_s_median": rates[len(rates) // 2],
        "machines": own.get("machines", []),
    }


def recipe_record(recipe: Recipe) -> dict:
    return {
        "name": recipe.name,
        "version": recipe.version,
        "sha256": recipe.sha256,
        "file": f"src/v2l/resources/recipes/{recipe.source.name}" if recipe.source else None,
        "command": f"v2l recipe run {recipe.name}",
    }


def ship_recipe(recipe: Recipe, root: Path, dest: Path | None = None, say: Callable[[str], None] = print) -> Path:
    """Put the shipped stage's final model into `dest` (default: the package's checkpoint `ship_as`) as float16,
    with `training.json` written from the recipe and every stage's own record."""
    if not recipe.ship:
        raise ConfigError(f"Recipe {recipe.name} ships no stage (it has no `ship = STAGE`): nothing to ship.")
    if dest is None:
        if not recipe.ship_as:
            raise ConfigError(f"Recipe {recipe.name} names no package checkpoint (`ship_as`): pass -o FOLDER.")
        dest = RECIPES.parent / "checkpoints" / recipe.ship_as
    chain = []  # the shipped stage and every stage it started from, first first
    stage: Stage | None = recipe.stage(recipe.ship)
    while stage is not None:
        chain.insert(0, stage)
        stage = recipe.stage(stage.init) if stage.init in recipe.names else None
    for s in chain:
        if stage_state(root, s) != "done":
            raise V2LError(
                f"Stage {s.name!r} of recipe {recipe.name} has not finished under {root}: run "
                f"`v2l recipe run {recipe.name}` first."
            )
    from ..paths import write_json_atomic

    export_fp16(stage_folder(root, chain[-1]) / "final", Path(dest))
    training = {"recipe": recipe_record(recipe), "stages": [stage_record(recipe, s, root) for s in chain]}
    write_json_atomic(Path(dest) / "training.json", training)
    size = (Path(dest) / "model.safetensors").stat().st_size
    say(f"{dest}: {size / 2**20:.1f} MiB from stage {chain[-1].name} of recipe {recipe.name} ({len(chain)} stages)")
    return Path(dest)
