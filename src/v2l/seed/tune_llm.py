"""Stage III (SEED v1 §2.3): LoRA and the new token rows on image → text and text → image sequences, by the LoRA
trainer's loop (`v2l.tuning.trainer.lora_loop`: Accelerate, resumable, atomic checkpoints); and loading the result.

The adapter folder is peft's (`PeftModel.from_pretrained` works on the base LLM resized to `vocab_size` rows) plus
`v2l_adapter.json`, which records the base LLM's identity *before* the new rows were added, so a SEED-LLM built on
another LLM is refused in one sentence.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from ..backbones.adapters import META, base_identity, check_base, read_adapter_meta
from ..errors import ModelNotFoundError, V2LError
from ..machine import machine
from ..paths import write_json_atomic
from .config import SeedLLMConfig
from .llm import PairSequences, SeedLLM, SeedVocabulary, extend_vocabulary


def train_llm(
    cfg: SeedLLMConfig,
    out: str | Path,
    codes: torch.Tensor,
    texts: list[list[str]],
    codebook_size: int,
    per_image: int = 2,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    say=lambda m: print(m, file=sys.stderr),
) -> dict:
    """Tune `cfg.llm` on the images' codes (N, Q) and texts; the adapter lands in `out/final/`. Returns the summary."""
    from accelerate.utils import set_seed

    from ..backbones.language_model import text_start_ids
    from ..backbones.llm_loading import open_model
    from ..training.trainer import make_accelerator, truncate_csv
    from ..tuning.adapter import attach_lora, save_adapter
    from ..tuning.data import collate
    from ..tuning.trainer import EpochBatches, check_resume, lora_loop, peak_rss_mb, resume_checkpoint

    out = Path(out)
    if resume:
        check_resume(out, cfg)
    acc, _ = make_accelerator(cfg.mixed_precision)
    set_seed(cfg.seed)
    model, tokenizer, name, _, source_hash = open_model(cfg.llm, progress=progress)
    llm_id = base_identity(model, name, source_hash)
    vocab = SeedVocabulary(model.get_input_embeddings().weight.shape[0], codebook_size)
    extend_vocabulary(model, vocab)
    data = PairSequences(
        vocab, tokenizer, text_start_ids(tokenizer), codes, texts, per_image, cfg.max_caption_tokens, cfg.seed
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    peft_model = attach_lora(model, cfg, tokens=vocab.new_ids)
    rows = [p for n, p in peft_model.named_parameters() if p.requires_grad and "trainable_tokens" in n]
    lora = [p for n, p in peft_model.named_parameters() if p.requires_grad and "trainable_tokens" not in n]
    opt = torch.optim.Adam(
        [{"params": lora, "base_lr": cfg.lr}, {"params": rows, "base_lr": cfg.token_lr}], lr=cfg.lr, betas=cfg.betas
    )
    total, warmup = cfg.steps(len(data)), cfg.warmup_steps(len(data))
    start = resume_checkpoint(out, peft_model, opt, say) if resume else 0
    if start and acc.is_main_process:
        truncate_csv(out / "log.csv", start)
    loader = torch.utils.data.DataLoader(
        data,
        batch_sampler=EpochBatches(len(data), cfg.batch_size, cfg.seed, cfg.epochs, start),
        collate_fn=lambda b: collate(b, int(pad or 0)),
    )
    peft_model, opt, loader = acc.prepare(peft_model, opt, loader)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            out / "config.json", {"kind": "seed-llm", "train": cfg.to_dict(), "llm": llm_id, "machine": machine()}
        )
    step, tokens, t0 = lora_loop(
        acc, peft_model, opt, loader, cfg, out, start, total, warmup, progress, stop_after, desc="seed llm"
    )
    acc.wait_for_everyone()
    wall = time.perf_counter() - t0
    summary = {
        "steps": total,
        "sequences": len(data),
        "trainable_parameters": sum(p.numel() for p in lora) + sum(p.numel() for p in rows),
        "new_token_rows": len(vocab.new_ids),
        "labelled_tokens_per_s": round(tokens / wall, 1) if wall else None,
        "sequences_per_s": round((step - start) * cfg.batch_size / wall, 2) if wall else None,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak_rss_mb()),
        "mixed_precision": cfg.mixed_precision,
    }
    if acc.is_main_process and step == total:
        raw = acc.unwrap_model(peft_model)
        raw.peft_config["default"].base_model_name_or_path = name
        meta = {
            "format": 1,
            "kind": "seed-llm",
            "llm": llm_id,
            "vocab": {"base": vocab.base, "codes": vocab.codes},
            "config": cfg.to_dict(),
            "training": summary,
        }
        save_adapter(raw, out / "final", meta)
    return summary


def load_seed_llm(folder: str | Path, queries: int, llm: str | None = None, progress: bool = False) -> SeedLLM:
    """The SEED-LLM of an adapter folder on its base LLM (or `llm`, which must be the same model)."""
    from peft import PeftModel

    from ..backbones.llm_loading import open_model

    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file() or not (folder / META).is_file():
        raise ModelNotFoundError(f"{folder} is not a SEED-LLM adapter: train one with `v2l train --model seed`.")
    meta = read_adapter_meta(folder)
    if meta.get("kind") != "seed-llm" or not isinstance(meta.get("vocab"), dict):
        raise V2LError(f"{folder} is a LoRA adapter of v2l tune, not a SEED-LLM: pass a SEED checkpoint.")
    name = llm or (meta.get("llm") or {}).get("name") or "smollm2-135m"
    model, tokenizer, name, _, source_hash = open_model(name, progress=progress)
    check_base(folder, meta, model, name, source_hash)
    vocab = SeedVocabulary(int(meta["vocab"]["base"]), int(meta["vocab"]["codes"]))
    extend_vocabulary(model, vocab)
    try:
        merged = PeftModel.from_pretrained(model, str(folder), is_trainable=False).merge_and_unload()
    except (RuntimeError, ValueError, KeyError) as e:
        raise V2LError(
            f"{folder} does not fit the LLM {name} ({type(e).__name__}): pass the SEED checkpoint's LLM."
        ) from e
    return SeedLLM(merged, tokenizer, vocab, queries, name)
