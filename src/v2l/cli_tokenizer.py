"""CLI verbs of the tokenizer: train, tokenize, reconstruct, decode (registered on `v2l.cli.app`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .cli import DataRootOpt, LLMOpt, VLOpt, _setup_torch, app
from .errors import V2LError

TokOpt = Annotated[str, typer.Option("--tokenizer", "-t", help="Tokenizer folder, hub id, or 'cpu' (shipped).")]
SearchOpt = Annotated[str, typer.Option(help="Local-token search: exact, or hnsw (approximate, needs faiss-cpu).")]


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, logs, final/.")],
    preset: Annotated[str, typer.Option(help="Model preset: cpu, paper, tiny.")] = "cpu",
    steps: Annotated[int, typer.Option(min=1)] = 3000,
    batch_size: Annotated[int, typer.Option(min=1, help="Global batch size (split across processes).")] = 32,
    lr: float = 5e-4,
    warmup_steps: Annotated[int, typer.Option(min=0)] = 150,
    disc_start: Annotated[int, typer.Option(min=0, help="Step at which the GAN loss starts.")] = 2000,
    gan_weight: float = 0.1,
    perceptual_weight: float = 1.0,
    perceptual: Annotated[str, typer.Option(help="auto (real LPIPS if installed with its weights, else effnet), "
                                                 "lpips, effnet or stlpips.")] = "auto",
    projector: Annotated[bool, typer.Option(help="Trainable projector (P-LLM); --no-projector for Table 6.")] = True,
    codebook_source: Annotated[str, typer.Option(help="vl (VL text embeddings) or llm (raw LLM embeddings).")] = "vl",
    cross_attention: Annotated[str, typer.Option(help="after, before or none.")] = "after",
    llm: LLMOpt = "smollm2-135m", vl: VLOpt = "conse",
    codebook: Annotated[Path | None, typer.Option(help="Codebook folder (default: cached/shipped for --llm/--vl).")]
    = None,
    data: Annotated[str, typer.Option(help="Data set under the data root, or an image folder.")] = "tiny-imagenet-200",
    split: str = "train",
    classes: Annotated[str, typer.Option(help="train (v2l's 160 classes), heldout or all.")] = "train",
    per_class: Annotated[int, typer.Option(min=0, help="Images per class (0 = all).")] = 0,
    mixed_precision: Annotated[str, typer.Option(help="no, bf16 or fp16 (GPU).")] = "no",
    checkpoint_every: int = 250, log_every: int = 10, seed: int = 0,
    snapshot: Annotated[list[int] | None, typer.Option(help="Also export the model at this step (repeatable).")]
    = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its latest checkpoint.")] = False,
    stop_after: Annotated[int | None, typer.Option(help="End after this step (the schedule still spans --steps); "
                                                        "--resume continues.")] = None,
    data_root: DataRootOpt = None,
) -> None:
    """Train the V2L tokenizer (Accelerate: run under `accelerate launch` for several processes)."""
    from .backbones import load_vl
    from .codebook import Codebook, ensure_local_embeddings, find_codebook
    from .image_tokenizer import local_codebook_for, local_exclusion
    from .losses import resolve_perceptual
    from .model import get_config
    from .train_data import training_data
    from .trainer import TrainConfig
    from .trainer import train as run_training

    _setup_torch()
    resolve_perceptual(perceptual)  # a bad choice fails now, not after the data is embedded
    model_cfg = get_config(preset, projector=projector, codebook_source=codebook_source,
                           cross_attention=cross_attention)
    cfg = TrainConfig(preset=preset, steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps,
                      disc_start=disc_start, gan_weight=gan_weight, perceptual_weight=perceptual_weight, seed=seed,
                      perceptual=perceptual, mixed_precision=mixed_precision, checkpoint_every=checkpoint_every,
                      log_every=log_every,
                      snapshot_steps=tuple(snapshot or ()))
    vl_model = load_vl(vl)
    cb = Codebook.load(codebook or find_codebook(llm, vl, vl=vl_model), vl=vl_model)
    cb = ensure_local_embeddings(cb, vl_model)
    train_set = training_data(vl_model, cb, model_cfg.resolution, model_cfg.num_global, data=data,
                              split=split or None, classes=classes, per_class=per_class, data_root=data_root)
    typer.echo(f"v2l: training on {len(train_set)} images of {data}/{split} ({classes} classes)", err=True)
    rows = run_training(cfg, model_cfg, cb, train_set, out, resume=resume, stop_after=stop_after,
                        exclude=local_exclusion(cb.local_kinds) if cb.local_kinds else None,
                        local_codebook=local_codebook_for(model_cfg, cb))
    if rows:
        last = rows[-1]
        done = "final model in " + str(out / "final") if last["step"] == steps else "stopped; --resume continues"
        typer.echo(f"step {last['step']}: loss {last['loss']:.4f}, rec {last['rec']:.4f}; {done}")


def _check_images(images: list[Path]) -> None:
    from .images import load_image

    for p in images:  # every input is checked before any model loads or any output is written
        load_image(p)


@app.command()
def tokenize(images: Annotated[list[Path], typer.Argument(show_default=False)], tokenizer: TokOpt = "cpu",
             as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
             out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the JSON here.")] = None,
             search: SearchOpt = "exact") -> None:
    """Print each image's global words and its grid of local LLM tokens."""
    from .image_tokenizer import ImageTokenizer
    from .paths import write_json_atomic

    _setup_torch()
    _check_images(images)
    tok = ImageTokenizer.from_pretrained(tokenizer, search=search)
    rows = tok.tokenize([str(p) for p in images])
    payload = [{"image": str(p), **r.to_json()} for p, r in zip(images, rows, strict=True)]
    if out:
        write_json_atomic(out, payload[0] if len(payload) == 1 else payload)
    if as_json:
        typer.echo(json.dumps(payload, ensure_ascii=False))
        return
    for p, r in zip(images, rows, strict=True):
        typer.echo(f"{p}\n  global: {', '.join(r.global_words)}\n  local ({len(r.local_ids)}×{len(r.local_ids[0])}):")
        for row in r.local_tokens:
            typer.echo("    " + " ".join(repr(t)[1:-1] for t in row))


