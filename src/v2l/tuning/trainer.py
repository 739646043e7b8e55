"""The LoRA trainer (paper appendix A) on Accelerate: one process, many GPUs or CPU processes with no code change.

    v2l tune --recipe lora-cpu                      # the shipped adapter's run
    v2l tune --out runs/lora --epochs 3 --resume    # continue after a kill

Every `checkpoint_every` steps the LoRA weights, the optimiser, the schedule and the RNG state are written to
`checkpoint-STEP/` (atomically; `latest.json` names the newest), so a run killed at any moment and resumed gives the
same adapter as a run never killed (tested). The batch order is a function of (seed, epoch) only. The log is
`log.csv` (and TensorBoard's `tensorboard/`); the adapter is written to `final/` in peft's format, with
`training.json` (steps, tokens per second, wall time, peak memory, trainable parameters).
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..backbones.adapters import base_identity
from ..errors import V2LError
from ..machine import machine
from ..paths import atomic_path, write_json_atomic
from .adapter import attach_lora, save_adapter
from .config import TuneConfig, lr_factor
from .data import (
    TokenSequences,
    cached_tokens,
    class_indices,
    collate,
    dataset_classes,
    local_loss,
    prefix_ids,
    tokenizer_fingerprint,
    tuning_classes,
)

# settings that may change when a run is resumed (they do not change what is trained)
RESUMABLE = ("log_every", "checkpoint_every", "keep_checkpoints")


class EpochBatches:
    """Global batches of step `start` onwards: epoch e visits the images in a permutation seeded by (seed, e)."""

    def __init__(self, n: int, batch: int, seed: int, epochs: int, start: int = 0):
        self.n, self.batch, self.seed, self.epochs, self.start = n, batch, seed, epochs, start
        self.batch_size = batch  # Accelerate splits global batches of this size
        self.per_epoch = math.ceil(n / batch)

    def __len__(self) -> int:
        return self.per_epoch * self.epochs - self.start

    def __iter__(self):
        for step in range(self.start, self.per_epoch * self.epochs):
            e, k = divmod(step, self.per_epoch)
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + e))
            yield order[k * self.batch : (k + 1) * self.batch].tolist()


def training_sequences(cfg: TuneConfig, tok, tokenizer, start_ids, data_root=None, progress: bool = True):
    """(`TokenSequences` of the tuning classes' training images, what was read: classes and image count)."""
    from ..data import open_images

    ds = open_images(cfg.data, split=cfg.split or None, root=data_root, on_error="raise")
    available = None if cfg.data == "tiny-imagenet-200" else dataset_classes(ds)
    wnids = tuning_classes(cfg.classes, cfg.wnids, available)
    idx = class_indices(ds, wnids, cfg.per_class)
    name = f"{cfg.data}-{cfg.split}-{_sha(list(getattr(ds, 'keys', [])))}"  # a folder: its file list too
    gids, lids = cached_tokens(tok, ds, idx, name, progress)
    k = cfg.prefix_words or gids.shape[1]
    words = [[tok.codebook.entries[i]["text"] for i in row[:k]] for row in gids.tolist()]
    prefixes = [prefix_ids(tokenizer, start_ids, w) for w in words]
    return TokenSequences(prefixes, lids), {"wnids": wnids, "images": len(idx), "indices_sha256": _sha(idx)}


def _sha(idx: list[int]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(idx).encode()).hexdigest()[:16]


def check_resume(out: Path, cfg: TuneConfig) -> None:
    try:
        saved = json.loads((out / "config.json").read_text())["train"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    now = json.loads(json.dumps(cfg.to_dict()))
    differ = [k for k in now if k not in RESUMABLE and k in saved and saved[k] != now[k]]
    if differ:
        shown = ", ".join(f"{k} {saved[k]!r} (asked: {now[k]!r})" for k in differ[:3])
        raise V2LError(f"--resume: {out} was started with {shown}: pass the run's settings, or another --out.")


def _save(out: Path, step: int, peft_model, opt, cfg: TuneConfig) -> None:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from ..training.checkpoints import is_checkpoint_name, optimizer_to_files

    folder = out / f"checkpoint-{step:07d}"
    with atomic_path(folder, replace=is_checkpoint_name) as tmp:
        tmp.mkdir()
        state = get_peft_model_state_dict(peft_model, save_embedding_layers=False)  # SEED: only the new rows
        lora = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        save_file(lora, str(tmp / "lora.safetensors"))
        tensors, meta = optimizer_to_files(opt)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        save_file({"torch_cpu": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        state = {"step": step, "optimizer": meta, "train_config": cfg.to_dict()}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1, default=str))
    write_json_atomic(out / "latest.json", {"step": step, "checkpoint": folder.name})
    for old in sorted(out.glob("checkpoint-*"))[: -cfg.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)


def _load(folder: Path, peft_model, opt) -> int:
    from peft import set_peft_model_state_dict

    from ..files import read_json, read_safetensors
    from ..training.checkpoints import optimizer_from_files

    state = read_json(folder / "trainer_state.json")
    set_peft_model_state_dict(peft_model, read_safetensors(folder / "lora.safetensors"))
    optimizer_from_files(opt, read_safetensors(folder / "optimizer.safetensors"), state["optimizer"])
    torch.set_rng_state(read_safetensors(folder / "rng.safetensors")["torch_cpu"])
    return int(state["step"])


def resume_checkpoint(out: Path, peft_model, opt, say) -> int:
    from ..training.checkpoints import checkpoint_candidates

    for folder in checkpoint_candidates(out):
        try:
            step = _load(folder, peft_model, opt)
        except Exception as e:  # noqa: BLE001 - any unreadable part makes the checkpoint unusable
            say(f"v2l: checkpoint {folder} is damaged ({e}); trying an older one")
            continue
        say(f"v2l: resuming from {folder} (step {step})")
        return step
    say(f"v2l: {out} has no checkpoint yet; starting from step 0")
    return 0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def lora_loop(
    acc,
    peft_model,
    opt,
    loader,
    cfg,
    out: Path,
    start: int,
    total: int,
    warmup: int,
    progress: bool,
    stop_after: int | None = None,
    desc: str = "tune",
) -> tuple[int, int, float]:
    """The one LoRA training loop (this trainer's and SEED-LLM's): the paper's schedule on every parameter group
    (a group's `base_lr`, default `cfg.lr`), the loss on the labelled positions, `log.csv` and TensorBoard, and
    atomic checkpoints. Returns (the last step, labelled tokens seen, the start time)."""
    from ..training.trainer import append_csv, tensorboard_writer

    main = acc.is_main_process
    tb = tensorboard_writer(out) if main else None
    bar = tqdm(total=total, initial=start, desc=desc, disable=not (progress and main), dynamic_ncols=True)
    peft_model.train()
    step, t0, t_last, tokens, tokens_all = start, time.perf_counter(), time.perf_counter(), 0, 0
    for batch in loader:
        for g in opt.param_groups:
            g["lr"] = g.get("base_lr", cfg.lr) * lr_factor(step, warmup, total)
        with acc.autocast():
            logits = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = local_loss(logits, batch["labels"])
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        opt.step()
        step += 1
        n_tok = int((batch["labels"][:, 1:] != -100).sum()) * acc.num_processes
        tokens, tokens_all = tokens + n_tok, tokens_all + n_tok
        if step % cfg.log_every == 0 or step == total:
            now = time.perf_counter()
            mean = acc.reduce(loss.detach().float(), reduction="mean").item()
            row = {"step": step, "loss": mean, "lr": opt.param_groups[0]["lr"], "tokens_per_s": tokens / (now - t_last)}
            t_last, tokens = now, 0
            if main:
                append_csv(out / "log.csv", row)
                if tb is not None:
                    for k in ("loss", "lr", "tokens_per_s"):
                        tb.add_scalar(f"{desc}/{k}", row[k], step)
                bar.set_postfix(loss=f"{mean:.3f}", tok_s=f"{row['tokens_per_s']:.0f}")
        bar.update(1)
        if stop_after is not None and step >= stop_after:
            break
        if step % cfg.checkpoint_every == 0 or step == total:
            acc.wait_for_everyone()
            if main:
                _save(out, step, acc.unwrap_model(peft_model), opt, cfg)
    bar.close()
    if tb is not None:
        tb.close()
    return step, tokens_all, t0


def tune(
    cfg: TuneConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    data_root=None,
    stop_after: int | None = None,
    allow_nonempty: bool = False,
    say=lambda m: print(m, file=sys.stderr),
) -> dict:
    """Train a LoRA adapter on the tokenizer's tokens of the tuning classes; returns the run's summary (also
    `final/training.json`). `stop_after` ends the run after that step as a kill would (tests)."""
    from accelerate.utils import set_seed

    from ..backbones.language_model import text_start_ids
    from ..backbones.llm_loading import open_model
    from ..tokenizer import ImageTokenizer
    from ..training.trainer import check_run_folder, make_accelerator, truncate_csv

    out = check_run_folder(out, resume=resume, allow_nonempty=allow_nonempty)
    if resume:
        check_resume(out, cfg)
    acc, _ = make_accelerator(cfg.mixed_precision)
    if cfg.batch_size % acc.num_processes:
        raise V2LError(f"--batch-size {cfg.batch_size} must divide evenly over {acc.num_processes} processes.")
    set_seed(cfg.seed)
    tok = ImageTokenizer.from_pretrained(cfg.tokenizer, progress=progress)
    model, tokenizer, name, source, source_hash = open_model(cfg.llm, progress=progress)
    data, read = training_sequences(cfg, tok, tokenizer, text_start_ids(tokenizer), data_root, progress)
    bad = int(data.local.max()) >= model.get_input_embeddings().weight.shape[0]
    if bad:
        raise V2LError(
            f"The tokenizer {cfg.tokenizer} gives local ids beyond the vocabulary of the LLM {name}: tune the LLM "
            "whose vocabulary the tokenizer's codebook was built from."
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    peft_model = attach_lora(model, cfg)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    opt = torch.optim.Adam([p for p in peft_model.parameters() if p.requires_grad], lr=cfg.lr, betas=cfg.betas)
    total, warmup = cfg.steps(len(data)), cfg.warmup_steps(len(data))
    start = resume_checkpoint(out, peft_model, opt, say) if resume else 0
    if start and acc.is_main_process:
        truncate_csv(out / "log.csv", start)
    sampler = EpochBatches(len(data), cfg.batch_size, cfg.seed, cfg.epochs, start)
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=lambda b: collate(b, int(pad or 0)))
    peft_model, opt, loader = acc.prepare(peft_model, opt, loader)
    llm_id = base_identity(acc.unwrap_model(peft_model).get_base_model(), name, source_hash)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            out / "config.json",
            {"kind": "lora", "train": cfg.to_dict(), "llm": llm_id, "data": read, "machine": machine()},
        )
    step, tokens_all, t0 = lora_loop(acc, peft_model, opt, loader, cfg, out, start, total, warmup, progress, stop_after)
    acc.wait_for_everyone()
    wall = time.perf_counter() - t0
    summary = {
        "steps": total,
        "steps_this_process": step - start,
        "images": len(data),
        "trainable_parameters": trainable,
        "local_tokens_per_s": tokens_all / wall if wall else None,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak_rss_mb()),
        "processes": acc.num_processes,
        "mixed_precision": cfg.mixed_precision,
    }
    if acc.is_main_process and step == total:
        meta = {
            "format": 1,
            "llm": llm_id,
            "tokenizer": {"name": str(cfg.tokenizer), "fingerprint": tokenizer_fingerprint(tok)},
            "sequence": "start ids + ', '.join(global words) + '.\\n' + 256 local ids (loss on the local ids only)",
            "config": cfg.to_dict(),
            "data": read,
            "training": summary,
        }
        peft_model_raw = acc.unwrap_model(peft_model)
        peft_model_raw.peft_config["default"].base_model_name_or_path = name
        save_adapter(peft_model_raw, out / "final", meta)
    return summary
