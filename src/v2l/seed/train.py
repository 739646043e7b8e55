"""SEED's tokenizer stages (SEED v1 §2.1–2.2) on cached features: stage I trains the Causal Q-Former with the
image–text contrastive loss; stage II freezes it and trains the codebook, the reconstruction of the causal embeddings
(cosine) and the Reverse Q-Former (MSE to the V2L decoder's input).

    v2l train --model seed --recipe seed-cpu          # all three stages (stage III: `v2l.seed.llm`)

Both stages read only cached tensors, so they run in one process (Accelerate would add nothing at this size; the
LLM stage, which does the heavy work, runs on Accelerate). Step `s` draws its batch and texts from a generator
seeded by (seed, s), and the codebook's restarts from the step, so a run killed at any moment and resumed from its
last checkpoint gives the same weights as one never killed (tested). Checkpoints are written atomically.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import V2LError
from ..paths import atomic_path, write_json_atomic
from .config import SeedConfig, SeedTrainConfig
from .network import SeedNet, contrastive_loss, cosine_loss

STAGES = ("qformer", "codebook")
REVERSE_BATCH = 32


def lr_at(step: int, warmup: int, total: int, lr: float) -> float:
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def batch_indices(n: int, batch: int, seed: int, step: int) -> tuple[list[int], torch.Generator]:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randperm(n, generator=gen)[:batch].tolist(), gen


def same_text_mask(data, idx: list[int]) -> torch.Tensor:
    """True where two different images of the batch share a text (class images): not negatives of each other."""
    keys = [tuple(data.text_ids[i]) for i in idx]
    m = torch.tensor([[a == b for b in keys] for a in keys])
    return m & ~torch.eye(len(idx), dtype=torch.bool)


def stage_params(net: SeedNet, stage: str) -> list:
    if stage == "qformer":
        return list(net.qformer.parameters())
    return [*net.quantizer.parameters(), *net.reconstructor.parameters(), *net.reverse.parameters()]


def decoder_targets(tok, local: torch.Tensor) -> torch.Tensor:
    """The V2L decoder's input of local ids (B, h·w): (B, h·w, d) quantized local features."""
    h = tok.config.latent_size
    with torch.no_grad():
        return tok.net.local_quantizer.lookup(local.long().reshape(-1, h, h)).flatten(2).transpose(1, 2)


def step_losses(net: SeedNet, stage: str, data, tok, idx: list[int], gen) -> dict:
    feats = data.features[idx].float()
    if stage == "qformer":
        causal = net.qformer(feats)
        img = net.qformer.embed(causal)
        scale = net.qformer.logit_scale.exp().clamp(max=100)
        loss = contrastive_loss(img, data.batch_texts(idx, gen), scale, same_text_mask(data, idx))
        return {"loss": loss, "contrastive": loss}
    with torch.no_grad():
        causal = net.qformer(feats)
    q, codes, vq = net.quantizer(causal)
    recon = net.reconstructor(q)
    rec = cosine_loss(recon, causal)
    few = idx[:REVERSE_BATCH]  # the Reverse Q-Former is the costly part: a quarter of the batch per step
    drawn = net.reverse(recon[: len(few)].detach())
    target = decoder_targets(tok, data.local[few])
    mse = F.mse_loss(drawn, target) / target.var()  # relative to the targets' variance (1 = predicting the mean)
    return {"loss": vq + rec + mse, "vq": vq, "cosine": rec, "mse": mse, "codes": codes}


def _save(out: Path, net: SeedNet, opt, stage: str, step: int) -> None:
    from safetensors.torch import save_file

    from ..training.checkpoints import is_checkpoint_name, optimizer_to_files

    folder = out / f"checkpoint-{step:07d}"
    with atomic_path(folder, replace=is_checkpoint_name) as tmp:
        tmp.mkdir()
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp / "model.safetensors"))
        tensors, meta = optimizer_to_files(opt)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "stage": stage, "optimizer": meta}))
    write_json_atomic(out / "latest.json", {"step": step, "checkpoint": folder.name})
    for old in sorted(out.glob("checkpoint-*"))[:-2]:
        import shutil

        shutil.rmtree(old, ignore_errors=True)


