"""benchmarks/train_gpu.py, the bridge to a GPU machine that cannot read the data folder: what travels there must decode
to the same pixels, and the weights that come back in pieces must reassemble into the model that was trained."""

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file


@pytest.fixture(scope="module")
def tg(benchmark_module):
    return benchmark_module("train_gpu")


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90, optimize=True)
    return buf.getvalue()


def test_packed_images_decode_to_the_original_pixels(tg, tmp_path):
    blobs = [_jpeg(i) for i in range(3)]
    prefix = os.path.commonprefix(blobs)
    assert len(prefix) > 0  # the JPEG header they share is stored once
    (tmp_path / "images.bin").write_bytes(b"".join(b[len(prefix) :] for b in blobs))
    (tmp_path / "images.json").write_text(
        json.dumps({"prefix": prefix.hex(), "keys": ["a", "b", "c"], "sizes": [len(b) - len(prefix) for b in blobs]})
    )
    images = tg.PackedImages(tmp_path)
    assert len(images) == 3 and images.keys == ["a", "b", "c"]
    for i, b in enumerate(blobs):
        want = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))
        assert np.array_equal(np.asarray(images[i].image), want)
    # the pixel digest the GPU machine compares against the packing machine's
    assert tg._pixels_sha256(images[i].image for i in range(3)) == tg._pixels_sha256(
        Image.open(io.BytesIO(b)).convert("RGB") for b in blobs
    )
    assert tg._pixels_sha256(images[i].image for i in (0, 2, 1)) != tg._pixels_sha256(images[i].image for i in range(3))


def _export(folder: Path, sd: dict, step: int) -> None:
    folder.mkdir(parents=True)
    save_file(sd, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_config": {"ch": 8}, "trained_steps": step}))


def test_collected_weights_reassemble_into_the_trained_model_in_fp16(tg, tmp_path):
    g = torch.Generator().manual_seed(0)
    final = {f"w{i}": torch.randn(64, 64, generator=g) for i in range(6)} | {"steps": torch.tensor([7])}
    snap = {k: v * 2 if v.is_floating_point() else v for k, v in final.items()}
    run = tmp_path / "run"
    _export(run / "final", final, 20)
    _export(run / "snapshot-0000010", snap, 10)
    (run / "config.json").write_text(json.dumps({"train": {"steps": 20}}))
    (run / "log.csv").write_text("step,loss\n10,1.0\n20,0.5\n")
    (run / "device.json").write_text(json.dumps({"gpu": "test"}))
    dest = tmp_path / "out"
    tg.collect(run, dest, part_bytes=3 * 64 * 64 * 2)  # 3 fp16 matrices per file: the 6 need 2+ files
    parts = sorted(p.name for p in dest.glob("final-*.safetensors"))
    assert len(parts) >= 2
    assert all(p.stat().st_size < 16 * 2**20 for p in dest.iterdir())
    back = tmp_path / "back"
    tg.unpack(sorted(dest.iterdir()), back)
    for name, sd, step in (("final", final, 20), ("snapshot-0000010", snap, 10)):
        got = load_file(back / name / "model.safetensors")
        assert set(got) == set(sd)
        for k, v in sd.items():
            want = v.half() if v.is_floating_point() else v
            assert got[k].dtype == want.dtype and torch.equal(got[k], want), k
        assert json.loads((back / name / "config.json").read_text())["trained_steps"] == step
    assert (back / "log.csv").read_text() == (run / "log.csv").read_text()
    assert json.loads((back / "config.json").read_text()) == {"train": {"steps": 20}}
    assert json.loads((back / "device.json").read_text())["gpu"] == "test"


def test_a_killed_run_brings_back_its_newest_checkpoint(tg, tmp_path):
    run = tmp_path / "run"
    old, new = {"w": torch.zeros(4)}, {"w": torch.ones(4)}
    for step, sd in ((100, old), (200, new)):
        (run / f"checkpoint-{step:07d}").mkdir(parents=True)
        save_file(sd, str(run / f"checkpoint-{step:07d}" / "model.safetensors"))
    (run / "config.json").write_text("{}")
    (run / "log.csv").write_text("step\n")
    tg.collect(run, tmp_path / "out")
    info = json.loads((tmp_path / "out" / "device.json").read_text())
    assert info["killed"] is True and list(info["exports"]) == ["checkpoint-0000200"]
    (part,) = info["exports"]["checkpoint-0000200"]["parts"]
    assert torch.equal(load_file(tmp_path / "out" / part)["w"], new["w"].half())
