"""`v2l train`: train the V2L tokenizer (Accelerate; run under `accelerate launch -m v2l train` for DDP).

Defaults come from `TrainConfig` and the model preset; every setting and the run folder are checked before any model
or data loads, so a typo fails in a second with one sentence instead of after minutes of work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..tokenizer.config import TokenizerConfig as M
from ..training.config import TrainConfig as T
from .app import DEFAULTS, DataRootOpt, LLMOpt, VLOpt, app, setup_torch


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, logs, final/.")],
    preset: Annotated[str, typer.Option(help="Model preset (see `v2l info --list`): cpu, paper, tiny.")] = T.preset,
    steps: Annotated[
        int,
        typer.Option(
            min=1,
            help="Steps the schedule spans; with --resume, a larger value than the "
            "run's extends its schedule from where it stopped.",
        ),
    ] = T.steps,
    batch_size: Annotated[int, typer.Option(min=1, help="Global batch size (split across processes).")] = T.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate (Adam).")] = T.lr,
    warmup_steps: Annotated[int, typer.Option(min=0)] = T.warmup_steps,
    disc_start: Annotated[int, typer.Option(min=0, help="Step at which the GAN loss starts.")] = T.disc_start,
    gan_weight: Annotated[float, typer.Option(min=0.0)] = T.gan_weight,
    perceptual_weight: Annotated[float, typer.Option(min=0.0)] = T.perceptual_weight,
    lecam_weight: Annotated[
        float, typer.Option(min=0.0, help="LeCAM regulariser on the discriminator (SPAE §4.1: 1e-4); 0 = off.")
    ] = T.lecam_weight,
    perceptual: Annotated[
        str,
        typer.Option(help="auto (real LPIPS if installed with its weights, else effnet), lpips, effnet or stlpips."),
    ] = T.perceptual,
    model: Annotated[
        str, typer.Option(help="v2l (the paper's tokenizer) or a baseline: vqgan-llm, lqae, spae.")
    ] = M.model,
    projector: Annotated[
        bool | None, typer.Option(help="Trainable projector (P-LLM; default on for v2l); --no-projector for Table 6.")
    ] = None,
    codebook_source: Annotated[
        str | None, typer.Option(help="vl (VL text embeddings, v2l's default) or llm (raw LLM embeddings).")
    ] = None,
    cross_attention: Annotated[str | None, typer.Option(help="after (v2l's default), before or none.")] = None,
    ch: Annotated[
        int | None,
        typer.Option(
            min=1, help="Base channel count of the encoder and decoder (the preset's by default; cpu: 32, paper: 128)."
        ),
    ] = None,
    num_res_blocks: Annotated[
        int | None,
        typer.Option(min=1, help="Residual blocks per resolution (the preset's by default; cpu: 1, paper: 2)."),
    ] = None,
    llm: LLMOpt = DEFAULTS["llm"],
    vl: VLOpt = DEFAULTS["vl"],
    codebook: Annotated[
        Path | None, typer.Option(help="Codebook folder (default: cached/shipped for --llm/--vl).")
    ] = None,
    data: Annotated[str, typer.Option(help="Data set under the data root, or an image folder.")] = "tiny-imagenet-200",
    split: str = "train",
    classes: Annotated[str, typer.Option(help="train (v2l's 160 classes), heldout or all.")] = "train",
    per_class: Annotated[int, typer.Option(min=0, help="Images per class (0 = all).")] = 0,
    mixed_precision: Annotated[str, typer.Option(help="no, bf16 or fp16 (GPU).")] = T.mixed_precision,
    checkpoint_every: Annotated[int, typer.Option(min=1)] = T.checkpoint_every,
    log_every: Annotated[int, typer.Option(min=1)] = T.log_every,
    seed: Annotated[int, typer.Option(min=0)] = T.seed,
    snapshot: Annotated[list[int] | None, typer.Option(help="Also export the model at this step (repeatable).")] = None,
    init: Annotated[
        str | None,
        typer.Option(
            help="Start from this tokenizer folder's weights (or cpu, the shipped "
            "one); the model, its settings and codebook come from it."
        ),
    ] = None,
    train_only: Annotated[
        str,
        typer.Option(
            help="all, or decoder (with --init: the encoder stays frozen and each "
            "image's local tokens are computed once)."
        ),
    ] = T.train_only,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its newest intact checkpoint.")] = False,
    allow_nonempty: Annotated[
        bool, typer.Option(help="Write the run into a non-empty folder that is not a run (nothing in it is removed).")
    ] = False,
    stop_after: Annotated[
        int | None,
        typer.Option(min=1, help="End after this step (the schedule still spans --steps); --resume continues."),
    ] = None,
    data_root: DataRootOpt = None,
) -> None:
    """Train the V2L tokenizer or a baseline (`--model`; Accelerate: run under `accelerate launch -m v2l train` for
    several processes)."""
    from ..tokenizer.config import get_config
    from ..training import TrainConfig, check_run_folder, resolve_perceptual

    # 1. Everything that can be checked without loading a model or data.
    given = {
        "projector": projector,
        "codebook_source": codebook_source,
        "cross_attention": cross_attention,
        "ch": ch,
        "num_res_blocks": num_res_blocks,
    }
    if init:
        model_cfg = _init_model_config(init, {**given, "model": model if model != M.model else None})
    else:
        model_cfg = get_config(preset, model=model, **{k: v for k, v in given.items() if v is not None})
    cfg = TrainConfig(
        init=init or "",
        train_only=train_only,
        preset=preset,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        disc_start=disc_start,
        gan_weight=gan_weight,
        perceptual_weight=perceptual_weight,
        seed=seed,
        lecam_weight=lecam_weight,
        perceptual=perceptual,
        mixed_precision=mixed_precision,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        snapshot_steps=tuple(snapshot or ()),
    )
    resolve_perceptual(perceptual)  # `lpips` without its weights fails now, not after the data is embedded
    out = check_run_folder(out, resume=resume, allow_nonempty=allow_nonempty)
    setup_torch()

    # 2. Models, codebook, data; then the run.
    from ..backbones import load_vl
    from ..codebooks import Codebook, ensure_local_embeddings, find_codebook
    from ..tokenizer import local_codebook_for, local_tokens_for
    from ..training import train as run_training
    from ..training import training_data
    from ..training.trainer import run_codebook

    key = None
    if resume and codebook is None and (run := run_codebook(out)) is not None:
        llm, vl, key = run  # the run's own codebook, even if the default has changed since it started
    if init:  # the model's own VL model and codebook, checked as `from_pretrained` checks them
        from ..tokenizer import ImageTokenizer

        start = ImageTokenizer.from_pretrained(init, codebook=codebook)
        vl_model, cb = start.vl, start.codebook
    else:
        vl_model = load_vl(vl)
        cb = Codebook.load(codebook or find_codebook(llm, vl, vl=vl_model, key=key), vl=vl_model)
        cb = ensure_local_embeddings(cb, vl_model)
    train_set = training_data(
        vl_model,
        cb,
        model_cfg.resolution,
        model_cfg.num_global,
        data=data,
        split=split or None,
        classes=classes,
        per_class=per_class,
        data_root=data_root,
    )
    typer.echo(f"v2l: training on {len(train_set)} images of {data}/{split} ({classes} classes)", err=True)
    rows = run_training(
        cfg,
        model_cfg,
        cb,
        train_set,
        out,
        resume=resume,
        stop_after=stop_after,
        exclude=local_tokens_for(model_cfg, cb)[0],
        local_codebook=local_codebook_for(model_cfg, cb),
        allow_nonempty=allow_nonempty,
    )
    if rows:
        last = rows[-1]
        done = "final model in " + str(out / "final") if last["step"] == steps else "stopped; --resume continues"
        typer.echo(f"step {last['step']}: loss {last['loss']:.4f}, rec {last['rec']:.4f}; {done}")


def _init_model_config(init: str, given: dict):
    """The model config of `--init`'s folder; a model option given beside it must agree (one sentence if not)."""
    import json

    from ..errors import ConfigError
    from ..tokenizer.image_tokenizer import resolve_checkpoint

    cfg = M.from_dict(json.loads((resolve_checkpoint(init) / "config.json").read_text())["model_config"])
    for name, value in given.items():
        if value is not None and getattr(cfg, name) != value:
            raise ConfigError(
                f"--{name.replace('_', '-')} {value!r}: the model of --init {init} has "
                f"{getattr(cfg, name)!r}; leave the option out (it comes from --init)."
            )
    return cfg
