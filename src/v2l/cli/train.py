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
from .app import DEFAULTS, DataRootOpt, DeviceOpt, DtypeOpt, JsonOpt, LLMOpt, VLOpt, app, setup_torch


@app.command()
def train(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Run folder: checkpoints, logs, final/ (with --recipe: the folder of its stages, "
            "default runs/RECIPE).",
        ),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(help="Train a stage of this recipe (a shipped name, see `v2l recipe list`, or a .toml file)."),
    ] = None,
    stage: Annotated[
        str | None, typer.Option(help="The recipe's stage to train (one-stage recipes: optional).")
    ] = None,
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
    warmup_steps: Annotated[
        int, typer.Option(min=0, help="Linear warm-up steps before the half-cycle cosine (paper: 5 of 100 epochs).")
    ] = T.warmup_steps,
    disc_start: Annotated[int, typer.Option(min=0, help="Step at which the GAN loss starts.")] = T.disc_start,
    gan_weight: Annotated[
        float, typer.Option(min=0.0, help="λ2 of §3.2: the GAN loss weight (times the adaptive weight); 0 = off.")
    ] = T.gan_weight,
    perceptual_weight: Annotated[
        float, typer.Option(min=0.0, help="λ1 of §3.2: the perceptual loss weight; 0 = pixel MSE only.")
    ] = T.perceptual_weight,
    lecam_weight: Annotated[
        float, typer.Option(min=0.0, help="LeCAM regulariser on the discriminator (SPAE §4.1: 1e-4); 0 = off.")
    ] = T.lecam_weight,
    perceptual: Annotated[
        str,
        typer.Option(help="auto (real LPIPS if installed with its weights, else effnet), lpips, effnet or stlpips."),
    ] = T.perceptual,
    model: Annotated[
        str,
        typer.Option(help="v2l (the paper's tokenizer), a baseline (vqgan-llm, lqae, spae) or seed (SEED's stages)."),
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
    split: Annotated[str, typer.Option(help="Split of --data ('' for an image folder).")] = "train",
    classes: Annotated[str, typer.Option(help="train (v2l's 160 classes), heldout or all.")] = "train",
    per_class: Annotated[int, typer.Option(min=0, help="Images per class (0 = all).")] = 0,
    mixed_precision: Annotated[str, typer.Option(help="no, bf16 or fp16 (GPU).")] = T.mixed_precision,
    checkpoint_every: Annotated[
        int, typer.Option(min=1, help="Steps between resumable checkpoints (the newest intact one is resumed).")
    ] = T.checkpoint_every,
    log_every: Annotated[int, typer.Option(min=1, help="Steps between rows of log.csv and TensorBoard.")] = T.log_every,
    seed: Annotated[int, typer.Option(min=0, help="Seed of initialisation and batch order.")] = T.seed,
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
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Train the V2L tokenizer or a baseline (`--model`), or one stage of a recipe (`--recipe`; Accelerate: run
    under `accelerate launch -m v2l train` for several processes)."""
    from ..training.job import TrainJob, init_model_config, run_job

    if model == "seed":  # SEED's three stages: its own recipes (`v2l seed train`)
        from .seed import run_seed_recipe

        return run_seed_recipe(
            recipe or "seed-cpu", out, stage, resume, False, False, stop_after, data_root, as_json, device, dtype
        )
    if recipe is not None:
        return _train_recipe_stage(ctx, recipe, stage, out, stop_after, data_root, as_json, device, dtype)
    if stage is not None:
        raise typer.BadParameter("--stage picks a stage of --recipe: pass --recipe too.", param_hint="--stage")
    if out is None:
        raise typer.BadParameter("the run folder is missing: pass -o/--out FOLDER (or --recipe).", param_hint="--out")
    from ..tokenizer.config import get_config
    from ..training import TrainConfig

    # 1. Everything that can be checked without loading a model or data.
    given = {
        "projector": projector,
        "codebook_source": codebook_source,
        "cross_attention": cross_attention,
        "ch": ch,
        "num_res_blocks": num_res_blocks,
    }
    if init:
        model_cfg = init_model_config(init, {**given, "model": model if model != M.model else None})
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
    job = TrainJob(
        out=out,
        train=cfg,
        model=model_cfg,
        llm=llm,
        vl=vl,
        codebook=str(codebook) if codebook else None,
        data=data,
        split=split,
        classes=classes,
        per_class=per_class,
        data_root=data_root,
        resume=resume,
        allow_nonempty=allow_nonempty,
        stop_after=stop_after,
    )
    setup_torch(device, dtype)
    # run_job checks every setting and the run folder (check_job) before any model or data loads, then trains
    rows = run_job(job, say=lambda m: typer.echo(m, err=True))
    if rows:
        last = rows[-1]
        finished = last["step"] == steps
        if as_json:
            import json

            final = str(job.out / "final") if finished else None
            typer.echo(json.dumps({"run": str(job.out), "step": last["step"], "final": final, "last_logged": last}))
            return
        done = "final model in " + str(job.out / "final") if finished else "stopped; --resume continues"
        typer.echo(f"step {last['step']}: loss {last['loss']:.4f}, rec {last['rec']:.4f}; {done}")


# The options a recipe run may take beside --recipe/--stage: where, how far, and the data root; the recipe sets the
# rest (edit a copy of the recipe file to change them).
RECIPE_RUN_OPTIONS = {
    "recipe",
    "stage",
    "out",
    "stop_after",
    "data_root",
    "resume",
    "ctx",
    "as_json",
    "device",
    "dtype",
}


def _train_recipe_stage(
    ctx, recipe: str, stage: str | None, out, stop_after, data_root, as_json=False, device="auto", dtype="auto"
) -> None:
    from ..training.recipe import default_root, load_recipe, run_recipe

    for name in ctx.params:
        source = ctx.get_parameter_source(name)  # click's or typer's vendored ParameterSource: compared by name
        if name not in RECIPE_RUN_OPTIONS and getattr(source, "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP"):
            raise typer.BadParameter(
                f"the recipe sets the training; leave --{name.replace('_', '-')} out, or edit a copy of the recipe "
                "file and pass that file to --recipe.",
                param_hint=f"--{name.replace('_', '-')}",
            )
    rec = load_recipe(recipe)
    if stage is None:
        if len(rec.stages) != 1:
            raise typer.BadParameter(
                f"recipe {rec.name} has {len(rec.stages)} stages ({', '.join(s.name for s in rec.stages)}): pick one "
                f"with --stage, or run them all with `v2l recipe run {rec.name}`.",
                param_hint="--stage",
            )
        stage = rec.stages[0].name
    rec.stage(stage)  # an unknown stage fails here, naming the valid ones
    setup_torch(device, dtype)
    root = Path(out) if out is not None else default_root(rec)
    done = run_recipe(
        rec, root, stages=[stage], data_root=data_root, stop_after=stop_after, say=lambda m: typer.echo(m, err=True)
    )
    if as_json:
        import json

        typer.echo(json.dumps({"recipe": rec.name, "stage": stage, "run": str(root / stage), "done": stage in done}))
