"""Faults beside bad input: nothing read can run code (no pickle), a damaged cache entry is rebuilt with one warning
line, a full disk during a write is one sentence with no partial file, and two writers of one output never mix."""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

SRC = Path(__file__).resolve().parents[1] / "src" / "v2l"


def test_no_pickle_in_the_source():
    """No file the project reads goes through pickle: `torch.load` only with `weights_only=True`, no `pickle` module,
    no `weights_only=False` (a planted cache file would run code)."""
    bad = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start() : m.start() + 200].split("\n\n")[0]  # the call, up to 200 characters
            if "weights_only=True" not in call:
                bad.append(f"{path.relative_to(SRC)}: {call[:80]}")
        if re.search(r"^\s*(import pickle|from pickle|import cloudpickle|import dill)", text, re.M):
            bad.append(f"{path.relative_to(SRC)}: imports pickle")
        if "weights_only=False" in text:
            bad.append(f"{path.relative_to(SRC)}: weights_only=False")
    assert not bad, bad


class _Planted:
    """Unpickling this creates a marker file: the proof that a pickle in the cache would run code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).touch, ())


def test_the_pool_cache_is_safetensors_rebuilt_when_damaged_and_never_unpickled(
    tiny_vl, tiny_codebook_dir, data_root, tmp_path, caplog
):
    from v2l.codebooks import Codebook
    from v2l.paths import cache_root
    from v2l.tasks import heldout_features

    cb = Codebook.load(tiny_codebook_dir)
    folder = cache_root() / "fewshot"
    marker = tmp_path / "pwned"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("heldout-planted.pt", "heldout-0000000000000000.pt"):  # pickles where the old cache lived
        (folder / name).write_bytes(pickle.dumps(_Planted(str(marker))))
    first = heldout_features(tiny_vl, cb, data_root=data_root, top=3, progress=False, per_class=2)
    entries = sorted(folder.glob("heldout-*.safetensors"))
    assert len(entries) >= 1 and not marker.exists()
    entry = max(entries, key=lambda p: p.stat().st_mtime)
    # a truncated entry: detected, rebuilt with one warning line, never used
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="v2l"):
        again = heldout_features(tiny_vl, cb, data_root=data_root, top=3, progress=False, per_class=2)
    warned = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(warned) == 1 and str(entry) in warned[0] and "rebuilding" in warned[0]
    assert torch.equal(first.embeddings, again.embeddings) and first.keys == again.keys
    # a bit flip in the tensor bytes (the header still parses): caught by the checksum
    data = bytearray(entry.read_bytes())
    data[-5] ^= 0x01
    entry.write_bytes(bytes(data))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="v2l"):
        third = heldout_features(tiny_vl, cb, data_root=data_root, top=3, progress=False, per_class=2)
    assert any("checksum" in r.getMessage() for r in caplog.records)
    assert torch.equal(first.embeddings, third.embeddings)
    assert not marker.exists()


def test_a_damaged_bench_stage_file_is_measured_again(tmp_path):
    from v2l.eval.bench.runner import finished_stage

    path = tmp_path / "fewshot.json"
    said = []
    assert finished_stage(path, said.append) == {}  # none yet
    path.write_text('{"suite": "abc", "kg5": [')
    assert finished_stage(path, said.append) == {} and "not readable JSON" in said[-1] and str(path) in said[-1]
    path.write_text("[1, 2]")
    assert finished_stage(path, said.append) == {} and "holds a JSON list" in said[-1]
    path.write_text('{"suite": "abc"}')
    assert finished_stage(path, said.append) == {"suite": "abc"}


def test_readers_turn_every_damage_into_one_sentence(tmp_path):
    from safetensors.torch import save_file

    from v2l.files import ArtefactError, json_field, read_json, read_safetensors, read_toml

    good = tmp_path / "w.safetensors"
    save_file({"w": torch.ones(4, 4)}, str(good))
    assert read_safetensors(good, names=("w",))["w"].sum() == 16
    cases = {
        "truncated": good.read_bytes()[:40],
        "empty": b"",
        "header-flipped": bytes([good.read_bytes()[0] ^ 0xFF]) + good.read_bytes()[1:],
        "text": b"not a tensor file",
    }
    for name, data in cases.items():
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(data)
        with pytest.raises(ArtefactError, match=re.escape(str(p))):
            read_safetensors(p)
    with pytest.raises(ArtefactError, match="no tensor 'v'"):
        read_safetensors(good, names=("v",))
    j = tmp_path / "c.json"
    for text, match in (('{"a": ', "not readable JSON"), ("[]", "JSON list where a dict"), ("\xff", "not readable")):
        j.write_bytes(text.encode("latin-1"))
        with pytest.raises(ArtefactError, match=match):
            read_json(j)
    with pytest.raises(ArtefactError, match="is missing"):
        read_json(tmp_path / "none.json")
    with pytest.raises(ArtefactError, match="field 'n' is a str, not a int"):
        json_field({"n": "3"}, "n", int, j)
    with pytest.raises(ArtefactError, match="field 'n' is a bool"):
        json_field({"n": True}, "n", int, j)
    t = tmp_path / "r.toml"
    t.write_text("[stage\nx = 1")
    with pytest.raises(ArtefactError, match="not readable TOML"):
        read_toml(t)


# ---- a full disk: an OSError(ENOSPC) injected at the write of every verb that writes ---------------------------


def _run(argv):
    import contextlib
    import io

    from v2l.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def png(tmp_path) -> Path:
    p = tmp_path / "in" / "a.png"
    p.parent.mkdir()
    Image.new("RGB", (20, 20), (30, 160, 90)).save(p)
    return p


def _full_disk(monkeypatch, under: Path):
    """Every file v2l moves into place under `under` fails as on a full disk (the temp file was written first)."""
    real = os.replace

    def replace(src, dst, *a, **k):
        if str(dst).startswith(str(under)):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("verb", ["tokenize", "reconstruct", "decode", "export", "cache"])
def test_a_full_disk_is_one_sentence_and_leaves_nothing_partial(
    verb, tiny_tokenizer_dir, png, tmp_path, monkeypatch, data_root, long_lm, tiny_clip_dir, tiny_codebook_dir
):
    out = tmp_path / "out"
    out.mkdir()
    tokens = tmp_path / "t.json"
    assert _run(["tokenize", str(png), "-t", str(tiny_tokenizer_dir), "-o", str(tokens)])[0] == 0
    argv = {
        "tokenize": ["tokenize", str(png), "-t", str(tiny_tokenizer_dir), "-o", str(out / "t.json")],
        "reconstruct": ["reconstruct", str(png), "-t", str(tiny_tokenizer_dir), "-o", str(out / "r.png")],
        "decode": ["decode", str(tokens), "-t", str(tiny_tokenizer_dir), "-o", str(out / "d.png")],
        "export": [
            "data",
            "export",
            "imagenet-1k-sample",
            "--data-root",
            str(data_root),
            "-o",
            str(out / "e"),
            "--limit",
            "2",
        ],
        "cache": [  # the few-shot pool's cache entry under V2L_CACHE (built on first use)
            "fewshot",
            *("--ways", "2", "--kg", "2", "--episodes", "1", "--cells", "ind-1shot-r0"),
            *("--llm", long_lm.source, "--vl", f"hf-clip:{tiny_clip_dir}", "--codebook", str(tiny_codebook_dir)),
            *("--data-root", str(data_root), "-o", str(out / "f.json")),
        ],
    }[verb]
    under = out
    if verb == "cache":  # a fresh cache that must be built: the tiny tokenizer's local embeddings
        cache = tmp_path / "cache"
        monkeypatch.setenv("V2L_CACHE", str(cache))
        under = cache
    before = sorted(p for p in tmp_path.rglob("*"))
    with monkeypatch.context() as m:
        _full_disk(m, under)
        code, _, err = _run(argv)
    lines = [ln for ln in err.splitlines() if ln.strip() and "it/s]" not in ln]  # progress bars aside
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: No space left on device"), err
    left = sorted(p for p in tmp_path.rglob("*") if p not in before and not p.is_dir())
    assert not [p for p in left if str(p).startswith(str(under))], left  # no partial file
    assert _run(argv)[0] == 0  # the next run works


def test_two_writers_of_one_output_never_mix(tiny_tokenizer_dir, tmp_path):
    """Two processes tokenizing different images into the same -o at once: the file is whole, one or the other."""
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (20, 20), (250, 10, 10)).save(a)
    Image.new("RGB", (20, 20), (10, 10, 250)).save(b)
    out = tmp_path / "same.json"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "v2l", "tokenize", str(p), "-t", str(tiny_tokenizer_dir), "-o", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for p in (a, b)
    ]
    for p in procs:
        p.wait(timeout=300)
        assert p.returncode == 0, p.stderr.read().decode()
    data = json.loads(out.read_text())
    items = data if isinstance(data, list) else [data]
    assert len(items) == 1 and Path(items[0]["image"]).name in ("a.png", "b.png")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


_CACHE_BUILD = """
import sys, time, types
from pathlib import Path
import torch
import safetensors.torch as st

