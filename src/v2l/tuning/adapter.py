"""LoRA adapters, made: peft's LoRA layers on the LLM and `save_pretrained` plus `v2l_adapter.json` (reading them is
`v2l.backbones.adapters`)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..backbones.adapters import META
from ..errors import V2LError
from ..paths import atomic_path


def lora_config(targets, r: int, alpha: float, dropout: float):
    from peft import LoraConfig

    return LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none", task_type="CAUSAL_LM"
    )


def attach_lora(model, cfg):
    """`model` wrapped by peft with fresh LoRA layers (B = 0, so the output is the base model's until trained); every
    base weight is frozen. Unknown target names are one sentence listing what the model has."""
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
    return get_peft_model(model, lora_config(cfg.targets, cfg.r, cfg.alpha, cfg.dropout))


def save_adapter(peft_model, folder: str | Path, meta: dict) -> Path:
    """peft's `save_pretrained` (the LoRA weights only) plus `v2l_adapter.json`, written atomically."""
    import json

    folder = Path(folder)
    with atomic_path(folder, replace=True) as tmp:
        peft_model.save_pretrained(str(tmp))
        (tmp / META).write_text(json.dumps(meta, indent=1, default=str) + "\n")
    return folder
