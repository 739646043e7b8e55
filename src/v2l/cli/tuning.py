"""`v2l tune` (LoRA on the LLM, paper appendix A), `v2l restore` (masked image restoration, paper §4.3, Fig. 8) and
`v2l generate` (images drawn from words by the tuned LLM). Both of the latter use the shipped adapter by default."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from ..backbones.adapters import DEFAULT_ADAPTER
from ..errors import OutputPathError, V2LError
from .app import DEFAULTS, DataRootOpt, DeviceOpt, DtypeOpt, JsonOpt, LLMOpt, app, setup_torch
from .tokenizer import check_images, save_image

TokOpt = Annotated[str, typer.Option("--tokenizer", "-t", help="Tokenizer folder, hub id, or 'cpu' (shipped).")]
TunedAdapterOpt = Annotated[
    str,
    typer.Option("--adapter", help="The LoRA adapter: a shipped name (v2l-cpu) or a folder written by `v2l tune`."),
]


def image_outputs(out: Path, names: list[str], what: str) -> list[Path]:
    """One image file for one output, else a folder of `NAME.png` files (refused if it holds one of them already as a
    folder, or is a file)."""
    from ..paths import check_output_dir
    from .tokenizer import check_image_output

    if len(names) == 1 and out.suffix:
        check_image_output(out, what)
        return [out]
    folder = check_output_dir(out, what)
    if folder.suffix and folder.suffix.lower() in (".png", ".jpg", ".jpeg"):
        raise OutputPathError(f"{what} {out}: several images are written, so pass a folder, not a file name.")
    return [folder / f"{n}.png" for n in names]


def prompt_outputs(
    prompts: list[str], samples: int, temperature: float, out: Path, what: str, short: str
) -> list[Path]:
    """The checks of a drawing verb's prompts and temperature (one sentence each), then one output per image."""
    from ..paths import safe_file_name

    for p in prompts:
        if not p.strip():
            raise V2LError(f"PROMPT is empty: give {what}.")
        if len(p) > 1000:
            raise V2LError(f"PROMPT is {len(p)} characters long: give at most 1,000 ({short}).")
    if not (0 <= temperature <= 100):
        raise V2LError(f"--temperature {temperature!r} is invalid: use a number from 0 (greedy) to 100.")
    names = [
        f"{safe_file_name(p.strip()[:40], 'PROMPT', fallback='prompt')}-{k}" for p in prompts for k in range(samples)
    ]
    return image_outputs(out, names, "--out")


def file_stems(paths: list[Path]) -> list[str]:
    from ..paths import safe_file_name

    seen: dict[str, int] = {}
    out = []
    for p in paths:
        s = safe_file_name(p.stem, "IMAGE", fallback="image")
        seen[s] = seen.get(s, 0) + 1
        out.append(s if seen[s] == 1 else f"{s}-{seen[s]}")
    return out


