"""Training the V2L tokenizer with Accelerate: one process, many GPUs or many nodes with no code change.

    v2l train --preset cpu --steps 3000 --out runs/cpu                        # 1 process
    accelerate launch --multi_gpu --num_processes 2 -m v2l train --out runs/cpu ...  # DDP (gloo on CPU, NCCL on GPU)

Batches are *global*: Accelerate splits each batch across processes (`DataLoaderConfiguration(split_batches=True)`),
so 2 processes × 16 images see exactly what 1 process × 32 sees (the order is `v2l.training.schedule`). Checkpoints are
`v2l.training.checkpoints`; a damaged latest checkpoint is named and the newest intact one is used instead.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..errors import OutputPathError, V2LError
from ..machine import machine
from ..paths import atomic_path, check_output_dir, write_json_atomic
from ..tokenizer.config import TokenizerConfig
from ..tokenizer.network import V2LTokenizer
from .checkpoints import codebook_ref, is_run, latest_checkpoint, resume_latest_intact, save_checkpoint
from .config import TrainConfig
from .data import TokenizerTrainData
from .decoder_only import DecoderOnly, WithLocalIds, local_codes
from .discriminator import LeCAM, PatchDiscriminator, adaptive_weight, hinge_d_loss
from .losses import perceptual_loss
from .schedule import GlobalBatchSampler, lr_lambda


def make_accelerator(mixed_precision: str):
    """(An Accelerator for one training run, the launcher's WORLD_SIZE), for the tokenizer's and the LoRA trainer."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DataLoaderConfiguration

    # A second run in one process (a notebook, a sweep) may change the precision: Accelerate keeps the first run's
    # settings in a process-wide state and refuses the change, so start from a fresh one. The distributed set-up
    # (PartialState) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    # Under a launcher (WORLD_SIZE > 1) on a machine without CUDA, Accelerate forms a gloo group only when told to use
    # the CPU; otherwise each process would train alone (and all would write the run folder).
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    from ..runtime import current

    on_cpu = current().requested[0] == "cpu"  # `--device cpu` asked for on a machine with a GPU
    # `split_batches` must go through DataLoaderConfiguration: Accelerate ignores the old keyword argument.
    accelerator = Accelerator(
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        mixed_precision=mixed_precision,
        cpu=on_cpu or (world > 1 and not torch.cuda.is_available()),
    )
    return accelerator, world


def check_run_folder(out: str | Path, resume: bool = False, allow_nonempty: bool = False) -> Path:
    """Refuse, before any work, a run folder that would lose or mix up data (one sentence each):
    a path inside a file or unwritable; a run without `--resume`; `--resume` where there is no run (a mistyped
    `--out`); a non-empty folder that is not a run, unless `allow_nonempty` (nothing in it is ever removed)."""
    out = check_output_dir(out, "--out")
    if resume:
        if not out.is_dir() or not is_run(out):
            raise OutputPathError(
                f"--resume: {out} holds no training run to continue: check --out, or drop --resume to start a new run."
            )
        return out
    if out.is_dir() and is_run(out):
        raise OutputPathError(f"{out} already holds a training run: pass --resume to continue it, or another --out.")
    if out.is_dir() and any(out.iterdir()) and not allow_nonempty:
        raise OutputPathError(
            f"--out {out} is a non-empty folder that is not a training run: pass an empty or new "
            "folder, or --allow-nonempty to write the run beside its files."
        )
    return out


@dataclass
class _Parts:
    """Everything one training run updates; `raw` is the unwrapped model (checkpoints, snapshots)."""

    model: torch.nn.Module
    disc: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    perceptual: torch.nn.Module | None
    raw: V2LTokenizer | None = None


def _build(cfg: TrainConfig, model_cfg: TokenizerConfig, codebook, exclude, local_codebook) -> _Parts:
    local = local_codebook if local_codebook is not None else codebook.local_embeddings
    if local is None:
        raise V2LError("The codebook has no local embeddings: build it with `v2l codebook build`.")
    from ..models import build_network

    model = build_network(
        model_cfg, local, codebook.global_embeddings, exclude=exclude, token_text=codebook.local_embeddings
    )
    disc = PatchDiscriminator(n_layers=cfg.disc_layers)
    if cfg.lecam_weight > 0:
        disc.lecam = LeCAM()  # its moving averages are saved with the discriminator
    if cfg.init:
        _load_init(model, cfg.init, model_cfg)
    if cfg.train_only == "decoder":  # the encoder, projector and codebooks keep `init`'s values
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("decoder."))
    opt_g = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=cfg.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt_g, lr_lambda(cfg))
    perceptual = perceptual_loss(cfg.perceptual) if cfg.perceptual_weight > 0 else None
    return _Parts(model, disc, opt_g, opt_d, sched, perceptual)


