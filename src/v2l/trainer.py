"""Training the V2L tokenizer with Accelerate: one process, many GPUs or many nodes with no code change.

    v2l train --preset cpu --steps 3000 --out runs/cpu          # 1 process
    accelerate launch --num_processes 2 -m v2l.cli train ...    # DDP (gloo on CPU, NCCL on GPU)

Batches are *global*: Accelerate splits each batch across processes (`split_batches=True`), so 2 processes × 16 images
see exactly what 1 process × 32 sees. The batch order is a fixed function of (seed, step), which is what lets
`--resume` continue the same loss curve after a kill. Checkpoints are safetensors + JSON in `checkpoint-STEP/`,
published by atomically rewriting `latest.json` after the folder is complete.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from .errors import V2LError
from .losses import PatchDiscriminator, adaptive_weight, hinge_d_loss, perceptual_loss
from .model import TokenizerConfig, V2LTokenizer
from .paths import atomic_path, write_json_atomic


@dataclass
class TrainConfig:
    preset: str = "cpu"
    steps: int = 3000
    batch_size: int = 32  # global, across all processes
    lr: float = 5e-4  # paper: Adam 5e-4 (official code 4.5e-4)
    betas: tuple[float, float] = (0.5, 0.9)  # VQ-GAN / official code; the paper does not say
    warmup_steps: int = 150  # paper: 5 of 100 epochs; we keep the same 5 % proportion
    min_lr_ratio: float = 0.0  # half-cycle cosine to 0
    grad_clip: float = 1.0
    perceptual_weight: float = 1.0  # λ1 (§3.2)
    perceptual: str = "auto"  # auto (real LPIPS when installed with its weights, else effnet), lpips, effnet, stlpips
    gan_weight: float = 0.1  # λ2 (§3.2)
    disc_start: int = 2000  # step at which the GAN loss starts (official code: 10,000 on ImageNet)
    disc_layers: int = 2
    seed: int = 0
    mixed_precision: str = "no"  # "bf16" / "fp16" on GPU
    log_every: int = 10
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    snapshot_steps: tuple[int, ...] = ()  # also export the model as a tokenizer folder at these steps (ablations
    # trained for fewer steps are compared with the main run at the same step)
    num_workers: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class GlobalBatchSampler(Sampler):
    """Global batches in a fixed order: epoch e is a permutation seeded by (seed, e); starts at any step."""

    def __init__(self, n: int, batch_size: int, seed: int, steps: int, start_step: int = 0):
        if n < batch_size:
            raise V2LError(f"{n} training images are fewer than the batch size {batch_size}: lower --batch-size.")
        self.n, self.bs, self.seed, self.steps, self.start = n, batch_size, seed, steps, start_step
        self.per_epoch = n // batch_size  # the last partial batch of each epoch is dropped

    def batch(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.per_epoch)
        g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        return perm[k * self.bs : (k + 1) * self.bs].tolist()

    def __iter__(self):
        for step in range(self.start, self.steps):
            yield self.batch(step)

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


class TokenizerTrainData(Dataset):
    """Images resized to the preset resolution in [−1, 1], with their precomputed global token ids."""

    def __init__(self, images, indices: list[int], global_ids: torch.Tensor, resolution: int):
        self.images, self.indices, self.global_ids, self.resolution = images, indices, global_ids, resolution

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        from .images import center_crop_resize

        s = self.images[self.indices[i]]
        img = center_crop_resize(s.image, self.resolution)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0
        return {"pixels": x, "global_ids": self.global_ids[i]}


def lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


# ---- checkpoints: safetensors + JSON ----------------------------------------------------------------------------

def _optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, state_meta = {}, {}
    for pid, st in sd["state"].items():
        state_meta[str(pid)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                state_meta[str(pid)][k] = v
    return tensors, {"state": state_meta, "param_groups": sd["param_groups"]}


def _optimizer_from_files(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict = {int(pid): dict(v) for pid, v in meta["state"].items()}
    for key, t in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = t
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(out: Path, step: int, model, disc, opt_g, opt_d, sched, cfg: TrainConfig, model_cfg: dict,
                    codebook_manifest: dict, keep: int = 2) -> Path:
    folder = out / f"checkpoint-{step:07d}"
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        save_file({k: v.contiguous() for k, v in disc.state_dict().items()}, str(tmp / "discriminator.safetensors"))
        opt_meta = {}
        for name, opt in (("optimizer_g", opt_g), ("optimizer_d", opt_d)):
            tensors, meta = _optimizer_to_files(opt)
            save_file(tensors, str(tmp / f"{name}.safetensors"))
            opt_meta[name] = meta
        save_file({"torch_cpu": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        state = {"step": step, "train_config": cfg.to_dict(), "model_config": model_cfg,
                 "scheduler": sched.state_dict(), "optimizers": opt_meta,
                 "python_rng": repr(random.getstate()), "codebook": _codebook_ref(codebook_manifest)}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1, default=str))
    write_json_atomic(out / "latest.json", {"step": step, "checkpoint": folder.name})
    for old in sorted(out.glob("checkpoint-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def _codebook_ref(manifest: dict) -> dict:
    return {"config": manifest.get("config"), "llm": manifest.get("llm"), "vl": manifest.get("vl"),
            "counts": manifest.get("counts")}


def latest_checkpoint(out: Path) -> Path | None:
    pointer = out / "latest.json"
    if not pointer.is_file():
        return None
    folder = out / json.loads(pointer.read_text())["checkpoint"]
    return folder if (folder / "trainer_state.json").is_file() else None


def load_checkpoint(folder: Path, model, disc, opt_g, opt_d, sched) -> int:
    import ast

    state = json.loads((folder / "trainer_state.json").read_text())
    model.load_state_dict(load_file(folder / "model.safetensors"))
    disc.load_state_dict(load_file(folder / "discriminator.safetensors"))
    for name, opt in (("optimizer_g", opt_g), ("optimizer_d", opt_d)):
        _optimizer_from_files(opt, load_file(folder / f"{name}.safetensors"), state["optimizers"][name])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(load_file(folder / "rng.safetensors")["torch_cpu"])
    random.setstate(ast.literal_eval(state["python_rng"]))
    return int(state["step"])


# ---- the training loop ----------------------------------------------------------------------------------------

def train(cfg: TrainConfig, model_cfg: TokenizerConfig, codebook, data: TokenizerTrainData, out: str | Path,
          resume: bool = False, progress: bool = True, exclude: torch.Tensor | None = None,
          local_codebook: torch.Tensor | None = None, stop_after: int | None = None) -> list[dict]:
    """Train; returns the logged rows. `codebook` is a loaded `v2l.codebook.Codebook` (local + global embeddings).

    `stop_after` ends the run after that step as a kill would (no final checkpoint, no final model): for tests and
    time-boxed sessions; `resume=True` continues it.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import set_seed

    out = Path(out)
    # A second train() in one process (a notebook, a sweep) may change the precision: Accelerate keeps the first
    # run's settings in a process-wide state and refuses the change, so start from a fresh one. The distributed
    # set-up (PartialState) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(split_batches=True, mixed_precision=cfg.mixed_precision)
    if cfg.batch_size % accelerator.num_processes:
        raise V2LError(f"--batch-size {cfg.batch_size} must divide evenly over {accelerator.num_processes} processes.")
    set_seed(cfg.seed)
    local = local_codebook if local_codebook is not None else codebook.local_embeddings
    if local is None:
        raise V2LError("The codebook has no local embeddings: build it with `v2l codebook build`.")
    model = V2LTokenizer(model_cfg, local, codebook.global_embeddings, exclude=exclude)
    disc = PatchDiscriminator(n_layers=cfg.disc_layers)
    perceptual = perceptual_loss(cfg.perceptual) if cfg.perceptual_weight > 0 else None
    opt_g = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=cfg.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt_g, lr_lambda(cfg))

    start = 0
    if resume:
        ckpt = latest_checkpoint(out)
        if ckpt is None:
            accelerator.print(f"v2l: no checkpoint in {out}; starting from step 0")
        else:
            start = load_checkpoint(ckpt, model, disc, opt_g, opt_d, sched)
            accelerator.print(f"v2l: resuming from {ckpt} (step {start})")
            if accelerator.is_main_process:
                _truncate_csv(out / "log.csv", start)
    elif latest_checkpoint(out) is not None:
        raise V2LError(f"{out} already holds a training run: pass --resume to continue it, or another --out.")

    sampler = GlobalBatchSampler(len(data), cfg.batch_size, cfg.seed, cfg.steps, start)
    loader = DataLoader(data, batch_sampler=sampler, num_workers=cfg.num_workers)
    model, disc, opt_g, opt_d, loader = accelerator.prepare(model, disc, opt_g, opt_d, loader)
    if perceptual is not None:
        perceptual = perceptual.to(accelerator.device)
    raw = accelerator.unwrap_model(model)

    rows: list[dict] = []
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "config.json", {"train": cfg.to_dict(), "model": model_cfg.to_dict(),
                                                "perceptual_network": perceptual.name if perceptual else None,
                                                "codebook": _codebook_ref(codebook.manifest)})
    tb = _tensorboard(out) if accelerator.is_main_process else None
    csv_path = out / "log.csv"
    bar = tqdm(total=cfg.steps, initial=start, desc="train", disable=not (progress and accelerator.is_main_process),
               dynamic_ncols=True)
    t_last, n_last = time.perf_counter(), 0
    step = start
    for batch in loader:
        x, gids = batch["pixels"], batch["global_ids"]
        gan_on = step >= cfg.disc_start and cfg.gan_weight > 0
        with accelerator.autocast():
            x_hat, _, vq_loss = model(x, gids)
            rec = F.mse_loss(x_hat.float(), x.float())  # ||x − x̂||² (§3.2)
            perc = perceptual(x_hat.float(), x.float()).mean() if perceptual is not None else torch.zeros(())
            nll = rec + cfg.perceptual_weight * perc
            loss = nll + vq_loss
            g_loss = torch.zeros((), device=x.device)
            d_weight = torch.zeros((), device=x.device)
            if gan_on:
                g_loss = -disc(x_hat).float().mean()
                d_weight = adaptive_weight(nll, g_loss, raw.decoder.last_layer)
                loss = loss + cfg.gan_weight * d_weight * g_loss
        opt_g.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if cfg.grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt_g.step()
        sched.step()
        d_loss = torch.zeros(())
        if gan_on:
            with accelerator.autocast():
                logits = disc(torch.cat([x, x_hat.detach()])).float()
                real, fake = logits.chunk(2)
                d_loss = hinge_d_loss(real, fake)
            opt_d.zero_grad(set_to_none=True)
            accelerator.backward(d_loss)
            if cfg.grad_clip:
                accelerator.clip_grad_norm_(disc.parameters(), cfg.grad_clip)
            opt_d.step()
        step += 1
        n_last += x.shape[0] * accelerator.num_processes
        if step % cfg.log_every == 0 or step == cfg.steps:
            parts = (loss, rec, perc, vq_loss, g_loss, d_loss)
            vals = torch.stack([t.detach().float().to(x.device) for t in parts])
            vals = accelerator.reduce(vals, reduction="mean")
            dt = time.perf_counter() - t_last
            row = {"step": step, "loss": vals[0].item(), "rec": vals[1].item(), "perceptual": vals[2].item(),
                   "vq": vals[3].item(), "g": vals[4].item(), "d": vals[5].item(),
                   "d_weight": float(d_weight), "lr": sched.get_last_lr()[0], "images_per_s": n_last / dt}
            rows.append(row)
            t_last, n_last = time.perf_counter(), 0
            if accelerator.is_main_process:
                _append_csv(csv_path, row)
                if tb is not None:
                    for k, v in row.items():
                        if k != "step":
                            tb.add_scalar(f"train/{k}", v, step)
                bar.set_postfix(loss=f"{row['loss']:.4f}", rec=f"{row['rec']:.4f}",
                                img_s=f"{row['images_per_s']:.1f}")
        bar.update(1)
        if step in cfg.snapshot_steps and accelerator.is_main_process:
            from .image_tokenizer import save_tokenizer_folder

            save_tokenizer_folder(out / f"snapshot-{step:07d}", raw, codebook.manifest,
                                  extra={"trained_steps": step}, codebook_folder=codebook.folder)
        if stop_after is not None and step >= stop_after:
            break
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(out, step, raw, accelerator.unwrap_model(disc), opt_g, opt_d, sched, cfg,
                                model_cfg.to_dict(), codebook.manifest, cfg.keep_checkpoints)
    bar.close()
    if tb is not None:
        tb.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and step == cfg.steps:
        from .image_tokenizer import save_tokenizer_folder

        save_tokenizer_folder(out / "final", raw, codebook.manifest, extra={"trained_steps": step},
                              codebook_folder=codebook.folder)
    return rows


def _append_csv(path: Path, row: dict) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def _truncate_csv(path: Path, step: int) -> None:
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


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but keep training if a user removed it
        return None
    return SummaryWriter(str(out / "tensorboard"))