@app.command()
def restore(
    images: Annotated[list[Path], typer.Argument(help="Image files to restore.", show_default=False)],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Restored image (one input) or a folder of NAME.png.", show_default=False),
    ],
    mask: Annotated[float, typer.Option("--mask", help="Fraction of the local tokens masked at random.")] = 0.3,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the random mask (one mask for all images).")] = 0,
    save_masked: Annotated[
        Path | None,
        typer.Option(
            "--save-masked", help="Also write the paper's 'input': the masked ids set to 0, decoded (file or folder)."
        ),
    ] = None,
    frozen: Annotated[
        bool, typer.Option("--frozen", help="Restore with the frozen LLM in context (the denoising machinery).")
    ] = False,
    adapter: TunedAdapterOpt = DEFAULT_ADAPTER,
    tokenizer: TokOpt = "cpu",
    llm: LLMOpt = DEFAULTS["llm"],
    batch_size: Annotated[int, typer.Option(min=1, help="Images restored together.")] = 8,
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Masked image restoration (paper §4.3, Fig. 8): mask --mask of the local tokens, let the LoRA-tuned LLM predict
    them (the true ids teacher-forced, masked ones predicted in raster order), and decode."""
    from ..backbones import LanguageModel
    from ..backbones.adapters import check_adapter
    from ..paths import check_distinct
    from ..tuning.restore import random_mask, restore_images

    random_mask(256, mask, seed)  # the ratio is checked first
    names = file_stems(images)
    outs = image_outputs(out, names, "--out")
    masked_outs = image_outputs(save_masked, names, "--save-masked") if save_masked is not None else []
    check_distinct(
        {"--out": out, "--save-masked": save_masked} if save_masked is not None else {"--out": out},
        {f"IMAGE {i + 1}": p for i, p in enumerate(images)},
    )
    check_images(images)
    if not frozen:
        check_adapter(adapter)
    setup_torch(device, dtype)
    from tqdm.auto import tqdm

    from ..tokenizer import ImageTokenizer

    tok = ImageTokenizer.from_pretrained(tokenizer, progress=False)
    lm = LanguageModel.load(llm, progress=False, adapter=None if frozen else adapter)
    with tqdm(total=len(images), desc="restore" + (" (frozen)" if frozen else ""), unit="image") as bar:
        results = restore_images(
            tok, lm, [str(p) for p in images], mask, seed, frozen, batch_size, progress=None if frozen else bar.update
        )
        bar.update(len(images) - bar.n)
    from ..eval.metrics import psnr
    from ..tokenizer.image_tokenizer import to_tensor

    rows = []
    for i, r in enumerate(results):
        save_image(r.restored, outs[i])
        if masked_outs:
            save_image(r.masked, masked_outs[i])
        x, y, z = (to_tensor([im], tok.config.resolution) for im in (r.original, r.restored, r.masked))
        rows.append(
            {
                "image": str(images[i]),
                "restored": str(outs[i]),
                "masked": str(masked_outs[i]) if masked_outs else None,
                "psnr_restored": round(float(psnr(y, x)[0]), 3),
                "psnr_masked_input": round(float(psnr(z, x)[0]), 3),
                "masked_tokens_exact": round(r.accuracy, 4),
            }
        )
    if as_json:
        typer.echo(
            json.dumps(
                {"mask": mask, "seed": seed, "frozen": frozen, "adapter": None if frozen else adapter, "images": rows}
            )
        )
    else:
        for row in rows:
            typer.echo(
                f"{row['restored']}\t{row['psnr_restored']:.2f} dB (masked input {row['psnr_masked_input']:.2f} dB)"
            )


@app.command()
def generate(
    prompts: Annotated[
        list[str], typer.Argument(help="Words or class names to draw, such as goldfish.", show_default=False)
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="An image (one prompt, one sample) or a folder of NAME-K.png.", show_default=False
        ),
    ],
    samples: Annotated[int, typer.Option(min=1, max=64, help="Images per prompt.")] = 1,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0: greedy).")] = 1.0,
    top_k: Annotated[
        int, typer.Option("--top-k", min=0, help="Sample among the k likeliest local ids (0: all).")
    ] = 100,
    seed: Annotated[int, typer.Option(min=0, help="Sampling seed.")] = 0,
    adapter: TunedAdapterOpt = DEFAULT_ADAPTER,
    tokenizer: TokOpt = "cpu",
    llm: LLMOpt = DEFAULTS["llm"],
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Draw images from words (beyond the paper): the global words of the text as the prefix, 256 local ids sampled
    by the tuned LLM, then decoded."""
    from ..backbones import LanguageModel
    from ..backbones.adapters import check_adapter
    from ..tuning.restore import generate_images

    outs = prompt_outputs(
        prompts,
        samples,
        temperature,
        out,
        "the words or class name to draw, such as goldfish",
        "a few words or a class name",
    )
    check_adapter(adapter)
    setup_torch(device, dtype)
    from tqdm.auto import tqdm

    from ..tokenizer import ImageTokenizer

    tok = ImageTokenizer.from_pretrained(tokenizer, progress=False)
    lm = LanguageModel.load(llm, progress=False, adapter=adapter)
    with tqdm(total=len(prompts) * samples, desc="generate", unit="image") as bar:
        drawn = generate_images(tok, lm, prompts, samples, temperature, top_k, seed, progress=bar.update)
    rows, k = [], 0
    for p, group in zip(prompts, drawn, strict=True):
        for img, words, _ in group:
            save_image(img, outs[k])
            rows.append({"prompt": p, "image": str(outs[k]), "words": words[:8]})
            k += 1
    if as_json:
        typer.echo(
            json.dumps({"adapter": adapter, "temperature": temperature, "top_k": top_k, "seed": seed, "images": rows})
        )
    else:
        for row in rows:
            typer.echo(f"{row['image']}\t{', '.join(row['words'][:4])}")