def _resume(out: Path, net: SeedNet, make_opt, say) -> tuple[int, object]:
    from ..files import read_json, read_safetensors
    from ..training.checkpoints import checkpoint_candidates, optimizer_from_files

    for folder in checkpoint_candidates(out):
        try:
            state = read_json(folder / "trainer_state.json")
            net.load_state_dict(read_safetensors(folder / "model.safetensors"))
            opt = make_opt(state["stage"])
            optimizer_from_files(opt, read_safetensors(folder / "optimizer.safetensors"), state["optimizer"])
        except Exception as e:  # noqa: BLE001 - any unreadable part makes the checkpoint unusable
            say(f"v2l: checkpoint {folder} is damaged ({e}); trying an older one")
            continue
        say(f"v2l: resuming from {folder} (step {state['step']}, stage {state['stage']})")
        return int(state["step"]), opt
    return 0, None


def train_tokenizer(
    cfg: SeedConfig,
    tcfg: SeedTrainConfig,
    out: str | Path,
    data,
    vl,
    tok,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    say=lambda m: print(m, file=sys.stderr),
) -> tuple[SeedNet, dict]:
    """Stages I and II on `data` (`v2l.seed.data.SeedData`); returns the trained net and the stages' records."""
    from ..training.trainer import append_csv, truncate_csv
    from ..tuning.trainer import peak_rss_mb

    out = Path(out)
    torch.manual_seed(tcfg.seed)
    h = tok.config.latent_size
    net = SeedNet(cfg, data.features.shape[-1], data.text_emb.shape[-1], h * h, tok.config.embed_dim)
    total = tcfg.qformer_steps + tcfg.codebook_steps
    bounds = {"qformer": (0, tcfg.qformer_steps), "codebook": (tcfg.qformer_steps, total)}

    def make_opt(stage):
        return torch.optim.AdamW(stage_params(net, stage), lr=tcfg.lr, weight_decay=0.0)

    start, opt = _resume(out, net, make_opt, say) if resume else (0, None)
    if start:
        for stage in STAGES:
            truncate_csv(out / f"log-{stage}.csv", start)
    out.mkdir(parents=True, exist_ok=True)
    records = {}
    used = torch.zeros(cfg.codebook_size, dtype=torch.bool)
    bar = tqdm(total=total, initial=start, desc="seed tokenizer", disable=not progress, dynamic_ncols=True)
    step = start
    for stage in STAGES:
        lo, hi = bounds[stage]
        if step >= hi:
            continue
        if opt is None or step == lo:
            opt = make_opt(stage)
        net.train()
        net.qformer.train(stage == "qformer")
        net.qformer.requires_grad_(stage == "qformer")
        t0, seen = time.perf_counter(), 0
        while step < hi:
            for g in opt.param_groups:
                g["lr"] = lr_at(step - lo, tcfg.warmup_steps, hi - lo, tcfg.lr)
            idx, gen = batch_indices(len(data), tcfg.batch_size, tcfg.seed, step)
            terms = step_losses(net, stage, data, tok, idx, gen)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()
            step += 1
            seen += len(idx)
            if "codes" in terms:
                used[terms["codes"].flatten().unique()] = True
            if step % tcfg.log_every == 0 or step == hi:
                row = {"step": step, **{k: float(v.detach()) for k, v in terms.items() if k != "codes"}}
                row["images_per_s"] = seen / (time.perf_counter() - t0)
                append_csv(out / f"log-{stage}.csv", row)
                bar.set_postfix(stage=stage, loss=f"{row['loss']:.3f}")
            bar.update(1)
            if stop_after is not None and step >= stop_after:
                bar.close()
                return net, records
            if step % tcfg.checkpoint_every == 0 or step == hi:
                _save(out, net, opt, stage, step)
        wall = time.perf_counter() - t0
        records[stage] = {
            "steps": hi - lo,
            "steps_this_process": seen // tcfg.batch_size,
            "images_per_s": round(seen / wall, 1) if wall else None,
            "wall_s": round(wall, 1),
            "peak_rss_mb": round(peak_rss_mb()),
        }
    bar.close()
    net.eval()
    return net, records


def code_usage(net: SeedNet, features: torch.Tensor, batch: int = 256) -> dict:
    """How many codes the images use: the fraction of the codebook, and the perplexity of the code distribution."""
    with torch.no_grad():
        codes = torch.cat([net.encode(features[s : s + batch].float()) for s in range(0, len(features), batch)])
    counts = torch.bincount(codes.flatten(), minlength=net.config.codebook_size).float()
    p = counts / counts.sum()
    ppl = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    return {
        "codes_used": int((counts > 0).sum()),
        "codebook_size": net.config.codebook_size,
        "fraction_used": round(float((counts > 0).float().mean()), 4),
        "perplexity": round(ppl, 1),
        "images": len(features),
    }


def check_stage(stage: str) -> str:
    if stage not in (*STAGES, "llm"):
        raise V2LError(f"--stage {stage!r} is not a SEED stage: use qformer, codebook or llm.")
    return stage