class VL:
    def fingerprint(self):
        return {"name": "fake-vl"}
    def encode_image(self, images, batch_size=64):
        return torch.tensor([[float(i), 2.0 * i, -1.0] for i in images])

if sys.argv[1] == "kill":  # the second part's file is half written when the process is killed
    real, calls = st.save_file, []
    def save_file(tensors, path, metadata=None):
        calls.append(path)
        real(tensors, path, metadata=metadata)
        if len(calls) == 2:
            Path(path).write_bytes(Path(path).read_bytes()[:64])
            print("writing", flush=True)
            time.sleep(300)
    st.save_file = save_file
from v2l.training.data import image_embeddings
ds = [types.SimpleNamespace(image=i) for i in range(1100)]
emb = image_embeddings(VL(), ds, list(range(1100)), "fake", progress=False)
print("sum", float(emb.sum()), tuple(emb.shape), flush=True)
"""


def test_kill_9_during_a_cache_build_then_a_rerun_completes_with_a_correct_cache(tmp_path):
    """A cache build (the training data's VL embeddings, built in atomic parts) killed with SIGKILL while writing a
    part: the rerun reuses the whole parts, recomputes the rest, and the cache entry equals a build never killed."""
    import signal

    env = {**os.environ, "V2L_CACHE": str(tmp_path / "cache")}
    script = tmp_path / "build.py"
    script.write_text(_CACHE_BUILD)
    child = subprocess.Popen(
        [sys.executable, str(script), "kill"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "writing", child.stderr.read()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert not list((tmp_path / "cache" / "image_embeddings").glob("*.safetensors"))  # no entry yet
    again = subprocess.run([sys.executable, str(script), "run"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    expected = sum(3.0 * i - 1.0 for i in range(1100))
    assert again.stdout.split() == ["sum", str(float(expected)), "(1100,", "3)"]
    from v2l.files import read_cache_tensors

    entries = list((tmp_path / "cache" / "image_embeddings").iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".safetensors"  # the work folder and its temp parts are gone
    tensors, meta = read_cache_tensors(entries[0])
    assert meta["images"] == 1100 and tensors["embeddings"][5].tolist() == [5.0, 10.0, -1.0]


def test_a_damaged_work_part_is_computed_again(tmp_path, caplog):
    """A part of a chunked computation that was truncated (a disk fault, not a kill: those leave no part) is detected
    by its checksum, named in one warning line and computed again; whole parts are reused."""
    from v2l.data import Chunks

    calls = []

    def fn(idx):
        calls.append(list(idx))
        return torch.tensor([[float(i)] for i in idx])

    first = Chunks(tmp_path / "w", None).map("x", list(range(6)), 2, fn, "x", progress=False)
    part = tmp_path / "w" / "x-00001.safetensors"
    part.write_bytes(part.read_bytes()[:-3])
    calls.clear()
    with caplog.at_level(logging.WARNING, logger="v2l"):
        again = Chunks(tmp_path / "w", None).map("x", list(range(6)), 2, fn, "x", progress=False)
    assert torch.equal(first, again) and calls == [[2, 3]]
    assert [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()][0].startswith(
        f"v2l: cache entry {part}"
    )


@pytest.fixture
def read_only_folder(tmp_path):
    """A read-only folder: a read-only tmpfs where the tests may mount one (root bypasses permission bits), else
    every attempt to create a file in it fails with EROFS as on such a mount."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode == 0:
        yield folder, None
        subprocess.run(["umount", str(folder)], check=True)
        return
    import tempfile

    def refuse(real):
        def f(*a, dir=None, **k):
            if dir is not None and str(dir).startswith(str(folder)):
                raise OSError(errno.EROFS, "Read-only file system", str(dir))
            return real(*a, dir=dir, **k)

        return f

    yield folder, {"mkstemp": refuse(tempfile.mkstemp), "mkdtemp": refuse(tempfile.mkdtemp)}


def test_a_read_only_output_or_cache_folder_is_one_sentence(read_only_folder, tiny_tokenizer_dir, png, monkeypatch):
    """A read-only -o folder, then a read-only cache (V2L_CACHE): one `error:` line saying what to do, exit 2."""
    import tempfile

    folder, patches = read_only_folder
    for name, f in (patches or {}).items():
        monkeypatch.setattr(tempfile, name, f)
    code, _, err = _run(["tokenize", str(png), "-t", str(tiny_tokenizer_dir), "-o", str(folder / "t.json")])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Read-only file system" in lines[0] and "writable" in lines[0], err
    from v2l.errors import OutputPathError
    from v2l.paths import atomic_path

    monkeypatch.setenv("V2L_CACHE", str(folder))
    with pytest.raises(OutputPathError, match="set V2L_CACHE to a writable folder"):
        with atomic_path(folder / "codebooks" / "x.json") as tmp:
            tmp.write_text("{}")
    assert not any(folder.iterdir())
