"""Training checkpoints: safetensors + JSON in `checkpoint-STEP/`, published by atomically rewriting `latest.json`
after the folder is complete, so a kill at any moment leaves the previous checkpoint usable."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import V2LError
from ..paths import atomic_path, write_json_atomic
from .config import TrainConfig


def is_checkpoint_name(folder: Path) -> bool:
    """A folder a checkpoint may replace: a (possibly damaged) earlier checkpoint of the same step."""
    return folder.name.startswith("checkpoint-")


def optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
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


def optimizer_from_files(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict = {int(pid): dict(v) for pid, v in meta["state"].items()}
    for key, t in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = t
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    out: Path,
    step: int,
    model,
    disc,
    opt_g,
    opt_d,
    sched,
    cfg: TrainConfig,
    model_cfg: dict,
    codebook_manifest: dict,
    keep: int = 2,
) -> Path:
    folder = out / f"checkpoint-{step:07d}"
    with atomic_path(folder, replace=is_checkpoint_name) as tmp:
        tmp.mkdir()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        save_file({k: v.contiguous() for k, v in disc.state_dict().items()}, str(tmp / "discriminator.safetensors"))
        opt_meta = {}
        for name, opt in (("optimizer_g", opt_g), ("optimizer_d", opt_d)):
            tensors, meta = optimizer_to_files(opt)
            save_file(tensors, str(tmp / f"{name}.safetensors"))
            opt_meta[name] = meta
        save_file({"torch_cpu": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        state = {
            "step": step,
            "train_config": cfg.to_dict(),
            "model_config": model_cfg,
            "scheduler": sched.state_dict(),
            "optimizers": opt_meta,
            "python_rng": repr(random.getstate()),
            "codebook": codebook_ref(codebook_manifest),
        }
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1, default=str))
    write_json_atomic(out / "latest.json", {"step": step, "checkpoint": folder.name})
    for old in sorted(out.glob("checkpoint-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def codebook_ref(manifest: dict) -> dict:
    return {
        "config": manifest.get("config"),
        "llm": manifest.get("llm"),
        "vl": manifest.get("vl"),
        "counts": manifest.get("counts"),
    }


def is_checkpoint(folder: Path) -> bool:
    return folder.name.startswith("checkpoint-") and (folder / "trainer_state.json").is_file()


def checkpoint_candidates(out: Path) -> list[Path]:
    """Checkpoint folders of a run, the one `latest.json` names first, then the others newest first."""
    found = sorted((p for p in out.glob("checkpoint-*") if is_checkpoint(p)), reverse=True)
    try:
        named = out / json.loads((out / "latest.json").read_text())["checkpoint"]
    except (OSError, ValueError, KeyError, TypeError):
        named = None
    if named is not None and named in found:
        found.remove(named)
        found.insert(0, named)
    return found


def latest_checkpoint(out: Path) -> Path | None:
    """The newest checkpoint folder of a run (the one `latest.json` names, if it is there), or None."""
    found = checkpoint_candidates(out)
    return found[0] if found else None


def is_run(out: Path) -> bool:
    """True for a folder `v2l train` wrote (its config.json, or a checkpoint)."""
    if latest_checkpoint(out) is not None:
        return True
    try:
        return "train" in json.loads((out / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def resume_latest_intact(out: Path, model, disc, opt_g, opt_d, sched, say=print) -> tuple[int, Path | None]:
    """Load the newest checkpoint that reads back whole; name each damaged one and fall back. (step, folder)."""
    for folder in checkpoint_candidates(out):
        try:
            return load_checkpoint(folder, model, disc, opt_g, opt_d, sched), folder
        except Exception as e:  # noqa: BLE001 - any unreadable part makes the checkpoint unusable
            say(f"v2l: checkpoint {folder} is damaged ({e}); trying an older one")
    return 0, None


def load_checkpoint(folder: Path, model, disc, opt_g, opt_d, sched) -> int:
    import ast

    state = json.loads(_read(folder / "trainer_state.json", lambda p: p.read_text()))
    model.load_state_dict(_read(folder / "model.safetensors", load_file))
    disc.load_state_dict(_read(folder / "discriminator.safetensors", load_file))
    for name, opt in (("optimizer_g", opt_g), ("optimizer_d", opt_d)):
        optimizer_from_files(opt, _read(folder / f"{name}.safetensors", load_file), state["optimizers"][name])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(_read(folder / "rng.safetensors", load_file)["torch_cpu"])
    random.setstate(ast.literal_eval(state["python_rng"]))
    return int(state["step"])


def _read(path: Path, reader):
    """`reader(path)`, with an error that names the file when it cannot be read back."""
    try:
        return reader(path)
    except Exception as e:  # noqa: BLE001 - truncated, corrupt, missing: all mean "this file is damaged"
        raise V2LError(f"{path.name} cannot be read ({type(e).__name__}: {str(e)[:100]})") from e
