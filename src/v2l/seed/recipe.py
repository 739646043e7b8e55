"""SEED recipes: the three stages as data in one TOML file (`resources/recipes/seed/`), like the LoRA recipes.

    v2l train --model seed --recipe seed-cpu --dry-run    # the resolved settings
    v2l train --model seed --recipe seed-cpu              # runs/seed-cpu/{tokenizer,llm,final}; --resume after a kill
    v2l train --model seed --recipe seed-cpu --ship       # final/ into the package as `ship_as`

A recipe has `format`, `kind = "seed"`, `name`, `version`, `description`, `ship_as`, `preset` (a SEED preset),
`per_image` (texts per image in stage III) and the tables `[model]` (`SeedConfig` fields over the preset),
`[tokenizer]` (`SeedTrainConfig`) and `[llm]` (`SeedLLMConfig`). A wrong key or type is one sentence naming the file.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, V2LError
from ..files import read_json
from ..paths import atomic_path, text_sha256, write_json_atomic
from ..tuning.recipe import read_recipe, typed_value
from .config import SEED_PRESETS, SeedConfig, SeedLLMConfig, SeedTrainConfig

RECIPES = Path(__file__).resolve().parent.parent / "resources" / "recipes" / "seed"
TOP = {
    "format",
    "kind",
    "name",
    "version",
    "description",
    "ship_as",
    "preset",
    "per_image",
    "model",
    "tokenizer",
    "llm",
}
TABLES = {"model": SeedConfig, "tokenizer": SeedTrainConfig, "llm": SeedLLMConfig}


@dataclass(frozen=True)
class SeedRecipe:
    name: str
    description: str
    ship_as: str
    per_image: int
    model: SeedConfig
    tokenizer: SeedTrainConfig
    llm: SeedLLMConfig
    path: Path
    sha256: str

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "ship_as": self.ship_as,
            "per_image": self.per_image,
            "model": self.model.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "llm": self.llm.to_dict(),
            "sha256": self.sha256,
        }


def list_seed_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.toml"))


def _table(path: Path, raw: dict, key: str, base):
    table = raw.get(key, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{key}] must be a table of {TABLES[key].__name__} fields.")
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(TABLES[key])}
    bad = sorted(set(table) - set(fields))
    if bad:
        raise ConfigError(f"{path}: [{key}] has unknown fields {bad}; see {TABLES[key].__name__}.")
    where = f"{path} [{key}]"
    values = {k: typed_value(k, v, fields[k], where) for k, v in table.items()}
    return TABLES[key](**{**fields, **values})


def load_seed_recipe(name_or_file: str | Path) -> SeedRecipe:
    path, raw = read_recipe(name_or_file, RECIPES, "seed", "SEED", TOP)
    preset = raw.get("preset", "cpu")
    if not isinstance(preset, str):
        raise ConfigError(f"{path}: preset = {preset!r} must be a SEED preset name (cpu, paper, tiny).")
    per_image = raw.get("per_image", 2)
    if isinstance(per_image, bool) or not isinstance(per_image, int) or per_image < 1:
        raise ConfigError(f"{path}: per_image = {per_image!r} must be a positive number of texts per image.")
    for key in ("name", "description", "ship_as"):
        if not isinstance(raw.get(key, ""), str):
            raise ConfigError(f"{path}: {key} must be a string.")
    return SeedRecipe(
        raw.get("name", path.stem),
        raw.get("description", ""),
        raw.get("ship_as", ""),
        per_image,
        _table(path, raw, "model", SEED_PRESETS.get(preset)),
        _table(path, raw, "tokenizer", SeedTrainConfig()),
        _table(path, raw, "llm", SeedLLMConfig()),
        path,
        text_sha256(path.read_text()),
    )


def run_seed(
    recipe: SeedRecipe,
    out: str | Path,
    stage: str | None = None,
    resume: bool = False,
    progress: bool = True,
    data_root=None,
    stop_after: int | None = None,
    say=lambda m: print(m, file=sys.stderr),
    images=None,
) -> dict:
    """Run the recipe's stages into `out` (`tokenizer/`, `llm/`, `final/`); `stage` = "tokenizer" or "llm" runs one.
    A stage whose result is already in `out` is not run again. `images` (a `v2l.seed.data.SeedImages`) replaces the
    recipe's training images. Returns the run's records."""
    from ..backbones.vision_language import load_vl
    from ..files import read_safetensors
    from ..tokenizer import ImageTokenizer
    from ..tuning.data import tokenizer_fingerprint
    from .data import SeedData, training_images
    from .model import SUBSTITUTIONS, SeedModel
    from .network import SeedNet
    from .train import code_usage, train_tokenizer
    from .tune_llm import train_llm

    if stage not in (None, "tokenizer", "llm"):
        raise V2LError(f"--stage {stage!r} is not a SEED stage: use tokenizer (stages I and II) or llm (stage III).")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "recipe.json", recipe.to_dict())
    cfg, tcfg = recipe.model, recipe.tokenizer
    tok = ImageTokenizer.from_pretrained(cfg.tokenizer, vl=load_vl(cfg.vl) if cfg.vl else None, progress=progress)
    vl = tok.vl
    if images is None:
        images = training_images(tcfg.per_class, tcfg.coco, data_root)
    data = SeedData(images, vl, tok, progress)
    done = out / "tokenizer" / "done.json"
    h = tok.config.latent_size
    if done.is_file():
        net = SeedNet(cfg, data.features.shape[-1], data.text_emb.shape[-1], h * h, tok.config.embed_dim)
        net.load_state_dict(read_safetensors(out / "tokenizer" / "seed.safetensors"))
        records = read_json(done)
    elif stage == "llm":
        raise V2LError(f"--stage llm needs stages I and II first: run `v2l train --model seed --recipe {recipe.name}`.")
    else:
        net, records = train_tokenizer(cfg, tcfg, out / "tokenizer", data, vl, tok, resume, progress, stop_after, say)
        if stop_after is not None and len(records) < 2:
            return {"stopped": True}
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "tokenizer" / "seed.safetensors"))
        records["code_usage_train"] = code_usage(net, data.features)
        write_json_atomic(done, records)
    net.eval()
    if stage == "tokenizer":
        return records
    llm_done = out / "llm" / "final" / "v2l_adapter.json"
    if not llm_done.is_file():
        import torch

        with torch.inference_mode():
            codes = torch.cat([net.encode(data.features[s : s + 256].float()) for s in range(0, len(data), 256)])
        records["llm"] = train_llm(
            recipe.llm,
            out / "llm",
            codes,
            data.images.texts,
            cfg.codebook_size,
            recipe.per_image,
            resume or (out / "llm" / "latest.json").is_file(),
            progress,
            stop_after,
            say,
        )
        if not llm_done.is_file():
            return records
    else:
        records["llm"] = read_json(llm_done).get("training")
    meta = {
        "format": 1,
        "kind": "seed",
        "config": cfg.to_dict(),
        "shape": net.shape,
        "vl": vl.spec,
        "tokenizer": {"name": str(cfg.tokenizer), "fingerprint": tokenizer_fingerprint(tok)},
        "recipe": {"name": recipe.name, "sha256": recipe.sha256},
        "data": {"images": len(data), "name": data.images.name},
        "training": records,
        "code_usage": records.get("code_usage_train"),
        "substitutions": list(SUBSTITUTIONS),
    }
    SeedModel(net, vl, tok, meta).save_pretrained(out / "final", llm_folder=out / "llm" / "final")
    say(f"v2l: SEED checkpoint written to {out / 'final'}")
    return records


def ship_seed(recipe: SeedRecipe, out: str | Path) -> Path:
    """Copy the run's `final/` into the package as the recipe's `ship_as` (checked to load first)."""
    from .model import SHIPPED, SeedModel

    final = Path(out) / "final"
    if not recipe.ship_as:
        raise V2LError(f"The recipe {recipe.name} has no ship_as: name the shipped checkpoint in the recipe.")
    SeedModel.from_pretrained(final)
    target = SHIPPED / recipe.ship_as
    with atomic_path(target, replace=True) as tmp:
        shutil.copytree(final, tmp)
        for junk in tmp.rglob("README.md"):
            junk.unlink()
    return target