def _differing(saved: dict, new: dict) -> list[str]:
    """The model settings in both a saved config (JSON: lists) and `new` (a `to_dict`: tuples) whose values differ."""
    return [k for k in new if k in saved and saved[k] != (list(new[k]) if isinstance(new[k], tuple) else new[k])]


def _load_init(model: torch.nn.Module, init: str, model_cfg: TokenizerConfig) -> None:
    """Start from the weights of the tokenizer folder `init` (or `cpu`, the shipped one), whose model config must be
    the run's."""
    from ..files import read_safetensors
    from ..tokenizer.image_tokenizer import read_checkpoint_config, resolve_checkpoint

    folder = resolve_checkpoint(init)
    saved = read_checkpoint_config(folder)[0]["model_config"]
    new = getattr(model, "config", model_cfg).to_dict()  # as built (embed_dim is the codebook's)
    differ = _differing(saved, new)
    if differ:
        shown = ", ".join(f"{k} {saved[k]!r} (run: {new[k]!r})" for k in differ[:4])
        raise V2LError(
            f"--init {init}: its model has {shown}; train with its settings (the CLI takes them from "
            "--init when no model option is given)."
        )
    try:
        model.load_state_dict({k: v.float() for k, v in read_safetensors(folder / "model.safetensors").items()})
    except RuntimeError as e:
        raise V2LError(
            f"--init {init}: {folder}/model.safetensors does not fit the run's model (missing or "
            "unexpected weights): pass a folder saved by v2l for the same model."
        ) from e


