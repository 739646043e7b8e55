"""LoRA adapters, made: peft's LoRA layers on the LLM and `save_pretrained` plus `v2l_adapter.json` (reading them is
`v2l.backbones.adapters`)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..backbones.adapters import META
from ..errors import V2LError
from ..paths import atomic_path


def lora_config(targets, r: int, alpha: float, dropout: float, tokens: list[int] | None = None):
    from peft import LoraConfig

    extra = {"trainable_token_indices": {"embed_tokens": list(tokens)}} if tokens else {}
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(targets),
        bias="none",
        task_type="CAUSAL_LM",
        **extra,
    )


def attach_lora(model, cfg, tokens: list[int] | None = None):
    """`model` wrapped by peft with fresh LoRA layers (B = 0, so the output is the base model's until trained); every
    base weight is frozen. `tokens`: rows of the input embedding (and of a tied head) trained too (peft's trainable
    tokens; SEED's new tokens). Unknown target names are one sentence listing what the model has."""
    from peft import get_peft_model

    model.requires_grad_(False)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in cfg.targets if t not in names]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise V2LError(
            f"--targets {','.join(missing)}: the LLM has no module of that name; its linear layers are "
            f"{', '.join(linear)}."
        )
    return get_peft_model(model, lora_config(cfg.targets, cfg.r, cfg.alpha, cfg.dropout, tokens))


def save_adapter(peft_model, folder: str | Path, meta: dict) -> Path:
    """peft's `save_pretrained` (the LoRA weights only) plus `v2l_adapter.json`, written atomically."""
    import json

    folder = Path(folder)
    with atomic_path(folder, replace=True) as tmp:
        peft_model.save_pretrained(str(tmp), save_embedding_layers=False)  # resized (SEED): only the new rows
        (tmp / META).write_text(json.dumps(meta, indent=1, default=str) + "\n")
    return folder
