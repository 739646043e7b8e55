"""The bad-input corpus (tests/corpus.py) through every CLI verb: each case ends in one clear sentence (exit 2, no
traceback, nothing written or removed) or is handled correctly. Most cases run in-process (fast); a representative
subset also runs as a real `python -m v2l` process.

`V2L_CORPUS_REPORT=FILE` turns the run into a measurement (benchmarks/bench_bad_input.py): every case runs as a
process under `V2L_CORPUS_PYTHONPATH` (an older v2l, say), its verdict is appended to FILE, and nothing is asserted.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from corpus import Result, cases, make_images, make_places, make_tokens, snapshot, verdict

REPORT = os.environ.get("V2L_CORPUS_REPORT")


@pytest.fixture(scope="session")
def corpus_assets(tmp_path_factory, tiny_codebook_dir, tiny_clip_dir, image_folder, tiny_vl, tiny_tokenizer_dir):
    from v2l.codebooks import Codebook
    from v2l.data import ImageFolder
    from v2l.tokenizer import get_config
    from v2l.tokenizer.image_tokenizer import ImageTokenizer
    from v2l.tokenizer.quantizers import nearest_k
    from v2l.training import TokenizerTrainData, TrainConfig, train

    base = tmp_path_factory.mktemp("corpus-assets")
    cb = Codebook.load(tiny_codebook_dir)
    tok = tiny_tokenizer_dir
    torch.manual_seed(0)
    good_png = base / "good.png"
    from PIL import Image

    Image.new("RGB", (20, 20), (120, 30, 200)).save(good_png)
    good = ImageTokenizer.from_pretrained(tok, progress=False).tokenize([good_png])[0].to_json()
    # a run stopped after step 5 (checkpoints at 2 and 4) for the damaged-checkpoint case
    ds = ImageFolder(image_folder)
    emb = tiny_vl.encode_image([s.image for s in ds])
    data = TokenizerTrainData(ds, list(range(len(ds))), nearest_k(emb, cb.global_embeddings, 3), resolution=16)
    cfg = TrainConfig(
        preset="tiny",
        steps=6,
        batch_size=4,
        lr=1e-3,
        warmup_steps=1,
        disc_start=1000,
        checkpoint_every=2,
        log_every=1,
        perceptual_weight=0.0,
    )
    run = base / "run-template"
    train(cfg, get_config("tiny"), cb, data, run, progress=False, stop_after=5)
    return {
        "tok": str(tok),
        "good": good,
        "run": run,
        "vl": f"hf-clip:{tiny_clip_dir}",
        "codebook": str(tiny_codebook_dir),
        "image_folder": str(image_folder),
    }


def _corpus(root: Path, assets: dict):
    import shutil

    run = root / "run-damaged"
    shutil.copytree(assets["run"], run)
    latest = run / "checkpoint-0000004" / "model.safetensors"
    latest.write_bytes(latest.read_bytes()[:100])  # truncated: the newest checkpoint is damaged
    return cases(
        root,
        assets["tok"],
        assets["vl"],
        assets["codebook"],
        make_images(root),
        make_tokens(root, assets["good"]),
        make_places(root),
        run=run,
        image_folder=assets["image_folder"],
    )


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory):
    return tmp_path_factory.mktemp("corpus")


def _case_names() -> list[str]:
    """The case names, from a dry build of the corpus (inputs only; no model needed)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        fake = {"local_ids": [[1, 2], [3, 4]], "global_ids": [1, 2, 3]}
        found = cases(
            root,
            "tok",
            "vl",
            "cb",
            make_images(root),
            make_tokens(root, fake),
            make_places(root),
            run=root / "run",
            image_folder="imgs",
        )
        return [c.name for c in found]


NAMES = _case_names()


def _run_in_process(argv: list[str]) -> tuple[int, str, str]:
    from v2l.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # noqa: BLE001 - a traceback is a verdict, not a test crash
            import traceback

            traceback.print_exc()
            code = 1
    return code, out.getvalue(), err.getvalue()


def _run_process(argv: list[str], pythonpath: str | None = None, timeout: float = 600) -> tuple[int, str, str]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    try:
        res = subprocess.run(
            [sys.executable, "-c", "from v2l.cli import main; main()", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:  # an input that should be refused at once started the real work instead
        return -9, "", f"(killed after {timeout:.0f} s: the input was not refused before the work started)"
    return res.returncode, res.stdout, res.stderr


@pytest.mark.parametrize("name", NAMES)
def test_corpus_case(name, corpus_assets, corpus_root, capfd):
    root = corpus_root / name.replace("/", "__")
    root.mkdir()
    case = next(c for c in _corpus(root, corpus_assets) if c.name == name)
    if REPORT:
        limit = float(os.environ.get("V2L_CORPUS_TIMEOUT", "120"))
        runs = [("process", lambda: _run_process(case.argv, os.environ.get("V2L_CORPUS_PYTHONPATH"), limit))]
    else:
        runs = [("in-process", lambda: _run_in_process(case.argv))]
        if case.subprocess:
            runs.append(("process", lambda: _run_process(case.argv)))
    for how, run in runs:
        before = snapshot(root)
        code, out, err = run()
        after = snapshot(root)
        kind, why = verdict(case, Result(code, out, err, root), before, after)
        want = "clear" if case.expect == "error" else "correct"
        if REPORT:
            with open(REPORT, "a") as f:
                f.write(json.dumps({"case": name, "expect": case.expect, "verdict": kind, "why": why}) + "\n")
            assert kind in ("clear", "correct", "bad") and (kind == "bad") == bool(why)  # a verdict, with its reason
            if not os.environ.get("V2L_CORPUS_PYTHONPATH"):  # this tree, not an older one: the corpus must hold
                assert kind == want, f"{name} ({how}): {why}"
            continue
        assert kind == want, f"{name} ({how}): {why}"
        if how == "process" and case.expect == "error":
            assert err.count("\n") == 1  # exactly one line, from a real process too