@app.command()
def reconstruct(image: Path, out: Annotated[Path, typer.Option("--out", "-o")], tokenizer: TokOpt = "cpu",
                search: SearchOpt = "exact") -> None:
    """Tokenize an image and decode it back (at the preset resolution)."""
    from .image_tokenizer import ImageTokenizer

    _setup_torch()
    _check_images([image])
    _check_output(out)
    img = ImageTokenizer.from_pretrained(tokenizer, search=search).reconstruct([str(image)])[0]
    _save_image(img, out)
    typer.echo(str(out))


@app.command()
def decode(tokens: Annotated[Path, typer.Argument(help="JSON from `v2l tokenize --out`.")],
           out: Annotated[Path, typer.Option("--out", "-o")], tokenizer: TokOpt = "cpu") -> None:
    """Decode a tokens file (local ids + global ids) into an image."""
    from .image_tokenizer import ImageTokenizer

    _setup_torch()
    try:
        payload = json.loads(tokens.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise V2LError(f"{tokens} is not a JSON tokens file ({e}): write one with `v2l tokenize IMAGE -o FILE`.") from e
    items = payload if isinstance(payload, list) else [payload]
    if len(items) != 1 or not isinstance(items[0], dict) or "local_ids" not in items[0]:
        raise V2LError(f"{tokens} must hold one object with local_ids (and global_ids): from `v2l tokenize -o`.")
    _check_output(out)
    img = ImageTokenizer.from_pretrained(tokenizer).decode(items)[0]
    _save_image(img, out)
    typer.echo(str(out))


def _check_output(out: Path) -> None:
    from PIL import Image

    ext = out.suffix.lower()
    if ext not in Image.registered_extensions():
        raise V2LError(f"--out {out}: use an image file name such as out.png.")


def _save_image(img, out: Path) -> None:
    from PIL import Image

    from .paths import atomic_path

    fmt = Image.registered_extensions()[out.suffix.lower()]
    with atomic_path(out) as tmp:
        img.save(tmp, format=fmt)