def run_codebook(out: Path) -> tuple[str, str, str] | None:
    """(LLM name, VL spec, codebook key) of the codebook run `out` trains with (its config.json), or None if the run
    has not written one: `--resume` continues with the run's own codebook, whatever today's default is."""
    import json

    from ..backbones.vision_language import vl_spec
    from ..codebooks.config import CodebookConfig

    try:
        ref = json.loads((Path(out) / "config.json").read_text())["codebook"]
        return ref["llm"]["name"], vl_spec(ref["vl"]), CodebookConfig(**ref["config"]).key()
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_resume_matches(out: Path, model_cfg: TokenizerConfig, cfg: TrainConfig | None = None, codebook=None) -> None:
    """`--resume` with another model or preset than the run's (or LeCAM on where it was off, or off where it was on,
    or another codebook) is refused in one sentence naming what differs (the weights would not fit, and every
    checkpoint would look damaged)."""
    import json

    try:
        saved = json.loads((out / "config.json").read_text())
        old = saved["model"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # a run killed before it wrote its config: nothing to compare
    if codebook is not None and (run := run_codebook(out)) is not None:
        from ..codebooks.config import CodebookConfig

        given = CodebookConfig(**codebook.manifest["config"]).key()
        if given != run[2]:
            raise V2LError(
                f"--resume: {out} trains with codebook {run[2]}, not {given}: leave out --codebook and "
                "--vl (the run's own is used), or use another --out."
            )
    was = float((saved.get("train") or {}).get("lecam_weight", 0.0)) > 0
    if cfg is not None and was != (cfg.lecam_weight > 0):
        raise V2LError(
            f"--resume: {out} was trained with LeCAM {'on' if was else 'off'}: pass the run's "
            "--lecam-weight, or another --out."
        )
    for key in ("init", "train_only"):
        had = (saved.get("train") or {}).get(key, TrainConfig.__dataclass_fields__[key].default)
        if cfg is not None and had != getattr(cfg, key):
            raise V2LError(
                f"--resume: {out} was started with --{key.replace('_', '-')} {had or '(none)'}: pass the "
                "same, or another --out."
            )
    new = model_cfg.to_dict()
    differ = _differing(old, new)
    if differ:
        shown = ", ".join(f"{k} {old[k]!r} (asked: {new[k]!r})" for k in differ[:4])
        raise V2LError(
            f"--resume: {out} holds a {old.get('model', 'v2l')!r} run with {shown}: pass the run's "
            "--model, --preset and options, or another --out."
        )


def _planned_steps(out: Path) -> int | None:
    """The step count a run was started (or last resumed) with: a resume with a larger `--steps` extends the
    schedule, whose learning rate then follows the new length from the step resumed at."""
    import json

    try:
        return int(json.loads((out / "config.json").read_text())["train"]["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _resume(out: Path, parts: _Parts, accelerator) -> int:
    """The step to start from: 0 for a new run, else the newest intact checkpoint's (the log is cut back to it)."""
    if latest_checkpoint(out) is None:
        accelerator.print(f"v2l: {out} has no checkpoint yet; starting from step 0", file=sys.stderr)
        return 0
    say = lambda msg: accelerator.print(msg, file=sys.stderr)  # noqa: E731
    start, folder = resume_latest_intact(out, parts.model, parts.disc, parts.opt_g, parts.opt_d, parts.sched, say)
    if folder is None:
        raise V2LError(f"Every checkpoint in {out} is damaged: start a new run with another --out.")
    if folder != latest_checkpoint(out):
        say(f"v2l: falling back to the newest intact checkpoint {folder.name}")
    accelerator.print(f"v2l: resuming from {folder} (step {start})", file=sys.stderr)
    if accelerator.is_main_process:
        truncate_csv(out / "log.csv", start)
    return start


def _train_step(cfg: TrainConfig, parts: _Parts, accelerator, batch, step: int) -> dict[str, torch.Tensor]:
    """One generator update (and one discriminator update once the GAN loss is on); returns the loss terms."""
    model, disc, perceptual = parts.model, parts.disc, parts.perceptual
    x, gids = batch["pixels"], batch["global_ids"]
    gan_on = step >= cfg.disc_start and cfg.gan_weight > 0
    zero = torch.zeros((), device=x.device)
    extra = {}
    if parts.raw.needs_image_embeddings and "image_embeddings" in batch:
        extra["image_embeddings"] = batch["image_embeddings"]  # SPAE's semantic loss
    with accelerator.autocast():
        if "local_ids" in batch:  # --train-only decoder
            x_hat, vq_loss, semantic = model(batch["local_ids"], gids), zero, None
        else:
            out = model(x, gids, **extra)
            x_hat, vq_loss, semantic = out.reconstruction, out.vq_loss, out.semantic_loss
        rec = F.mse_loss(x_hat.float(), x.float())  # ||x − x̂||² (§3.2)
        perc = perceptual(x_hat.float(), x.float()).mean() if perceptual is not None else zero
        nll = rec + cfg.perceptual_weight * perc
        loss = nll + vq_loss
        g_loss, d_weight = zero, zero
        if gan_on:
            g_loss = -disc(x_hat).float().mean()
            d_weight = adaptive_weight(nll, g_loss, parts.raw.decoder.last_layer)
            loss = loss + cfg.gan_weight * d_weight * g_loss
        if semantic is not None:  # SPAE eq. 9: α · sg(L_app / L_sem) · L_sem on top of the appearance loss
            from ..baselines import dynamic_semantic_term

            loss = loss + dynamic_semantic_term(loss, semantic, parts.raw.config.semantic_weight)
    parts.opt_g.zero_grad(set_to_none=True)
    accelerator.backward(loss)
    if cfg.grad_clip:
        accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    parts.opt_g.step()
    parts.sched.step()
    d_loss = zero
    if gan_on:
        with accelerator.autocast():
            real, fake = disc(torch.cat([x, x_hat.detach()])).float().chunk(2)
            d_loss = hinge_d_loss(real, fake)
            if cfg.lecam_weight > 0:
                d_loss = d_loss + cfg.lecam_weight * accelerator.unwrap_model(disc).lecam(real, fake)
        parts.opt_d.zero_grad(set_to_none=True)
        accelerator.backward(d_loss)
        if cfg.grad_clip:
            accelerator.clip_grad_norm_(disc.parameters(), cfg.grad_clip)
        parts.opt_d.step()
    terms = {
        "loss": loss,
        "rec": rec,
        "perceptual": perc,
        "vq": vq_loss,
        "g": g_loss,
        "d": d_loss,
        "d_weight": d_weight,
    }
    if semantic is not None:
        terms["semantic"] = semantic
    return terms


def _log_row(terms: dict[str, torch.Tensor], accelerator, step: int, lr: float, images: int, seconds: float) -> dict:
    names = ["loss", "rec", "perceptual", "vq", "g", "d"] + (["semantic"] if "semantic" in terms else [])
    device = terms["loss"].device
    vals = accelerator.reduce(torch.stack([terms[k].detach().float().to(device) for k in names]), reduction="mean")
    return {
        "step": step,
        **{k: vals[i].item() for i, k in enumerate(names)},
        "d_weight": float(terms["d_weight"]),
        "lr": lr,
        "images_per_s": images / seconds,
    }


def train(
    cfg: TrainConfig,
    model_cfg: TokenizerConfig,
    codebook,
    data: TokenizerTrainData,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    exclude: torch.Tensor | None = None,
    local_codebook: torch.Tensor | None = None,
    stop_after: int | None = None,
    allow_nonempty: bool = False,
) -> list[dict]:
    """Train; returns the logged rows. `codebook` is a loaded `v2l.codebooks.Codebook` (local + global embeddings).

    `stop_after` ends the run after that step as a kill would (no final checkpoint, no final model): for tests and
    time-boxed sessions; `resume=True` continues it. `out` is checked first (see `check_run_folder`).
    """
    from accelerate.utils import set_seed

    out = check_run_folder(out, resume=resume, allow_nonempty=allow_nonempty)
    if resume:
        check_resume_matches(out, model_cfg, cfg, codebook)
    accelerator, world = make_accelerator(cfg.mixed_precision)
    if accelerator.num_processes != world:
        raise V2LError(
            f"The launcher started {world} processes but Accelerate joined {accelerator.num_processes}: "
            "launch with `accelerate launch --multi_gpu --num_processes N -m v2l train ...`."
        )
    if cfg.batch_size % accelerator.num_processes:
        raise V2LError(f"--batch-size {cfg.batch_size} must divide evenly over {accelerator.num_processes} processes.")
    n = accelerator.num_processes
    accelerator.print(
        f"v2l: {n} process{'es' if n > 1 else ''} ({accelerator.distributed_type.value}, "
        f"{accelerator.device}), global batch {cfg.batch_size}",
        file=sys.stderr,
    )
    set_seed(cfg.seed)
    parts = _build(cfg, model_cfg, codebook, exclude, local_codebook)
    planned = _planned_steps(out) if resume else None
    start = _resume(out, parts, accelerator) if resume else 0
    if start > cfg.steps:
        raise V2LError(
            f"--steps {cfg.steps}: {out} is already at step {start}; pass --steps above it to extend the "
            "run, or its own step count to finish it."
        )
    if planned is not None and planned != cfg.steps and start:
        accelerator.print(
            f"v2l: {out} was planned for {planned} steps; it continues on a schedule of {cfg.steps} "
            f"(the learning rate at step {start}: {lr_lambda(cfg)(start):.2f} × --lr)",
            file=sys.stderr,
        )
        for group, base in zip(parts.opt_g.param_groups, parts.sched.base_lrs, strict=True):  # the next step too
            group["lr"] = base * lr_lambda(cfg)(start)

    if cfg.train_only == "decoder":
        if accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
        data = WithLocalIds(data, local_codes(parts.model, data, out, accelerator, progress=progress))
        parts.model = DecoderOnly(parts.model)
    sampler = GlobalBatchSampler(len(data), cfg.batch_size, cfg.seed, cfg.steps, start)
    loader = DataLoader(data, batch_sampler=sampler, num_workers=cfg.num_workers)
    parts.model, parts.disc, parts.opt_g, parts.opt_d, loader = accelerator.prepare(
        parts.model, parts.disc, parts.opt_g, parts.opt_d, loader
    )
    if parts.perceptual is not None:
        parts.perceptual = parts.perceptual.to(accelerator.device)
    parts.raw = accelerator.unwrap_model(parts.model)
    if isinstance(parts.raw, DecoderOnly):
        parts.raw = parts.raw.net

    main = accelerator.is_main_process
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            out / "config.json",
            {
                "train": cfg.to_dict(),
                "model": model_cfg.to_dict(),
                "perceptual_network": getattr(parts.perceptual, "name", None),
                "codebook": codebook_ref(codebook.manifest),
                "machine": {  # where the network trained (Accelerate's device) and the frozen models' runtime
                    **machine(),
                    "accelerator": {"device": str(accelerator.device), "mixed_precision": accelerator.mixed_precision},
                },
            },
        )
    tb = tensorboard_writer(out) if main else None
    bar = tqdm(total=cfg.steps, initial=start, desc="train", disable=not (progress and main), dynamic_ncols=True)
    rows: list[dict] = []
    t_last, n_last, step = time.perf_counter(), 0, start
    for batch in loader:
        terms = _train_step(cfg, parts, accelerator, batch, step)
        step += 1
        n_last += batch["pixels"].shape[0] * accelerator.num_processes
        if step % cfg.log_every == 0 or step == cfg.steps:
            row = _log_row(terms, accelerator, step, parts.sched.get_last_lr()[0], n_last, time.perf_counter() - t_last)
            rows.append(row)
            t_last, n_last = time.perf_counter(), 0
            if main:
                _record(out / "log.csv", tb, row)
                bar.set_postfix(loss=f"{row['loss']:.4f}", rec=f"{row['rec']:.4f}", img_s=f"{row['images_per_s']:.1f}")
        bar.update(1)
        if step in cfg.snapshot_steps and main:
            _export(out / f"snapshot-{step:07d}", parts.raw, codebook, step)
        if stop_after is not None and step >= stop_after:
            break
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            accelerator.wait_for_everyone()
            if main:
                save_checkpoint(
                    out,
                    step,
                    parts.raw,
                    accelerator.unwrap_model(parts.disc),
                    parts.opt_g,
                    parts.opt_d,
                    parts.sched,
                    cfg,
                    model_cfg.to_dict(),
                    codebook.manifest,
                    cfg.keep_checkpoints,
                )
    bar.close()
    if tb is not None:
        tb.close()
    accelerator.wait_for_everyone()
    if main and step == cfg.steps:
        _export(out / "final", parts.raw, codebook, step)
    return rows


def _export(folder: Path, raw: V2LTokenizer, codebook, step: int) -> None:
    from ..tokenizer.image_tokenizer import save_tokenizer_folder

    save_tokenizer_folder(folder, raw, codebook, extra={"trained_steps": step}, codebook_folder=codebook.folder)


def _record(csv_path: Path, tb, row: dict) -> None:
    append_csv(csv_path, row)
    if tb is not None:
        for k, v in row.items():
            if k != "step":
                tb.add_scalar(f"train/{k}", v, row["step"])


def append_csv(path: Path, row: dict) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def truncate_csv(path: Path, step: int) -> None:
    """Drop rows logged after the checkpoint we resume from (they will be logged again, identically)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if int(r["step"]) <= step]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        if keep:
            w = csv.DictWriter(f, fieldnames=list(keep[0]))
            w.writeheader()
            w.writerows(keep)


def tensorboard_writer(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but keep training if a user removed it
        return None
    return SummaryWriter(str(out / "tensorboard"))
