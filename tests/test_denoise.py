"""In-context denoising (paper Fig. 4, §4.3, Table 4): masks and corruptions touch exactly the intended positions, the
in-context copies have the documented replacement ratios, the prompt windows are the paper's (golden case on a tiny
grid), global tokens come from the corrupted image, batched = one prompt per call, and every task runs end to end on
tiny random models (the verb included, bad input too)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from v2l.errors import ConfigError
from v2l.tasks.denoise import (
    TASKS,
    DenoiseConfig,
    Denoiser,
    apply_replacements,
    corrupt_image,
    nearest_fill,
    noisy_copies,
    token_mask,
    token_positions,
)
from v2l.tasks.reference import reference_loop


@pytest.fixture(scope="module")
def denoiser_parts(tiny_tokenizer_dir, tiny_vl, long_lm):
    from v2l.tokenizer import ImageTokenizer

    return ImageTokenizer.from_pretrained(tiny_tokenizer_dir, vl=tiny_vl, progress=False), long_lm


def _images(n=2, size=16):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def test_token_masks_are_the_papers():
    m = token_mask("inpaint", 16, 16)
    assert m.sum() == 64 and m[4:12, 4:12].all() and not m[:4].any() and not m[12:].any() and not m[:, :4].any()
    o = token_mask("outpaint", 16, 16)
    assert o.sum() == 128 and o[8:].all() and not o[:8].any()
    with pytest.raises(ValueError):
        token_mask("deblur", 16, 16)


def test_corruptions_touch_exactly_the_intended_pixels():
    cfg = DenoiseConfig()
    img = _images(1, 64)[0]
    a = np.asarray(img).astype(int)
    inp = np.asarray(corrupt_image(img, "inpaint", cfg)).astype(int)
    changed = (inp != a).any(-1)
    assert (inp[16:48, 16:48] == 128).all()  # the 8x8 centre tokens are 4x4 pixels each at 64 px
    assert not changed[:16].any() and not changed[48:].any() and not changed[:, :16].any() and not changed[:, 48:].any()
    out = np.asarray(corrupt_image(img, "outpaint", cfg)).astype(int)
    assert (out[32:] == 128).all() and (out[:32] == a[:32]).all()
    sh = np.asarray(corrupt_image(img, "shift", cfg)).astype(int)
    assert (sh[8:, 8:] == a[:-8, :-8]).all() and (sh[:8] == 128).all() and (sh[:, :8] == 128).all()
    flat = Image.new("RGB", (64, 64), (90, 40, 200))
    assert (np.asarray(corrupt_image(flat, "deblur", cfg)) == np.asarray(flat)).all()  # a flat image stays flat
    assert (np.asarray(corrupt_image(img, "deblur", cfg)) != a).any()
    rot = np.asarray(corrupt_image(img, "rotate", cfg)).astype(int)
    assert (rot[0, 0] == 128).all() and (rot != a).any()  # corners fall outside the rotated image
    assert (np.asarray(corrupt_image(img, "rotate", DenoiseConfig(angle=0.0))) == a).all()


def test_copies_have_the_documented_replacement_ratios():
    cfg = DenoiseConfig()
    assert cfg.ratios == (0.23, 0.26, 0.29, 0.32, 0.35, 0.38, 0.41, 0.44, 0.47, 0.5)
    tokens = torch.arange(256)
    allowed = torch.arange(1000, 1100)
    copies, replaced = noisy_copies(tokens, allowed, cfg.ratios, torch.Generator().manual_seed(0))
    for s, r in enumerate(cfg.ratios):
        rep = replaced[s] >= 0
        assert int(rep.sum()) == round(r * 256)
        assert (copies[s][~rep] == tokens[~rep]).all()
        assert ((copies[s][rep] >= 1000) & (copies[s][rep] < 1100)).all()
    # the corrupted copies replace the same positions with the same ids
    other = torch.arange(256) + 5000
    assert (apply_replacements(other, replaced)[replaced >= 0] == copies[replaced >= 0]).all()
    with pytest.raises(ConfigError, match="--m 0"):
        DenoiseConfig(m=0).check()


def test_nearest_fill_copies_the_closest_known_token():
    t = torch.arange(16).reshape(4, 4)
    m = torch.zeros(4, 4, dtype=torch.bool)
    m[1:3, 1:3] = True
    f = nearest_fill(t, m)
    assert (f[~m] == t[~m]).all()
    # distance 1 above or left / right or below: the first in raster order wins
    assert f[1, 1] == t[0, 1] and f[1, 2] == t[0, 2] and f[2, 1] == t[2, 0] and f[2, 2] == t[2, 3]


def test_prompt_windows_are_the_papers(denoiser_parts):
    """A golden case: copies without replacements on a 4x4 grid, n = 3, m = 2."""
    tok, lm = denoiser_parts
    d = Denoiser(tok, lm, DenoiseConfig(n=3, m=2, copies=2, ratio_start=0.0, ratio_step=0.0))
    clean = torch.arange(10, 26)
    copies = torch.stack([clean, clean])
    current = clean.clone()
    current[5:7] = -1
    p = d.masked_prompts(current, copies, q=5, k=2)
    assert p[0] == d.instruction and len(p) == 4
    enc = lm.encode
    ex = tuple(enc(" Input:")) + (12, 13, 14) + tuple(enc(", output:")) + (15, 16) + tuple(enc("."))
    assert p[1] == p[2] == ex
    assert p[3] == tuple(enc(" Input:")) + (12, 13, 14) + tuple(enc(", output:"))
    assert lm.decode(p[0]) == "Learn a new language and predict 2 tokens following the examples."
    # deblur-style windows: inputs are the corrupted copies' [q-n, q+m), outputs the clean copies' [q, q+m)
    corrupted = clean + 100
    w = d.window_prompts(corrupted, torch.stack([corrupted, corrupted]), copies, q=5, k=2)
    assert w[1] == tuple(enc(" Input:")) + (112, 113, 114, 115, 116) + tuple(enc(", output:")) + (15, 16) + tuple(
        enc(".")
    )
    assert w[3] == tuple(enc(" Input:")) + (112, 113, 114, 115, 116) + tuple(enc(", output:"))
    # at the start of the map the window is shorter, never wrapped
    assert d.masked_prompts(current, copies, q=1, k=2)[3] == tuple(enc(" Input:")) + (10,) + tuple(enc(", output:"))


def test_global_tokens_come_from_the_corrupted_image(denoiser_parts, monkeypatch):
    tok, lm = denoiser_parts
    d = Denoiser(tok, lm, DenoiseConfig(n=4, m=2))
    imgs = _images(2)
    seen = []
    real = tok.global_ids
    monkeypatch.setattr(tok, "global_ids", lambda images: seen.append(list(images)) or real(images))
    out = d.restore(imgs, "deblur")
    corrupted = [corrupt_image(im, "deblur", d.cfg, 8) for im in d.prepare(imgs)]
    assert [np.asarray(x).tolist() for x in seen[-1]] == [np.asarray(x).tolist() for x in corrupted]
    for r, c in zip(out, corrupted, strict=True):
        assert r.global_ids == real([c])[0].tolist()


@pytest.mark.parametrize(
    ("parts", "task"),
    [("denoiser_parts", "inpaint"), ("denoiser_parts", "shift"), ("spae_parts", "outpaint"), ("spae_parts", "rotate")],
)
def test_batched_equals_one_prompt_per_call(parts, task, request):
    """V2L's grid and SPAE's pyramid (PAR then PNAR) alike."""
    tok, lm = request.getfixturevalue(parts)
    d = Denoiser(tok, lm, DenoiseConfig(n=4, m=2, batch_size=5))
    imgs = _images(3)
    fast = d.restore(imgs, task)
    ref = d.restore(imgs, task, generate=reference_loop(lm, d.allowed.tolist()))
    alone = d.restore(imgs[1:2], task)  # an image gets the same copies alone or in a batch
    assert [r.tokens for r in fast] == [r.tokens for r in ref]
    assert alone[0].tokens == fast[1].tokens


@pytest.mark.parametrize("task", TASKS)
def test_every_task_end_to_end_on_tiny_models(denoiser_parts, task):
    tok, lm = denoiser_parts
    d = Denoiser(tok, lm, DenoiseConfig(n=4, m=3))  # m = 3 does not divide the 4-wide mask rows: spill is dropped
    imgs = _images(2)
    out = d.restore(imgs, task)
    clean, _ = d.tokens(d.prepare(imgs))
    allowed = set(d.allowed.tolist())
    for r, c in zip(out, clean.reshape(-1, 8, 8), strict=True):
        grid = torch.tensor(r.tokens)
        assert grid.shape == (8, 8) and r.restored.size == (16, 16) and r.corrupted.size == (16, 16)
        assert set(grid.flatten().tolist()) <= allowed | set(c.flatten().tolist())
        if task in ("inpaint", "outpaint"):
            mask = token_mask(task, 8, 8)
            assert (grid[~mask] == c[~mask]).all() and r.predicted == int(mask.sum())
            assert set(grid[mask].tolist()) <= allowed
        else:
            assert r.predicted == 64 and set(grid.flatten().tolist()) <= allowed
    base = d.baselines(imgs, task)
    assert len(base["corrupted"]) == 2 and (("nearest" in base) == (task in ("inpaint", "outpaint")))


def test_denoise_verb_end_to_end_and_bad_input(tmp_path, tiny_tokenizer_dir, tiny_clip_dir, long_lm, capsys):
    from v2l.cli import main

    img = tmp_path / "a.png"
    _images(1, 40)[0].save(img)
    out, toks, corr = tmp_path / "out.png", tmp_path / "t.json", tmp_path / "c.png"
    common = ["--tokenizer", str(tiny_tokenizer_dir), "--llm", long_lm.source, "--n", "4"]

    def run(args):
        with pytest.raises(SystemExit) as e:
            main(args)
        return e.value.code

    assert run(
        [
            "denoise",
            str(img),
            "--task",
            "outpaint",
            "-o",
            str(out),
            "--tokens",
            str(toks),
            "--corrupted",
            str(corr),
            *common,
        ]
    ) in (0, None)
    assert Image.open(out).size == (16, 16) and Image.open(corr).size == (16, 16)
    data = json.loads(toks.read_text())
    assert data["task"] == "outpaint" and np.array(data["local_ids"]).shape == (8, 8) and data["predicted"] == 32
    capsys.readouterr()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    for args, words in (
        (["denoise", str(bad), "--task", "inpaint", "-o", str(tmp_path / "x.png")], "bad.jpg"),
        (["denoise", str(img), "--task", "erase", "-o", str(tmp_path / "x.png")], "--task"),
        (["denoise", str(img), "--task", "inpaint", "-o", str(tmp_path)], "existing folder"),
        (["denoise", str(img), "--task", "inpaint", "-o", str(tmp_path / "x.txt")], "image file"),
    ):
        assert run([*args, *common]) not in (0, None)
        err = capsys.readouterr().err.strip()
        assert words in err and "Traceback" not in err and len(err.splitlines()) == 1
        assert not (tmp_path / "x.png").exists()  # nothing partial written


# ---- the baselines' tokens, and SPAE's progressive decoding (SPAE §3.2, eqs. 10–11) -------------------------------


def _baseline_tokenizer(model, tiny_codebook_dir, tiny_vl, long_lm, tmp_path):
    from v2l.codebooks import Codebook
    from v2l.models import build_network
    from v2l.tokenizer import ImageTokenizer, get_config, local_codebook_for, local_tokens_for
    from v2l.tokenizer.image_tokenizer import save_tokenizer_folder

    cb = Codebook.load(tiny_codebook_dir)
    cfg = get_config("tiny", model=model)
    exclude, _ = local_tokens_for(cfg, cb)
    torch.manual_seed(0)
    net = build_network(
        cfg,
        local_codebook_for(cfg, cb, lm=long_lm),
        cb.global_embeddings,
        exclude=exclude,
        token_text=cb.local_embeddings,
    )
    folder = save_tokenizer_folder(tmp_path / model, net, cb.manifest)
    return ImageTokenizer.from_pretrained(folder, codebook=cb, vl=tiny_vl, lm=long_lm, progress=False)


@pytest.fixture(scope="module")
def spae_parts(tiny_codebook_dir, tiny_vl, long_lm, tmp_path_factory):
    return _baseline_tokenizer("spae", tiny_codebook_dir, tiny_vl, long_lm, tmp_path_factory.mktemp("spae")), long_lm


def test_token_positions_are_raster_or_the_pyramids_eq_1(denoiser_parts, spae_parts):
    grid = token_positions(denoiser_parts[0].net, 8)
    assert grid.tolist() == [[r, c] for r in range(8) for c in range(8)]
    pyr = token_positions(spae_parts[0].net, 8)  # tiny: layers of side 1, 2, 4, 8, 8 on an 8 x 8 map
    assert len(pyr) == 1 + 4 + 16 + 64 + 64
    assert pyr[0].tolist() == [4, 4]  # h' = 8: row 8 - 4 + 1 = 5 (1-based)
    assert pyr[1:5].tolist() == [[2, 2], [2, 6], [6, 2], [6, 6]]  # h' = 4: rows 4i - 2 + 1 = 3, 7
    assert pyr[5:21, 0].unique().tolist() == [1, 3, 5, 7]  # h' = 2: rows 2i
    assert pyr[21:85].tolist() == pyr[85:].tolist() == grid.tolist()


def test_progressive_prompts_are_eq_11_windows(spae_parts):
    """PAR reads [the corrupted window, the restored tokens before q]; PNAR the corrupted window alone."""
    tok, lm = spae_parts
    d = Denoiser(tok, lm, DenoiseConfig(n=3, m=2, copies=2, ratio_start=0.0, ratio_step=0.0))
    clean = torch.arange(10, 26)
    corrupted = clean + 100
    restored = clean + 200
    copies, copies_c = torch.stack([clean, clean]), torch.stack([corrupted, corrupted])
    enc = lm.encode
    p = d.progressive_prompts(corrupted, restored, copies_c, copies, q=5, k=2)
    assert p[1] == tuple(enc(" Input:")) + (112, 113, 114, 115, 116, 12, 13, 14) + tuple(enc(", output:")) + (
        15,
        16,
    ) + tuple(enc("."))
    assert p[3] == tuple(enc(" Input:")) + (112, 113, 114, 115, 116, 212, 213, 214) + tuple(enc(", output:"))
    w = d.window_prompts(corrupted, copies_c, copies, q=5, k=2)
    assert w[3] == tuple(enc(" Input:")) + (112, 113, 114, 115, 116) + tuple(enc(", output:"))


@pytest.mark.parametrize("task", ["outpaint", "deblur"])
def test_spae_decodes_par_then_pnar(spae_parts, task):
    """The first par_layers layers go one segment at a time, each seeing the earlier predictions; the rest go in
    one batch; in/outpainting generates only segments with masked positions and keeps the rest."""
    tok, lm = spae_parts
    d = Denoiser(tok, lm, DenoiseConfig(n=4, m=2, par_layers=2))  # PAR over layers of 1 + 4 tokens
    assert d.par_length == 5
    imgs = _images(2)
    allowed = d.allowed.tolist()
    calls = []

    def fake(prompts, length):  # call c answers (allowed[c], allowed[c + 1]) to every prompt
        calls.append(prompts)
        c = len(calls)
        return [[allowed[c], allowed[c + 1]][:length] for _ in prompts]

    out = d.restore(imgs, task, generate=fake)
    clean, _ = d.tokens(d.prepare(imgs))
    L = 1 + 4 + 16 + 64 + 64
    masked = d.masked_positions(task) if task == "outpaint" else torch.ones(L, dtype=torch.bool)
    assert bool(masked[0]) and masked[1:5].tolist() == [False, False, True, True] if task == "outpaint" else True
    segments = [q for q in range(0, L, 2) if masked[q : q + 2].any()]
    par = [q for q in segments if q < 5]
    assert len(par) >= 2 and all(len(c) == 2 for c in calls[: len(par)])  # PAR: one prompt per image per segment
    assert sum(len(c) for c in calls[len(par) :]) == 2 * (len(segments) - len(par))  # PNAR: the rest at once
    assert d.prompt_count(task) == len(segments)
    # The second PAR segment's query ends with the restored tokens before it: position 0 is call 1's prediction.
    q = par[1]
    query = calls[1][0][-1]
    assert query[-len(d.mid) - q] == allowed[1]
    for r, c in zip(out, clean, strict=True):
        t = torch.tensor(r.tokens)
        assert t.shape == (L,) and r.restored.size == (16, 16)
        assert torch.equal(t[~masked], c[~masked]) and r.predicted == int(masked.sum())
        assert set(t[masked].tolist()) <= set(allowed)
        assert t[0] == allowed[1]


def test_grid_baselines_run_the_same_protocol(tiny_codebook_dir, tiny_vl, long_lm, tmp_path):
    tok = _baseline_tokenizer("vqgan-llm", tiny_codebook_dir, tiny_vl, long_lm, tmp_path)
    d = Denoiser(tok, long_lm, DenoiseConfig(n=4, m=2))
    exclude = tok.net.local_quantizer.exclude
    assert not any(bool(exclude[i]) for i in d.allowed.tolist())  # never a token the model cannot hold
    imgs = _images(2)
    out = d.restore(imgs, "inpaint")
    clean, _ = d.tokens(d.prepare(imgs))
    mask = token_mask("inpaint", 8, 8)
    for r, c in zip(out, clean.reshape(-1, 8, 8), strict=True):
        grid = torch.tensor(r.tokens)
        assert torch.equal(grid[~mask], c[~mask]) and set(grid[mask].tolist()) <= set(d.allowed.tolist())


def test_lqae_ids_the_llm_cannot_hold_are_a_clear_error(tiny_codebook_dir, tiny_vl, long_lm, tmp_path):
    """LQAE's WordPiece ids are fed as LLM ids; the tiny LLM's few ids are all MiniLM special/[unused] ones."""
    from v2l.errors import V2LError

    tok = _baseline_tokenizer("lqae", tiny_codebook_dir, tiny_vl, long_lm, tmp_path)
    with pytest.raises(V2LError, match=f"The LLM's {long_lm.vocab_size} token ids hold none"):
        Denoiser(tok, long_lm, DenoiseConfig(n=4, m=2))
