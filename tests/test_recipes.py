"""Recipes: every shipped recipe loads and validates, bad recipe files are one sentence naming the file, a two-stage
tiny recipe runs end to end, survives a kill -9 and ends with the same weights as a run never killed, its records
equal the recipe, and the shipped checkpoint's training.json is the `cpu` recipe's history."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from v2l.cli import app
from v2l.errors import ConfigError
from v2l.training.recipe import (
    list_recipes,
    load_recipe,
    parse_recipe,
    run_recipe,
    ship_recipe,
    stage_state,
    train_config,
)

runner = CliRunner()
SHIPPED = ("cpu", "lqae", "paper", "spae", "table6", "vqgan-llm")


def test_every_shipped_recipe_loads_and_validates():
    assert set(SHIPPED) <= set(list_recipes())
    for name in SHIPPED:
        rec = load_recipe(name)
        assert rec.name == name and rec.version >= 1 and rec.stages and len(rec.sha256) == 64
    assert load_recipe("cpu").ship == "whole-ft" and load_recipe("paper").stages[0].get("preset") == "paper"
    for baseline in ("vqgan-llm", "lqae", "spae"):
        assert load_recipe(baseline).stages[0].get("model") == baseline


def test_dry_run_prints_one_line_per_stage_and_runs_nothing(tmp_path):
    res = runner.invoke(app, ["recipe", "run", "cpu", "--dry-run", "-o", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["stage 1", "stage 2", "stage 3", "stage 4"]
    assert "gpu-ch64" in lines[0] and "4690 steps × 64" in lines[0]
    assert "decoder only from stage gpu-ch64" in lines[1] and "from stage decoder-ft2 (fp16 weights)" in lines[3]
    assert not (tmp_path / "runs").exists()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = 'x'\n[[stages]]\nname = 'a'\nsteps = [", "not valid TOML"),
        ("name = 'x'\n[[stages]]\nname = 'a'\nstep = 3\n", "unknown keys ['step']"),
        ("name = 'x'\n[[stages]]\nname = 'a'\nsteps = 0\n", "--steps"),
        ("name = 'x'\n[[stages]]\nname = 'a'\npreset = 'huge'\n", "huge"),
        ("name = 'x'\n[[stages]]\nname = 'a'\ninit = 'b'\n[[stages]]\nname = 'b'\n", "comes after it"),
        ("name = 'x'\n[[stages]]\nname = 'a'\n[[stages]]\nname = 'a'\n", "two stages are named"),
        ("name = 'x'\nship = 'z'\n[[stages]]\nname = 'a'\n", "names no stage"),
        ("name = 'x'\n", "at least one [[stages]]"),
        ("name = 'x'\nformat = 9\n[[stages]]\nname = 'a'\n", "format 9"),
        ("name = 'x'\n[[stages]]\nname = 'a'\ninit_weights = 'fp8'\n", "init_weights"),
        ("name = 'x'\n[[stages]]\nname = 'a'\ntrain_only = 'decoder'\n", "--train-only"),
    ],
)
def test_a_bad_recipe_file_is_one_sentence_naming_it(tmp_path, text, message):
    path = _write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert message in str(err.value) and ("bad.toml" in str(err.value))
    res = runner.invoke(app, ["recipe", "run", str(path), "--dry-run"])
    assert res.exit_code != 0


def test_unknown_recipe_and_stage_name_the_valid_ones():
    with pytest.raises(ConfigError, match="use one of .*cpu"):
        load_recipe("nope")
    with pytest.raises(ConfigError, match="use one of gpu-ch64, decoder-ft"):
        load_recipe("cpu").stage("nope")


def test_the_shipped_checkpoint_record_is_the_cpu_recipe():
    """training.json of the shipped checkpoint names the recipe, and each of its four stages ran with exactly the
    recipe's training and model settings (the run's own config.json, not a parse of a script)."""
    from v2l.tokenizer.image_tokenizer import SHIPPED as CKPTS

    rec = load_recipe("cpu")
    training = json.loads((CKPTS / "v2l-cpu" / "training.json").read_text())
    assert training["recipe"]["name"] == "cpu" and training["recipe"]["version"] == rec.version
    assert [s["stage"] for s in training["stages"]] == [s.name for s in rec.stages]
    first_model = None
    for stage, record in zip(rec.stages, training["stages"], strict=True):
        want = train_config(stage, init_folder="x" if stage.init else "").to_dict()
        got = dict(record["train_config"])
        assert bool(got.pop("init", "")) == bool(want.pop("init")), stage.name
        from v2l.training import TrainConfig

        defaults = json.loads(json.dumps(TrainConfig().to_dict()))  # fields newer than the GPU stage's record
        assert {k: got.get(k, defaults[k]) for k in want} == json.loads(json.dumps(want)), stage.name
        assert set(got) <= set(want), stage.name
        assert record["settings"] == stage.settings
        assert record["steps"] == want["steps"]
        first_model = first_model or record["model_config"]
        assert record["model_config"] == first_model  # the later stages start from the first stage's model
    from v2l.training.recipe import model_config

    assert json.loads(json.dumps(model_config(rec.stages[0]).to_dict())) == first_model


# ---- a tiny two-stage recipe, end to end -------------------------------------------------------------------------


@pytest.fixture
def tiny_recipe(tmp_path, tiny_clip_dir, tiny_codebook_dir, image_folder) -> Path:
    return _write(
        tmp_path / "tiny.toml",
        f"""
