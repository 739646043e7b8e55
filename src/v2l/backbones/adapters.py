"""LoRA adapters of the LLM, read: peft's own format (`adapter_config.json` + `adapter_model.safetensors`) plus one
file of ours, `v2l_adapter.json` (the base LLM the adapter was trained for: name, the sha256 of its source file,
vocabulary and hidden sizes; the V2L tokenizer whose tokens it read; the tuning settings). The base model is never
written. Training and saving adapters is `v2l.tuning`.

    lm = LanguageModel.load("smollm2-135m", adapter="v2l-cpu")      # merged into the in-memory weights
    peft_model = PeftModel.from_pretrained(base, adapter_folder("v2l-cpu"))   # peft's own loader works as well

`v2l-cpu` is the adapter shipped with v2l (`src/v2l/resources/adapters/`), trained by the LoRA recipe `lora-cpu` for
SmolLM2-135M and the shipped tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelNotFoundError, V2LError
from ..files import json_field, read_json, read_safetensors

SHIPPED = Path(__file__).resolve().parent.parent / "resources" / "adapters"
DEFAULT_ADAPTER = "v2l-cpu"
META = "v2l_adapter.json"
WEIGHTS = "adapter_model.safetensors"


def base_identity(model, name: str, source_hash: str | None) -> dict:
    """What identifies a base LLM: its name, the sha256 of its source file (GGUF presets), its architecture and
    sizes, and the sha256 of its input embeddings (telling apart folders and hub models of one architecture)."""
    import hashlib

    emb = model.get_input_embeddings().weight
    return {
        "name": name,
        "source_sha256": source_hash,
        "architecture": type(model).__name__,
        "vocab_size": int(emb.shape[0]),
        "hidden_size": int(emb.shape[1]),
        "embedding_sha256": hashlib.sha256(emb.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16],
    }


def adapter_folder(name: str | Path) -> Path:
    """A shipped adapter's name (`v2l-cpu`) or a folder holding `adapter_config.json`."""
    shipped = SHIPPED / str(name)
    if str(name) and "/" not in str(name) and (shipped / "adapter_config.json").is_file():
        return shipped
    folder = Path(name).expanduser()
    if not folder.is_dir():
        names = ", ".join(sorted(p.name for p in SHIPPED.iterdir() if p.is_dir())) if SHIPPED.is_dir() else "none"
        raise ModelNotFoundError(
            f"--adapter {name}: no such folder or shipped adapter (shipped: {names}); pass a folder written by "
            "`v2l tune` or peft's save_pretrained."
        )
    if not (folder / "adapter_config.json").is_file():
        raise ModelNotFoundError(
            f"--adapter {folder} has no adapter_config.json: pass a folder written by `v2l tune` or peft's "
            "save_pretrained."
        )
    return folder


def read_adapter_meta(folder: Path) -> dict:
    """`v2l_adapter.json` (empty for a plain peft folder); the peft config and weights are checked to be readable."""
    fix = "train it again with `v2l tune`, or pass another --adapter"
    cfg = read_json(folder / "adapter_config.json", fix=fix)
    json_field(cfg, "target_modules", (list, str), folder / "adapter_config.json", fix=fix)
    read_safetensors(folder / WEIGHTS, fix=fix)
    return read_json(folder / META, fix=fix) if (folder / META).is_file() else {}


def check_base(folder: Path, meta: dict, model, name: str, source_hash: str | None) -> None:
    """Refuse, in one sentence, an adapter trained for another base LLM than `model` (the source files' sha256 when
    both have one, else the architecture, sizes and input embeddings)."""
    base = meta.get("llm") or {}
    have = base_identity(model, name, source_hash)
    keys = ("architecture", "vocab_size", "hidden_size")
    keys += ("source_sha256",) if base.get("source_sha256") and source_hash else ("embedding_sha256",)
    for key in keys:
        want = base.get(key)
        if want is not None and want != have[key]:
            raise V2LError(
                f"--adapter {folder} was trained for the LLM {base.get('name', '?')} ({key} {want}), not "
                f"{name} ({key} {have[key]}): pass --llm {base.get('name', '?')} or an adapter trained for {name}."
            )


def load_adapter(model, adapter: str | Path, name: str, source_hash: str | None = None, merge: bool = True):
    """`model` with the adapter's LoRA layers (peft's `PeftModel.from_pretrained`), merged into its weights in memory
    when `merge` (so every engine of `LanguageModel` runs unchanged and as fast). Returns (model, meta)."""
    from peft import PeftModel

    folder = adapter_folder(adapter)
    meta = read_adapter_meta(folder)
    check_base(folder, meta, model, name, source_hash)
    try:
        peft_model = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as e:
        raise V2LError(
            f"--adapter {folder} does not fit the LLM {name} ({type(e).__name__}: {str(e).splitlines()[0][:120]}): "
            "pass an adapter trained for this LLM."
        ) from e
    if merge:
        return peft_model.merge_and_unload(), {**meta, "folder": str(folder)}
    return peft_model, {**meta, "folder": str(folder)}


def check_adapter(adapter: str | Path) -> Path:
    """The adapter's folder, with its files read and checked (one sentence if not), before any model loads."""
    folder = adapter_folder(adapter)
    read_adapter_meta(folder)
    return folder
