"""Copy a finished training run's model into the package as the shipped CPU checkpoint (fp16 safetensors).

    python benchmarks/ship_checkpoint.py /work/runs/cpu

Writes src/v2l/resources/checkpoints/v2l-cpu/: model.safetensors (fp16), config.json (model config + codebook
identity, without the local cache path) and training.json (the run's settings and a summary of its log).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

DEST = Path(__file__).resolve().parent.parent / "src" / "v2l" / "resources" / "checkpoints" / "v2l-cpu"


def main(run: str) -> None:
    run_dir = Path(run)
    final = run_dir / "final"
    meta = json.loads((final / "config.json").read_text())
    meta.pop("codebook_folder", None)
    sd = {k: v.to(torch.float16).contiguous() for k, v in load_file(final / "model.safetensors").items()}
    rows = list(csv.DictReader(open(run_dir / "log.csv")))
    cfg = json.loads((run_dir / "config.json").read_text())
    first, last = rows[0], rows[-1]
    rates = sorted(float(r["images_per_s"]) for r in rows)
    summary = {
        "command": "bash benchmarks/train_cpu.sh (v2l train --preset cpu --steps 1000 --batch-size 16 "
                   "--per-class 50 --warmup-steps 50 --disc-start 700 --checkpoint-every 100 --snapshot 300)",
        "train_config": cfg["train"], "model_config": cfg["model"],
        "data": "tiny-imagenet-200 train split, the 160 training classes of v2l's fixed split, 50 images per class "
                "(8,000 images); the 40 held-out few-shot classes were not used",
        "steps": int(last["step"]), "images_seen": int(last["step"]) * cfg["train"]["batch_size"],
        "first_logged": {k: float(v) for k, v in first.items()},
        "last_logged": {k: float(v) for k, v in last.items()},
        "images_per_s_median": rates[len(rates) // 2],
        "parameters": sum(v.numel() for v in sd.values()),
    }
    DEST.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(DEST / "model.safetensors"), metadata={"format": "pt"})
    (DEST / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    (DEST / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    size = (DEST / "model.safetensors").stat().st_size
    print(f"{DEST}: {size / 2**20:.1f} MiB, {summary['parameters']} parameters, {summary['steps']} steps")


if __name__ == "__main__":
    main(sys.argv[1])
