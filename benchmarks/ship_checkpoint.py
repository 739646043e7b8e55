"""Copy a finished training run's model into the package as the shipped CPU checkpoint (fp16 safetensors).

    python benchmarks/ship_checkpoint.py runs/cpu-long --script benchmarks/train_cpu_long.sh

Writes src/v2l/resources/checkpoints/v2l-cpu/: model.safetensors (fp16), config.json (model config + codebook
identity, without the local cache path) and training.json (the run's settings and a summary of its log). A run that
started from another (`v2l train --init`) keeps the shipped record of that run under "init": ship the first first.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

DEST = Path(__file__).resolve().parent.parent / "src" / "v2l" / "resources" / "checkpoints" / "v2l-cpu"


def train_command(script: Path, run: str) -> str:
    """`bash SCRIPT (v2l train ...)`: the script's `v2l train` command that writes `run` (a script may train in
    stages), continuation lines joined."""
    text = re.sub(r"\\\n\s*", "", script.read_text())
    lines = [ln for ln in text.splitlines() if "$V2L train" in ln]
    line = next((ln for ln in lines if f"--out {Path(run).as_posix()} " in ln), None)
    if line is None:
        raise SystemExit(f"{script} has no `v2l train --out {run}` command: pass the script that trained {run}.")
    args = re.sub(r"\s*(\$\{STOP_AFTER|\$\(resume).*$", "", line.split("$V2L train", 1)[1]).strip()
    return f"bash {script.as_posix()} (v2l train {args})"


def main(run: str, script: Path) -> None:
    run_dir = Path(run)
    command = train_command(script, run)
    per_class = int(re.search(r"--per-class (\d+)", command).group(1))  # not in the run's config: a data option
    final = run_dir / "final"
    meta = json.loads((final / "config.json").read_text())
    used = meta.pop("codebook_folder", None)
    if used and "global_sha256" not in meta["codebook"]:  # a run saved before checkpoints recorded it
        from v2l.codebooks import Codebook

        meta["codebook"]["global_sha256"] = Codebook.load(used).global_sha256
    sd = {k: v.to(torch.float16).contiguous() for k, v in load_file(final / "model.safetensors").items()}
    rows = list(csv.DictReader(open(run_dir / "log.csv")))
    cfg = json.loads((run_dir / "config.json").read_text())
    first, last = rows[0], rows[-1]
    rates = sorted(float(r["images_per_s"]) for r in rows)
    summary = {
        "command": command,
        "train_config": cfg["train"],
        "model_config": cfg["model"],
        "data": f"tiny-imagenet-200 train split, the 160 training classes of v2l's fixed split, {per_class} images per "
        f"class ({160 * per_class:,} images); the 40 held-out few-shot classes were not used",
        "steps": int(last["step"]),
        "images_seen": int(last["step"]) * cfg["train"]["batch_size"],
        "first_logged": {k: float(v) for k, v in first.items()},
        "last_logged": {k: float(v) for k, v in last.items()},
        "images_per_s_median": rates[len(rates) // 2],
        "parameters": sum(v.numel() for v in sd.values()),
    }
    if (run_dir / "device.json").is_file():  # trained on a GPU machine through benchmarks/train_gpu.py
        device = json.loads((run_dir / "device.json").read_text())
        summary["trained_on"] = {
            k: device.get(k)
            for k in (
                "gpu",
                "torch",
                "python",
                "train_seconds",
                "calibration",
                "pixels_identical_to_pack_machine",
                "pack_data",
            )
        }
    else:  # trained where it is shipped (the scripts run both in turn)
        import os
        import platform

        summary["trained_on"] = {
            "machine": platform.processor() or platform.machine(),
            "cpu_cores": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        }
    init = cfg["train"].get("init")
    if init:  # a second stage (e.g. train_decoder_cpu.sh after train_gpu.sh): keep the first stage's record
        earlier = json.loads((DEST / "training.json").read_text()) if (DEST / "training.json").is_file() else {}
        # `--init cpu` started from the checkpoint shipped now, so its record is the first stage's
        if init != "cpu" and f"--out {Path(init).parent.as_posix()} " not in earlier.get("command", ""):
            raise SystemExit(
                f"{run_dir} started from --init {init}: ship that run first (its training.json is "
                "kept as this one's first stage)."
            )
        summary["init"] = earlier
    DEST.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(DEST / "model.safetensors"), metadata={"format": "pt"})
    (DEST / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    (DEST / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    size = (DEST / "model.safetensors").stat().st_size
    print(f"{DEST}: {size / 2**20:.1f} MiB, {summary['parameters']} parameters, {summary['steps']} steps")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("run", help="the training run's folder (its final/ model is shipped)")
    ap.add_argument(
        "--script", type=Path, required=True, help="the script that trained it, e.g. benchmarks/train_cpu_long.sh"
    )
    a = ap.parse_args()
    main(a.run, a.script)