format = 1
name = "tiny"
version = 3
description = "two tiny stages"
ship = "finetune"

[defaults]
preset = "tiny"
vl = "hf-clip:{tiny_clip_dir}"
codebook = "{tiny_codebook_dir}"
data = "{image_folder}"
split = ""
classes = "all"
batch_size = 4
lr = 2e-3
warmup_steps = 2
disc_start = 1000000000
perceptual_weight = 0.0
log_every = 1

[[stages]]
name = "scratch"
steps = 40
checkpoint_every = 5

[[stages]]
name = "finetune"
init = "scratch"
init_weights = "fp16"
steps = 6
checkpoint_every = 3
lr = 1e-3
""",
    )


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_a_two_stage_recipe_runs_resumes_after_kill_and_ships_its_record(tiny_recipe, tmp_path):
    rec = load_recipe(tiny_recipe)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "V2L_THREADS": "1"}  # both runs on the same threads: same floats
    whole = tmp_path / "whole"
    cmd = [sys.executable, "-m", "v2l", "recipe", "run", str(tiny_recipe), "-o", str(whole)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert all(stage_state(whole, s) == "done" for s in rec.stages)
    assert (whole / "scratch" / "final-fp16" / "model.safetensors").is_file()  # stage 2 started from fp16 weights
    cfg = json.loads((whole / "finetune" / "config.json").read_text())["train"]
    assert cfg["init"] == str(whole / "scratch" / "final-fp16") and cfg["lr"] == 1e-3 and cfg["steps"] == 6

    # kill -9 the same recipe in a fresh folder after its first checkpoint, then rerun the same command
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "v2l", "recipe", "run", str(tiny_recipe), "-o", str(killed)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while not (killed / "scratch" / "latest.json").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]  # it was killed mid-run
    assert stage_state(killed, rec.stages[0]) == "started"
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(resuming)" in again.stderr and "2 of 2 stages done" in again.stdout
    a, b = _weights(whole / "finetune" / "final"), _weights(killed / "finetune" / "final")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max() <= 1e-6 * (1 + a[k].abs().max()), k

    # rerunning a finished recipe trains nothing
    res = runner.invoke(app, ["recipe", "run", str(tiny_recipe), "-o", str(killed)])
    assert res.exit_code == 0 and "already done" in res.stderr

    # the records: each stage's stage.json holds the recipe's stage; the shipped training.json equals the recipe
    for stage in rec.stages:
        own = json.loads((killed / stage.name / "stage.json").read_text())
        assert own["settings"] == stage.settings and own["recipe_sha256"] == rec.sha256
        assert len(own["machines"]) == (2 if stage.name == "scratch" else 1)  # the killed run, then its resume
    dest = ship_recipe(rec, killed, tmp_path / "shipped", say=lambda m: None)
    training = json.loads((dest / "training.json").read_text())
    assert training["recipe"]["name"] == "tiny" and training["recipe"]["version"] == 3
    assert [s["stage"] for s in training["stages"]] == ["scratch", "finetune"]
    for stage, record in zip(rec.stages, training["stages"], strict=True):
        want = train_config(stage, init_folder=record["train_config"]["init"]).to_dict()
        assert record["train_config"] == json.loads(json.dumps(want)) and record["settings"] == stage.settings
        assert record["steps"] == stage.get("steps")
    shipped = _weights(dest)
    assert {str(v.dtype) for v in shipped.values()} == {"torch.float16"}
    from v2l.tokenizer import ImageTokenizer

    tok = ImageTokenizer.from_pretrained(dest, codebook=str(rec.stages[0].get("codebook")), progress=False)
    assert tok.config.resolution == 16


def test_train_recipe_stage_refuses_options_the_recipe_sets(tiny_recipe, tmp_path):
    res = runner.invoke(app, ["train", "--recipe", str(tiny_recipe), "--stage", "scratch", "--lr", "0.1"])
    assert res.exit_code != 0
    res = runner.invoke(app, ["train", "--recipe", str(tiny_recipe)])  # two stages: --stage is needed
    assert res.exit_code != 0
    with pytest.raises(ConfigError, match="no such stage"):
        load_recipe(tiny_recipe).stage("third")


def test_a_stage_cannot_start_before_its_init_stage_is_done(tiny_recipe, tmp_path):
    from v2l.errors import V2LError

    rec = load_recipe(tiny_recipe)
    with pytest.raises(V2LError, match="has not finished"):
        run_recipe(rec, tmp_path / "runs", stages=["finetune"], say=lambda m: None)
    with pytest.raises(V2LError, match="has not finished"):
        ship_recipe(rec, tmp_path / "runs", tmp_path / "dest", say=lambda m: None)


def test_parse_recipe_from_a_dict():
    rec = parse_recipe({"name": "d", "stages": [{"name": "only", "steps": 5, "preset": "tiny"}]})
    assert rec.stages[0].settings == {"name": "only", "steps": 5, "preset": "tiny"} and rec.version == 1
