"""DDP with 2 CPU processes, launched by the exact command the README documents (`accelerate launch --multi_gpu
--num_processes 2 -m v2l train ...`), logs the same losses as one process (`python -m v2l train ...`) on the same
global batches."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def _readme_ddp_prefix() -> list[str]:
    """The README's DDP command up to the verb's options (`... -m v2l train`)."""
    readme = (REPO / "README.md").read_text()
    m = re.search(r"^(accelerate launch [^\n]*?-m v2l train)\b", readme, flags=re.M)
    assert m, "the README documents no `accelerate launch ... -m v2l train` command"
    return m.group(1).split()


def _rows(run: Path) -> list[dict]:
    with open(run / "log.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_readme_ddp_command_equals_one_process(tiny_codebook_dir, tiny_clip_dir, image_folder, tmp_path):
    args = [
        "--preset",
        "tiny",
        "--steps",
        "8",
        "--batch-size",
        "4",
        "--lr",
        "2e-3",
        "--warmup-steps",
        "2",
        "--disc-start",
        "1000000000",
        "--checkpoint-every",
        "1000",
        "--log-every",
        "1",
        "--vl",
        f"hf-clip:{tiny_clip_dir}",
        "--codebook",
        str(tiny_codebook_dir),
        "--data",
        str(image_folder),
        "--split",
        "",
        "--classes",
        "all",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "V2L_THREADS": "1", "HOME": str(tmp_path)}  # no accelerate config
    one = subprocess.run(
        [sys.executable, "-m", "v2l", "train", *args, "--out", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    launch = _readme_ddp_prefix()
    assert launch[:2] == ["accelerate", "launch"]
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    two = subprocess.run(
        [accelerate, *launch[1:], *args, "--out", str(tmp_path / "two")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert len(a) == len(b) == 8
    # Step 1 is computed before any update and step 2 after one: equal up to float rounding (a wrong shard of the
    # batch, or an update that is not the one-process one, breaks this). Later steps differ by the order of the
    # gradient all-reduce's float sums, and Adam amplifies that: its first updates are close to lr * sign(g), so a
    # near-zero gradient component whose sign rounds differently moves by a whole lr (with accelerate 1.15 the runs
    # differ by 0.1 % at step 3, 1.2 % at step 4 and 10 % at step 8). Those steps are compared on average.
    keys = ("loss", "rec", "perceptual", "vq")
    for ra, rb in zip(a[:2], b[:2], strict=True):
        for k in keys:
            assert float(ra[k]) == pytest.approx(float(rb[k]), rel=1e-5, abs=1e-6), (k, ra["step"], ra[k], rb[k])
    for k in keys:
        assert float(a[2][k]) == pytest.approx(float(b[2][k]), rel=1e-2), (k, a[2][k], b[2][k])
        mean_a, mean_b = (sum(float(r[k]) for r in rows[3:]) / len(rows[3:]) for rows in (a, b))
        assert mean_a == pytest.approx(mean_b, rel=0.05), (k, mean_a, mean_b)  # measured: within 1.8 %
    assert float(a[-1]["loss"]) < float(a[0]["loss"])  # it trained
    assert (tmp_path / "two" / "final" / "model.safetensors").is_file()
    assert "v2l: 1 process " in one.stderr and "v2l: 2 processes " in two.stderr  # two really ran


def _one_and_two_processes(args: list[str], tmp_path: Path):
    """(name, finished process) of `v2l ARGS -o tmp/one` alone and `accelerate launch --multi_gpu --num_processes 2
    -m v2l ARGS -o tmp/two` (gloo on CPU), each with its own cache, so nothing is shared between the runs."""
    accelerate = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2"]
    for name, launch in (("one", [sys.executable, "-m", "v2l"]), ("two", [*accelerate, "-m", "v2l"])):
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "V2L_THREADS": "1",
            "HOME": str(tmp_path),  # no accelerate config
            "V2L_CACHE": str(tmp_path / f"cache-{name}"),
        }
        res = subprocess.run(
            [*launch, *args, "--out", str(tmp_path / name)], env=env, capture_output=True, text=True, timeout=900
        )
        assert res.returncode == 0, res.stderr[-3000:]
        yield name, res


@pytest.mark.slow
def test_sharded_codebook_build_is_byte_identical(tiny_llama_dir, tiny_clip_dir, image_folder, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 -m v2l codebook build` (gloo on CPU): the two processes share
    the chunks of the expansion, the template embedding and the filtering images, and the artefact equals a
    one-process build byte for byte."""
    args = [
        "codebook",
        "build",
        *("--llm", str(tiny_llama_dir), "--vl", f"hf-clip:{tiny_clip_dir}", "--filter-data", str(image_folder)),
        *("--filter-split", "", "--filter-classes", "all", "--filter-per-class", "0", "--templates", "cpu"),
        *("--chunk-size", "40", "--batch-size", "16", "--device", "cpu", "--dtype", "float32"),
    ]
    runs = {}
    for name, res in _one_and_two_processes([*args, "--json"], tmp_path):
        runs[name] = json.loads(res.stdout)  # one report (the first process's), only JSON on stdout
        parts = tmp_path / f"cache-{name}" / "codebook-parts"
        runs[name]["chunks"] = sorted(p.name for p in parts.rglob("*.safetensors"))
    one, two = tmp_path / "one", tmp_path / "two"
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    for f in files:
        assert (one / f).read_bytes() == (two / f).read_bytes(), f
    assert runs["one"]["chunks"] == runs["two"]["chunks"] and len(runs["one"]["chunks"]) > 4  # several chunks to share
    assert runs["one"]["codebooks"][0]["counts"] == runs["two"]["codebooks"][0]["counts"]
    assert (runs["one"]["processes"], runs["two"]["processes"]) == (1, 2)  # two really ran
    assert runs["two"]["runtime"]["device"] == "cpu" and runs["two"]["runtime"]["dtype"] == "float32"


@pytest.mark.slow
def test_lora_tuning_over_two_processes_equals_one(tiny_llama_dir, tiny_tokenizer_dir, image_folder, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 -m v2l tune`: the processes share the tokenization of the
    training images and split each batch; the logged losses and the adapter equal one process's."""
    from safetensors.torch import load_file

    args = ["tune", "--llm", str(tiny_llama_dir), "--tokenizer", str(tiny_tokenizer_dir), "--data", str(image_folder)]
    args += ["--classes", "2", "--per-class", "3", "--epochs", "2", "--batch-size", "2", "--lr", "1e-2", "--json"]
    out = {
        name: json.loads(res.stdout.strip().splitlines()[-1]) for name, res in _one_and_two_processes(args, tmp_path)
    }
    assert (out["one"]["processes"], out["two"]["processes"]) == (1, 2)
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert len(a) == len(b) >= 2  # logged every 5 steps of 6
    for x, y in zip(a, b, strict=True):
        assert float(x["loss"]) == pytest.approx(float(y["loss"]), rel=1e-3), (x, y)
    wa = load_file(str(tmp_path / "one" / "final" / "adapter_model.safetensors"))
    wb = load_file(str(tmp_path / "two" / "final" / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-4), k
