"""`v2l tokenize / reconstruct / decode` on a tiny tokenizer folder, including bad input: clear errors, no output."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from v2l.codebooks import Codebook
from v2l.eval import STLPIPS, psnr, ssim
from v2l.tokenizer import V2LTokenizer, get_config
from v2l.tokenizer.image_tokenizer import ImageTokenizer, save_tokenizer_folder


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory, tiny_codebook_dir):
    cb = Codebook.load(tiny_codebook_dir)
    torch.manual_seed(0)
    net = V2LTokenizer(get_config("tiny"), cb.local_embeddings, cb.global_embeddings)
    return save_tokenizer_folder(
        tmp_path_factory.mktemp("tok") / "tiny", net, cb.manifest, codebook_folder=tiny_codebook_dir
    )


def _v2l(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-c", "from v2l.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def _png(path, size=(40, 24)):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_python_api_round_trip(tok_dir, tmp_path):
    tok = ImageTokenizer.from_pretrained(tok_dir)
    img = _png(tmp_path / "a.png")
    (t,) = tok.tokenize([img])
    assert len(t.local_ids) == 8 and len(t.local_ids[0]) == 8 and len(t.global_ids) == 3
    assert t.local_tokens[0][0] == tok.display[t.local_ids[0][0]]
    dec = tok.decode([t])[0]
    rec = tok.reconstruct([img])[0]
    assert dec.size == rec.size == (16, 16)  # short side resized to 16, centre crop
    assert np.array_equal(np.asarray(dec), np.asarray(rec))  # decode(tokenize(x)) == reconstruct(x)


def test_cli_tokenize_decode_reconstruct(tok_dir, tmp_path):
    img = _png(tmp_path / "a.png")
    r = _v2l("tokenize", img, "-t", tok_dir, "-o", tmp_path / "tokens.json")
    assert r.returncode == 0, r.stderr
    assert "global:" in r.stdout
    tokens = json.loads((tmp_path / "tokens.json").read_text())
    assert len(tokens["local_ids"]) == 8
    r = _v2l("decode", tmp_path / "tokens.json", "-o", tmp_path / "dec.png", "-t", tok_dir)
    assert r.returncode == 0, r.stderr
    r = _v2l("reconstruct", img, "-o", tmp_path / "rec.png", "-t", tok_dir)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "dec.png")), np.asarray(Image.open(tmp_path / "rec.png")))


def test_cli_bad_inputs_give_one_clear_error_and_no_output(tok_dir, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    good = _png(tmp_path / "good.png")
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:200])
    cases = [
        (("tokenize", text, "-t", tok_dir), "notes.jpg is not an image"),
        (("reconstruct", trunc, "-o", tmp_path / "o1.png", "-t", tok_dir), "trunc.png is corrupt or truncated"),
        (("reconstruct", good, "-o", tmp_path / "o2.txt", "-t", tok_dir), "use an image file name"),
    ]
    ok = json.loads(_v2l("tokenize", good, "-t", tok_dir, "--json").stdout)[0]
    bad_id = {**ok, "local_ids": [[10**6] * 8] * 8}
    bad_grid = {**ok, "local_ids": [[1] * 4] * 4}
    bad_global = {**ok, "global_ids": [-1, 0, 1]}
    for name, payload, msg in [
        ("id", bad_id, "outside 0.."),
        ("grid", bad_grid, r"\(4, 4\) grid"),
        ("glob", bad_global, r"global_ids\[\d+\] is -?\d+, outside any vocabulary"),
    ]:
        f = tmp_path / f"{name}.json"
        f.write_text(json.dumps(payload))
        cases.append((("decode", f, "-o", tmp_path / f"{name}.png", "-t", tok_dir), msg))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    cases.append((("decode", broken, "-o", tmp_path / "b.png", "-t", tok_dir), "is not a JSON tokens file"))
    cases.append((("tokenize", good, "-t", tmp_path / "nope"), "not a folder saved by save_pretrained"))
    import re

    for args, msg in cases:
        r = _v2l(*args)
        assert r.returncode == 2, (args, r.stderr[-2000:])
        assert r.stderr.strip().splitlines()[-1].startswith("error:") and re.search(msg, r.stderr), (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".png", ".txt")) == ["good.png", "trunc.png"]


def test_metrics_behave():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    small, large = x + 0.05 * torch.randn(x.shape, generator=g), x + 0.3 * torch.randn(x.shape, generator=g)
    assert torch.all(psnr(x, small) > psnr(x, large)) and torch.all(ssim(x, small) > ssim(x, large))
    assert torch.allclose(ssim(x, x), torch.ones(2))
    # PSNR by hand
    mse = (((x + 1) / 2 - (small.clamp(-1, 1) + 1) / 2) ** 2).mean(dim=(1, 2, 3))
    assert torch.allclose(psnr(x, small), 10 * torch.log10(1 / mse), atol=1e-3)


def test_stlpips_loads_the_shipped_weights():
    m = STLPIPS()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    smooth = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    assert torch.allclose(m(x, x), torch.zeros(2))
    d1, d2 = m(x, (x + 0.05 * torch.randn(x.shape, generator=g))), m(x, smooth)
    assert torch.all(d1 > 0) and torch.all(d2 > d1)
    assert m.lins[0].model[1].weight.abs().sum() > 0  # real weights, not the random init


def test_from_pretrained_hub_id_through_the_hub_cache(tok_dir, tiny_codebook_dir, tmp_path, monkeypatch):
    """A hub id resolves through huggingface_hub (here its offline cache, laid out as a download leaves it)."""
    import shutil

    from huggingface_hub import constants

    from v2l.errors import ModelNotFoundError

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--v2l-test--tiny-tokenizer"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tok_dir / name, snap / name)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    img = _png(tmp_path / "a.png")
    from_hub = ImageTokenizer.from_pretrained("v2l-test/tiny-tokenizer", codebook=tiny_codebook_dir).tokenize([img])
    assert from_hub == ImageTokenizer.from_pretrained(tok_dir).tokenize([img])
    with pytest.raises(ModelNotFoundError, match="hub"):
        ImageTokenizer.from_pretrained("v2l-test/not-downloaded")


def test_approximate_search_option(tok_dir, tmp_path):
    img = _png(tmp_path / "a.png")
    exact = ImageTokenizer.from_pretrained(tok_dir).tokenize([img])[0]
    approx = ImageTokenizer.from_pretrained(tok_dir, search="hnsw").tokenize([img])[0]
    pairs = zip(sum(exact.local_ids, []), sum(approx.local_ids, []), strict=True)
    agree = sum(a == b for a, b in pairs)
    assert agree >= 0.9 * 64 and approx.global_ids == exact.global_ids
    res = _v2l("reconstruct", img, "-o", tmp_path / "o.png", "-t", tok_dir, "--search", "kd-tree")
    assert res.returncode == 2 and "--search 'kd-tree'" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o.png").exists()


def test_train_refuses_a_bad_perceptual_choice_before_any_work(tmp_path):
    res = _v2l("train", "--out", tmp_path / "run", "--perceptual", "vgg")
    assert res.returncode == 2 and "--perceptual 'vgg'" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_refuses_another_global_list_with_the_same_settings(tmp_path, tiny_codebook_dir, monkeypatch):
    """Two builds with the same settings (one key) can differ on a near-tie on another machine: a checkpoint records
    the hash of the list it was trained with and refuses another one, also one found in the cache."""
    import shutil

    from safetensors.torch import load_file, save_file

    from v2l.errors import ManifestMismatchError

    cb = Codebook.load(tiny_codebook_dir)
    torch.manual_seed(0)
    net = V2LTokenizer(get_config("tiny"), cb.local_embeddings, cb.global_embeddings)
    folder = save_tokenizer_folder(tmp_path / "tok", net, cb)  # a Codebook: its list's hash is recorded
    assert json.loads((folder / "config.json").read_text())["codebook"]["global_sha256"] == cb.global_sha256
    assert ImageTokenizer.from_pretrained(folder, codebook=tiny_codebook_dir).codebook.global_sha256 == cb.global_sha256
    # the same build with one entry fewer (a near-tie that went the other way), its manifest untouched
    from v2l.codebooks import CodebookConfig

    key = CodebookConfig(**cb.manifest["config"]).key()
    other = shutil.copytree(tiny_codebook_dir, tmp_path / "cache" / "codebooks" / key)
    entries = json.loads((other / "global_vocab.json").read_text())
    (other / "global_vocab.json").write_text(json.dumps(entries[:-1]))
    emb = load_file(other / "global_embeddings.safetensors")["embeddings"]
    save_file({"embeddings": emb[:-1].contiguous()}, str(other / "global_embeddings.safetensors"))
    with pytest.raises(ManifestMismatchError, match="another global list .* --codebook"):
        ImageTokenizer.from_pretrained(folder, codebook=other)
    monkeypatch.setenv("V2L_CACHE", str(tmp_path / "cache"))  # found in the cache, with no shipped list to fall back on
    with pytest.raises(ManifestMismatchError, match="another global list"):
        ImageTokenizer.from_pretrained(folder)
    # a checkpoint saved with the manifest only (or before the hash was recorded) loads as before
    old = save_tokenizer_folder(tmp_path / "old", net, cb.manifest)
    assert "global_sha256" not in json.loads((old / "config.json").read_text())["codebook"]
    assert len(ImageTokenizer.from_pretrained(old, codebook=other).codebook.entries) == len(entries) - 1