def run_settings(out: Path) -> dict:
    """The settings a tuning run in `out` was started with (its config.json), or {} when it has none yet."""
    from ..files import read_json

    path = Path(out) / "config.json"
    if not path.is_file():
        return {}
    train = read_json(path, fix="pass the run's settings, or another --out").get("train")
    if not isinstance(train, dict):
        return {}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in train.items()}


def _given(**options) -> dict:
    return {k: v for k, v in options.items() if v is not None}


@app.command()
def tune(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default: runs/RECIPE).")] = None,
    recipe: Annotated[
        str | None, typer.Option("--recipe", help="A LoRA recipe: lora-cpu (shipped) or a .toml file.")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its newest checkpoint.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved settings; train nothing.")] = False,
    ship: Annotated[
        bool, typer.Option("--ship", help="Copy the finished run's adapter into the package (the recipe's ship_as).")
    ] = False,
    llm: Annotated[str | None, typer.Option("--llm", help="The LLM to tune (preset, folder, hub id).")] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", "-t", help="Tokenizer folder or 'cpu'.")] = None,
    data: Annotated[
        str | None, typer.Option(help="Data set name or an image folder (one sub-folder per class).")
    ] = None,
    classes: Annotated[int | None, typer.Option(help="How many training classes (a fixed sha256 rule).")] = None,
    per_class: Annotated[int | None, typer.Option("--per-class", help="Images per class (0: all).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the images.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Sequences per step (global).")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (paper: 3e-4).")] = None,
    r: Annotated[int | None, typer.Option("--r", help="LoRA rank (paper: 4).")] = None,
    alpha: Annotated[float | None, typer.Option(help="LoRA α (paper: 32).")] = None,
    dropout: Annotated[float | None, typer.Option(help="LoRA dropout.")] = None,
    targets: Annotated[
        str | None, typer.Option(help="Comma-separated modules to adapt (paper: q_proj,k_proj).")
    ] = None,
    mixed_precision: Annotated[
        str | None, typer.Option("--mixed-precision", help="no, bf16 (CPU bfloat16 units or GPU) or fp16 (GPU).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the LoRA initialisation and batch order.")] = None,
    data_root: DataRootOpt = None,
    allow_nonempty: Annotated[
        bool, typer.Option("--allow-nonempty", help="Write the run into a non-empty folder that is not a run.")
    ] = False,
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Tune the LLM with LoRA on V2L tokens (paper appendix A): global words as a text prefix, the loss on the 256
    local ids. Resumable; the adapter is written to OUT/final in peft's format."""
    from ..tuning import TuneConfig, load_tune_recipe, ship_adapter
    from ..tuning import tune as run_tune

    rec = load_tune_recipe(recipe) if recipe else None
    given = _given(
        llm=llm,
        tokenizer=tokenizer,
        data=data,
        classes=classes,
        per_class=per_class,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        r=r,
        alpha=alpha,
        dropout=dropout,
        mixed_precision=mixed_precision,
        seed=seed,
    )
    if targets is not None:
        given["targets"] = tuple(t.strip() for t in targets.split(",") if t.strip())
    base = rec.config.to_dict() if rec else {}
    if resume and not rec and out is not None:
        base = run_settings(out)  # `--resume` alone continues the run with its own settings
    cfg = TuneConfig(**{**base, **given})
    if data is not None and Path(data).is_dir():
        cfg = dataclasses.replace(cfg, split="")
    run = out or (Path("runs") / rec.name if rec else None)
    if run is None:
        raise V2LError("Pass --out for the run folder, or --recipe (its run goes to runs/RECIPE).")
    if ship:
        if rec is None:
            raise V2LError("--ship ships a recipe's adapter: pass --recipe too.")
        dest = ship_adapter(rec, run)
        typer.echo(json.dumps({"shipped": str(dest)}) if as_json else str(dest))
        return
    if dry_run:
        shown = {"recipe": rec.name if rec else None, "out": str(run), "config": cfg.to_dict()}
        typer.echo(json.dumps(shown) if as_json else json.dumps(shown, indent=1))
        return
    setup_torch(device, dtype)
    summary = run_tune(cfg, run, resume=resume, data_root=data_root, allow_nonempty=allow_nonempty)
    if as_json:
        typer.echo(json.dumps({"out": str(run), "adapter": str(run / "final"), **summary}))
    else:
        typer.echo(str(run / "final"))
