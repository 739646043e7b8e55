"""`v2l seed …`: SEED (Ge et al. 2023) in v2l's framework — caption images and draw text with SEED-LLM, encode
and reconstruct through SEED codes, and train or ship a SEED checkpoint (`v2l seed train`, also reached as
`v2l train --model seed`). Every verb uses the shipped `seed-cpu` by default, so it runs right after set-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import V2LError
from .app import DataRootOpt, DeviceOpt, DtypeOpt, JsonOpt, app, setup_torch
from .tokenizer import check_images, save_image

seed_app = typer.Typer(
    no_args_is_help=True, help="SEED: a causal, semantic image tokenizer and an LLM tuned to read and write its codes."
)
app.add_typer(seed_app, name="seed")

SeedOpt = Annotated[
    str, typer.Option("--seed-model", help="SEED checkpoint: a shipped name (seed-cpu) or a folder from seed train.")
]


def seed_runtime(device: str, dtype: str) -> None:
    """SEED's own networks run on the CPU in this version (a few million parameters): `auto` means the CPU here, and
    CUDA is one sentence."""
    if device.strip().lower().startswith("cuda"):
        raise V2LError(f"--device {device}: SEED runs on the CPU in this version; use --device cpu (or auto).")
    setup_torch("cpu", "float32" if dtype == "auto" else dtype)


def _load(name: str, device: str = "auto", dtype: str = "auto"):
    from ..seed.model import SeedModel, seed_folder

    seed_folder(name)  # a wrong name or a V2L folder is one sentence before anything loads
    seed_runtime(device, dtype)
    return SeedModel.from_pretrained(name)


@seed_app.command("caption")
def caption(
    images: Annotated[list[Path], typer.Argument(help="Image files to caption.", show_default=False)],
    seed_model: SeedOpt = "seed-cpu",
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """One caption per image, one per line (SEED-LLM reads the image's 32 codes and continues "A photo of")."""
    from ..data.images import load_image

    check_images(images)
    model = _load(seed_model, device, dtype)
    caps = model.caption([load_image(p) for p in images])
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "seed": seed_model,
                    "captions": [{"image": str(p), "caption": c} for p, c in zip(images, caps, strict=True)],
                }
            )
        )
        return
    for c in caps:
        typer.echo(" ".join(c.split()))


@seed_app.command("encode")
def encode(
    images: Annotated[list[Path], typer.Argument(help="Image files to encode.", show_default=False)],
    seed_model: SeedOpt = "seed-cpu",
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """The 32 SEED codes of each image (IMAGE<TAB>codes), in causal order."""
    from ..data.images import load_image
    from ..paths import line_safe

    check_images(images)
    model = _load(seed_model, device, dtype)
    codes = model.encode([load_image(p) for p in images]).tolist()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "seed": seed_model,
                    "codes": [{"image": str(p), "codes": c} for p, c in zip(images, codes, strict=True)],
                }
            )
        )
        return
    for p, c in zip(images, codes, strict=True):
        typer.echo(f"{line_safe(p)}\t{' '.join(map(str, c))}")


