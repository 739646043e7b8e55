"""`v2l recipe list|show|run|ship`: training recipes as data (`v2l.training.recipe`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .app import DataRootOpt, DeviceOpt, DtypeOpt, JsonOpt, app, setup_torch

recipe_app = typer.Typer(no_args_is_help=True, help="Training recipes: every stage of a model in one TOML file.")
app.add_typer(recipe_app, name="recipe")

RecipeArg = Annotated[str, typer.Argument(help="A shipped recipe (see `v2l recipe list`) or a .toml file.")]
RootOpt = Annotated[
    Path | None, typer.Option("--runs", help="Folder of the recipe's stage runs (default runs/RECIPE).")
]


def _root(rec, runs: Path | None) -> Path:
    from ..training.recipe import default_root

    return Path(runs) if runs is not None else default_root(rec)


@recipe_app.command("list")
def recipe_list(json_out: JsonOpt = False) -> None:
    """The shipped recipes, one line each."""
    from ..training.recipe import list_recipes, load_recipe

    recipes = [load_recipe(n) for n in list_recipes()]
    if json_out:
        typer.echo(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "version": r.version,
                        "stages": [s.name for s in r.stages],
                        "description": r.description,
                    }
                    for r in recipes
                ],
                indent=2,
            )
        )
        return
    for r in recipes:
        typer.echo(
            f"{r.name} (v{r.version}, {len(r.stages)} stage{'s' if len(r.stages) != 1 else ''}): {r.description}"
        )


@recipe_app.command("show")
def recipe_show(name: RecipeArg, runs: RootOpt = None, json_out: JsonOpt = False) -> None:
    """Every stage of a recipe with its resolved settings and its state under --runs (new, started, done)."""
    from ..training.recipe import describe, load_recipe, stage_state

    rec = load_recipe(name)
    root = _root(rec, runs)
    if json_out:
        out = {
            "name": rec.name,
            "version": rec.version,
            "sha256": rec.sha256,
            "ship": rec.ship,
            "stages": [{"name": s.name, "settings": s.settings, "state": stage_state(root, s)} for s in rec.stages],
        }
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(f"recipe {rec.name} v{rec.version} ({rec.source}): {rec.description}")
    for s in rec.stages:
        typer.echo(f"{describe(rec, s)} [{stage_state(root, s)}]")


@recipe_app.command("run")
def recipe_run(
    name: RecipeArg,
    runs: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder of the recipe's stage runs (default runs/RECIPE).")
    ] = None,
    stage: Annotated[
        list[str] | None, typer.Option(help="Run only this stage (repeatable); its init stage must be done.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print one line per stage and run nothing.")] = False,
    stop_after: Annotated[
        int | None, typer.Option(min=1, help="End the running stage after this step; rerun to continue.")
    ] = None,
    data_root: DataRootOpt = None,
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Run every stage of a recipe in order into --runs/STAGE, skipping finished stages and resuming a killed one."""
    from ..training.recipe import describe, load_recipe, run_recipe

    rec = load_recipe(name)
    for s in stage or []:
        rec.stage(s)
    if dry_run:
        chosen = [s for s in rec.stages if not stage or s.name in stage]
        if as_json:
            typer.echo(
                json.dumps([{"stage": s.name, "line": describe(rec, s), "settings": s.settings} for s in chosen])
            )
            return
        for s in chosen:
            typer.echo(describe(rec, s))
        return
    setup_torch(device, dtype)
    done = run_recipe(
        rec,
        _root(rec, runs),
        stages=stage,
        data_root=data_root,
        stop_after=stop_after,
        say=lambda m: typer.echo(m, err=True),
    )
    if as_json:
        typer.echo(json.dumps({"recipe": rec.name, "runs": str(_root(rec, runs)), "done": done}))
        return
    typer.echo(f"recipe {rec.name}: {len(done)} of {len(stage or rec.stages)} stages done in {_root(rec, runs)}")


@recipe_app.command("ship")
def recipe_ship(
    name: RecipeArg,
    runs: RootOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where to write the shipped model (default: the package's checkpoint)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the recipe's shipped stage as a float16 checkpoint with training.json from the runs' own records."""
    from ..paths import check_output_dir
    from ..training.recipe import load_recipe, ship_recipe

    rec = load_recipe(name)
    dest = check_output_dir(out, "--out") if out is not None else None
    said = []
    folder = ship_recipe(rec, _root(rec, runs), dest, say=said.append)
    typer.echo(json.dumps({"recipe": rec.name, "out": str(folder)}) if as_json else "\n".join(said))