@seed_app.command("reconstruct")
def reconstruct(
    images: Annotated[list[Path], typer.Argument(help="Image files to reconstruct.", show_default=False)],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="An image (one input) or a folder of NAME.png.", show_default=False)
    ],
    seed_model: SeedOpt = "seed-cpu",
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Images drawn from their SEED codes alone (through the V2L decoder: SEED keeps meaning, not pixels)."""
    from ..data.images import load_image
    from .tuning import file_stems, image_outputs

    check_images(images)
    outs = image_outputs(out, file_stems(images), "--out")
    model = _load(seed_model, device, dtype)
    drawn = model.reconstruct([load_image(p) for p in images])
    for img, path in zip(drawn, outs, strict=True):
        save_image(img, path)
    if as_json:
        typer.echo(json.dumps({"seed_model": seed_model, "images": [str(p) for p in outs]}))


@seed_app.command("generate")
def generate(
    prompts: Annotated[list[str], typer.Argument(help="Texts to draw, such as 'a goldfish'.", show_default=False)],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="An image (one prompt, one sample) or a folder of NAME-K.png.", show_default=False
        ),
    ],
    samples: Annotated[int, typer.Option(min=1, max=64, help="Images per prompt.")] = 1,
    temperature: Annotated[float, typer.Option(help="Sampling temperature of the codes (0: greedy).")] = 0.0,
    top_k: Annotated[int, typer.Option("--top-k", min=0, help="Sample among the k likeliest codes (0: all).")] = 0,
    seed: Annotated[int, typer.Option(min=0, help="Sampling seed.")] = 0,
    seed_model: SeedOpt = "seed-cpu",
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Text to image: SEED-LLM writes 32 codes after "Generate an image: TEXT", the SEED decoder draws them."""
    from .tuning import prompt_outputs

    if samples > 1 and temperature == 0:
        raise V2LError("--samples above 1 with --temperature 0 draws the same image each time: pass --temperature 1.")
    outs = prompt_outputs(
        prompts, samples, temperature, out, "the text to draw, such as 'a goldfish'", "a short description"
    )
    model = _load(seed_model, device, dtype)
    drawn = model.generate(prompts, samples, temperature, top_k, seed)
    rows, k = [], 0
    for p, group in zip(prompts, drawn, strict=True):
        for img, codes in group:
            save_image(img, outs[k])
            rows.append({"prompt": p, "image": str(outs[k]), "codes": codes})
            k += 1
    if as_json:
        typer.echo(
            json.dumps(
                {"seed_model": seed_model, "temperature": temperature, "top_k": top_k, "seed": seed, "images": rows}
            )
        )
    else:
        for row in rows:
            typer.echo(row["image"])


@seed_app.command("train")
def train(
    recipe: Annotated[str, typer.Option(help="A SEED recipe: a shipped name (seed-cpu) or a .toml file.")] = "seed-cpu",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default runs/RECIPE).")] = None,
    stage: Annotated[
        str | None, typer.Option(help="tokenizer (stages I and II) or llm (stage III); default: all, in order.")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its newest intact checkpoints.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the resolved recipe and stop.")] = False,
    ship: Annotated[bool, typer.Option(help="Copy the run's final/ into the package as the recipe's ship_as.")] = False,
    stop_after: Annotated[
        int | None, typer.Option(min=1, help="End a stage after this step (--resume continues).")
    ] = None,
    data_root: DataRootOpt = None,
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Train SEED's three stages from a recipe: the Causal Q-Former, the codebook with its decoders, SEED-LLM."""
    run_seed_recipe(recipe, out, stage, resume, dry_run, ship, stop_after, data_root, as_json, device, dtype)


def run_seed_recipe(
    recipe, out, stage, resume, dry_run, ship, stop_after, data_root, as_json, device="auto", dtype="auto"
) -> None:
    from ..seed.recipe import load_seed_recipe, run_seed, ship_seed

    rec = load_seed_recipe(recipe)
    if stage not in (None, "tokenizer", "llm"):
        raise V2LError(f"--stage {stage!r} is not a SEED stage: use tokenizer (stages I and II) or llm (stage III).")
    root = Path(out) if out is not None else Path("runs") / rec.name
    if dry_run:
        typer.echo(json.dumps({"run": str(root), **rec.to_dict()}, indent=None if as_json else 1))
        return
    if ship:
        target = ship_seed(rec, root)
        typer.echo(json.dumps({"shipped": str(target)}) if as_json else f"shipped {root / 'final'} as {target}")
        return
    if root.exists() and not root.is_dir():
        raise V2LError(f"--out {root} is a file: pass a folder for the run.")
    if root.is_dir() and any(root.iterdir()) and not (root / "recipe.json").is_file():
        raise V2LError(f"--out {root} is not empty and not a SEED run: pass an empty or new folder.")
    if (root / "recipe.json").is_file():
        from ..files import read_json

        was = read_json(root / "recipe.json", fix="pass another --out").get("sha256")
        if not resume:
            raise V2LError(f"--out {root} holds a SEED run already: pass --resume to continue it, or another --out.")
        if was != rec.sha256:
            raise V2LError(
                f"--resume: {root} was started with another version of the recipe {rec.name}: pass another --out."
            )
    seed_runtime(device, dtype)
    records = run_seed(rec, root, stage, resume, True, data_root, stop_after, say=lambda m: typer.echo(m, err=True))
    final = root / "final"
    if as_json:
        typer.echo(
            json.dumps(
                {"run": str(root), "final": str(final) if final.is_dir() else None, "records": records}, default=str
            )
        )
    else:
        typer.echo(f"SEED checkpoint in {final}" if final.is_dir() else f"stopped; {root} continues with --resume")
