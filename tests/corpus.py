"""The bad-input corpus: every kind of malformed or unusual input, made on the spot, for every CLI verb.

Each case is a command line plus what must happen: `error` (exit 2, one line `error: ...` naming the input, no
traceback, nothing written, nothing removed) or `ok` (exit 0, with its own check). `verdict()` classifies a finished run
as `clear`, `correct` or `bad` (with the reason); tests/test_bad_input.py asserts every case, and
benchmarks/bench_bad_input.py runs the same corpus against an older v2l for the before/after counts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class Case:
    name: str
    argv: list[str]
    expect: str  # "error" | "ok"
    names: str | None = None  # a text the error sentence must contain (the input it is about)
    creates: tuple[str, ...] = ()  # paths (relative to the corpus root; folders with all under them) an `ok` case
    # may create, change or remove
    check: Callable[[Result], str | None] | None = None  # extra check for `ok` cases: a reason it failed, or None
    subprocess: bool = False  # also run as a real process (a representative subset)
    tags: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    root: Path


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under `root` (links not followed) with a content hash: to see what a run changed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = "link:" + os.readlink(p)
            else:
                with open(p, "rb") as fh:
                    out[rel] = hashlib.sha256(fh.read()).hexdigest()
    return out


def verdict(case: Case, res: Result, before: dict, after: dict) -> tuple[str, str]:
    """(`clear` | `correct` | `bad`, why)."""
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    allowed = lambda k: any(k == c or k.startswith(c + os.sep) for c in case.creates)  # noqa: E731
    lost = sorted(k for k in before if (k not in after or before[k] != after[k]) and not allowed(k))
    if "Traceback" in res.stderr:
        return "bad", "traceback: " + res.stderr.strip().splitlines()[-1][:200]
    if lost:
        return "bad", f"changed or removed existing files: {lost[:3]}"
    if case.expect == "error":
        lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
        if res.code == 0:
            return "bad", "accepted silently (exit 0)"
        if changed:
            return "bad", f"left output behind: {sorted(changed)[:3]}"
        if res.code != 2 or len(lines) != 1 or not lines[0].startswith("error: "):
            return "bad", f"exit {res.code}, stderr {res.stderr.strip()[:200]!r}"
        if case.names and case.names not in lines[0]:
            return "bad", f"the error does not name {case.names!r}: {lines[0][:200]!r}"
        return "clear", lines[0]
    if res.code != 0:
        return "bad", f"exit {res.code}: {res.stderr.strip()[-200:]!r}"
    stray = sorted(k for k in changed if not allowed(k))
    if stray:
        return "bad", f"unexpected files: {stray[:3]}"
    why = case.check(res) if case.check else None
    return ("bad", why) if why else ("correct", "")


# ---- inputs ------------------------------------------------------------------------------------------------------


def _png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb_png(side: int = 20000) -> bytes:
    """A PNG whose header says side × side pixels (8-bit grey), with one compressed row of data: a bomb's header."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0" * (side + 1)))
        + _chunk(b"IEND", b"")
    )


def make_images(root: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    d = root / "images"
    d.mkdir(parents=True)
    rgb = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        (d / name).write_bytes(data)
        files[name] = d / name

    jpeg = io.BytesIO()
    rgb.save(jpeg, format="JPEG", quality=90)
    png = _png_bytes(rgb)
    put("zero-byte.jpg", b"")
    put("truncated.jpg", jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    put("truncated.png", png[:300])
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF  # the IHDR chunk's CRC
    put("bad-crc.png", bytes(bad_crc))
    put("random.png", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    put("text.png", b"this is a text file, not an image\n")
    put(
        "drawing.svg",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
    )
    put("bomb.png", _bomb_png())
    put("wide-1x30000.png", _png_bytes(Image.new("RGB", (30000, 1), (200, 10, 10))))
    put("tall-10000x1.png", _png_bytes(Image.new("RGB", (1, 10000), (10, 200, 10))))
    # readable ones
    cmyk = io.BytesIO()
    rgb.convert("CMYK").save(cmyk, format="JPEG")
    put("cmyk.jpg", cmyk.getvalue())
    put("16bit.png", _png_bytes(Image.fromarray((rng.integers(0, 65535, (32, 32))).astype(np.uint16))))
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    put("palette-alpha.png", _png_bytes(pal, transparency=0))
    put("la.png", _png_bytes(rgb.convert("LA")))
    put("1bit.png", _png_bytes(rgb.convert("1")))
    put("1x1.png", _png_bytes(Image.new("RGB", (1, 1), (1, 2, 3))))
    put("aspect-49.png", _png_bytes(Image.new("RGB", (490, 10), (90, 90, 200))))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    rot = io.BytesIO()
    rgb.save(rot, format="JPEG", exif=exif.tobytes())
    put("exif-rotated.jpg", rot.getvalue())
    gif = io.BytesIO()
    frames = [Image.new("P", (20, 20), i * 40) for i in range(3)]
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    put("animated.gif", gif.getvalue())
    tif = io.BytesIO()
    rgb.save(tif, format="TIFF")
    put("image.tif", tif.getvalue())
    ftif = io.BytesIO()
    Image.fromarray(rng.random((24, 24), dtype=np.float32), mode="F").save(ftif, format="TIFF")
    put("float.tif", ftif.getvalue())
    webp = io.BytesIO()
    rgb.save(webp, format="WEBP")
    put("image.webp", webp.getvalue())
    put("фото 图片.png", png)
    put("good.png", png)
    (d / "a-folder").mkdir()
    (d / "a-folder" / "inside.png").write_bytes(png)
    files["a-folder"] = d / "a-folder"
    os.symlink("loop-b.png", d / "loop-a.png")
    os.symlink("loop-a.png", d / "loop-b.png")
    files["loop-a.png"] = d / "loop-a.png"
    files["missing.png"] = d / "missing.png"
    return files


def make_tokens(root: Path, good: dict) -> dict[str, Path]:
    d = root / "tokens"
    d.mkdir(parents=True)
    grid = good["local_ids"]
    h = len(grid)
    bad = {
        "string-id": {**good, "local_ids": [["cat"] + row[1:] for row in grid]},
        "float-id": {**good, "local_ids": [[1.7] + row[1:] for row in grid]},
        "bool-id": {**good, "local_ids": [[True] + row[1:] for row in grid]},
        "null-id": {**good, "local_ids": [[None] + row[1:] for row in grid]},
        "ids-not-a-grid": {**good, "local_ids": "1 2 3"},
        "wrong-grid": {**good, "local_ids": [row[: h // 2] for row in grid[: h // 2]]},
        "id-out-of-range": {**good, "local_ids": [[10**9] * h] * h},
        "negative-global": {**good, "global_ids": [-1, 0, 1]},
        "string-global": {**good, "global_ids": ["cat", 0, 1]},
        "no-local-ids": {"global_ids": good["global_ids"]},
        "two-objects": [good, good],
    }
    files = {}
    for name, payload in bad.items():
        files[name] = d / f"{name}.json"
        files[name].write_text(json.dumps(payload))
    files["nested-deep"] = d / "nested-deep.json"
    files["nested-deep"].write_text('{"local_ids": ' + "[" * 100000 + "]" * 100000 + "}")
    files["not-json"] = d / "not-json.json"
    files["not-json"].write_text("local_ids = [[1, 2]]")
    files["empty"] = d / "empty.json"
    files["empty"].write_bytes(b"")
    files["binary"] = d / "binary.json"
    files["binary"].write_bytes(bytes(range(256)) * 4)
    files["a-folder"] = d / "a-folder.json"
    files["a-folder"].mkdir()
    files["no-global-ids"] = d / "no-global-ids.json"
    files["no-global-ids"].write_text(json.dumps({"local_ids": grid}))
    files["good"] = d / "good.json"
    files["good"].write_text(json.dumps(good))
    return files


def make_places(root: Path) -> dict[str, Path]:
    """Existing user data that a bad `-o` must never touch."""
    d = root / "user"
    (d / "mydocs").mkdir(parents=True)
    (d / "mydocs" / "thesis.txt").write_text("years of work\n")
    (d / "album.png").mkdir()
    (d / "album.png" / "holiday.jpg").write_bytes(b"\xff\xd8 a photo")
    (d / "notes.txt").write_text("a file\n")
    (d / "existing.json").write_text('{"old": true}\n')
    (d / "not-a-run").mkdir()
    (d / "not-a-run" / "data.csv").write_text("a,b\n1,2\n")
    (d / "empty-dir").mkdir()
    return {p.name: p for p in d.iterdir()}


# ---- the cases ---------------------------------------------------------------------------------------------------


def cases(
    root: Path,
    tok: str,
    vl: str,
    codebook: str,
    images: dict[str, Path],
    tokens: dict[str, Path],
    places: dict[str, Path],
    run: Path | None = None,
    image_folder: str | None = None,
) -> list[Case]:
    r = lambda p: str(p)  # noqa: E731
    rel = lambda p: str(Path(p).relative_to(root))  # noqa: E731
    T = ["-t", tok]
    out: list[Case] = []

    # images through `tokenize` (decoding happens before any model loads)
    errors = {
        "zero-byte.jpg": "zero-byte.jpg",
        "truncated.jpg": "truncated.jpg",
        "truncated.png": "truncated.png",
        "bad-crc.png": "bad-crc.png",
        "random.png": "random.png",
        "text.png": "text.png",
        "drawing.svg": "drawing.svg",
        "bomb.png": "decompression-bomb",
        "wide-1x30000.png": "aspect ratio",
        "tall-10000x1.png": "aspect ratio",
        "a-folder": "is a folder",
        "loop-a.png": "symlink",
        "missing.png": "does not exist",
    }
    for name, must in errors.items():
        out.append(
            Case(
                f"image/{name}",
                ["tokenize", r(images[name]), *T],
                "error",
                must,
                subprocess=name in ("zero-byte.jpg", "bomb.png", "loop-a.png"),
                tags=("image",),
            )
        )
    for name in (
        "cmyk.jpg",
        "16bit.png",
        "palette-alpha.png",
        "la.png",
        "1bit.png",
        "1x1.png",
        "aspect-49.png",
        "exif-rotated.jpg",
        "animated.gif",
        "image.tif",
        "float.tif",
        "image.webp",
        "фото 图片.png",
    ):
        out.append(
            Case(
                f"image/{name}",
                ["tokenize", r(images[name]), *T, "--json"],
                "ok",
                check=_tokens_json_check(1),
                subprocess=name == "фото 图片.png",
                tags=("image",),
            )
        )

    # words: --top is capped at the codebook size
    out.append(
        Case(
            "words/top-100000",
            ["words", r(images["good.png"]), "--top", "100000", "--vl", vl, "--codebook", codebook, "--json"],
            "ok",
            check=_words_capped(codebook),
        )
    )
    out.append(Case("words/top-0", ["words", r(images["good.png"]), "--top", "0"], "error", "--top"))
    out.append(
        Case("words/top-abc", ["words", r(images["good.png"]), "--top", "abc"], "error", "--top", subprocess=True)
    )
    out.append(Case("words/bad-image", ["words", r(images["text.png"])], "error", "text.png"))
    out.append(
        Case(
            "words/codebook-missing",
            ["words", r(images["good.png"]), "--vl", vl, "--codebook", r(root / "no-such-codebook")],
            "error",
            "no-such-codebook",
        )
    )
    # --vl options (conse:top_t=T): a misspelt option or a bad value is named before any model loads
    out.append(
        Case("words/vl-unknown-option", ["words", r(images["good.png"]), "--vl", "conse:topt=3"], "error", "topt=3")
    )
    out.append(
        Case("words/vl-top-t-zero", ["words", r(images["good.png"]), "--vl", "conse:top_t=0"], "error", "top_t 0")
    )
    out.append(
        Case(
            "words/vl-top-t-text",
            ["words", r(images["good.png"]), "--vl", "conse:top_t=three"],
            "error",
            "whole number",
        )
    )

    # tokens files through `decode`
    dec_out = root / "decoded.png"
    tok_errors = {
        "string-id": "'cat'",
        "float-id": "1.7",
        "bool-id": "True",
        "null-id": "None",
        "ids-not-a-grid": "local_ids",
        "wrong-grid": "grid",
        "id-out-of-range": "outside",
        "negative-global": "global_ids",
        "string-global": "'cat'",
        "no-local-ids": "local_ids",
        "two-objects": "one object",
        "nested-deep": "nested too deeply",
        "not-json": "not a JSON tokens file",
        "empty": "not a JSON tokens file",
        "binary": "not a JSON tokens file",
        "a-folder": "is a folder",
    }
    for name, must in tok_errors.items():
        out.append(
            Case(
                f"tokens/{name}",
                ["decode", r(tokens[name]), "-o", r(dec_out), *T],
                "error",
                must,
                subprocess=name == "nested-deep",
                tags=("tokens",),
            )
        )
    out.append(
        Case(
            "tokens/missing",
            ["decode", r(root / "tokens" / "missing.json"), "-o", r(dec_out), *T],
            "error",
            "missing.json",
        )
    )
    out.append(
        Case(
            "tokens/no-global-ids",
            ["decode", r(tokens["no-global-ids"]), "-o", r(dec_out), *T],
            "ok",
            creates=(rel(dec_out),),
            check=_says_on_stderr("no global_ids"),
        )
    )

    # outputs: existing folders are never replaced, unusable places are refused before any work
    g = r(images["good.png"])
    out += [
        Case(
            "out/tokenize-into-existing-folder",
            ["tokenize", g, *T, "-o", r(places["mydocs"])],
            "error",
            "mydocs",
            subprocess=True,
        ),
        Case("out/reconstruct-onto-folder", ["reconstruct", g, *T, "-o", r(places["album.png"])], "error", "album.png"),
        Case(
            "out/decode-onto-folder",
            ["decode", r(tokens["good"]), *T, "-o", r(places["album.png"])],
            "error",
            "album.png",
        ),
        Case(
            "out/reconstruct-not-an-image-name", ["reconstruct", g, *T, "-o", r(root / "rec.txt")], "error", "rec.txt"
        ),
        Case(
            "out/decode-unwritable",
            ["decode", r(tokens["good"]), *T, "-o", "/proc/v2l-test.png"],
            "error",
            "/proc/v2l-test.png",
        ),
        Case(
            "out/reconstruct-inside-a-file",
            ["reconstruct", g, *T, "-o", r(places["notes.txt"] / "x.png")],
            "error",
            "notes.txt",
        ),
        Case(
            "out/tokenize-replaces-a-file",
            ["tokenize", g, *T, "-o", r(places["existing.json"])],
            "ok",
            creates=(rel(places["existing.json"]),),
            check=_file_is_tokens(places["existing.json"]),
        ),
        Case(
            "out/export-onto-a-file",
            ["data", "export", "tiny-imagenet-200", "--split", "val", "-o", r(places["notes.txt"])],
            "error",
            "notes.txt",
            subprocess=True,
        ),
        Case(
            "out/export-unknown-set",
            ["data", "export", "no-such-set", "-o", r(root / "exp"), "--data-root", r(root)],
            "error",
            "no-such-set",
        ),
        Case("out/codebook-onto-a-file", ["codebook", "build", "--out", r(places["notes.txt"])], "error", "notes.txt"),
        Case(
            "out/codebook-into-other-folder",
            ["codebook", "build", "--out", r(places["not-a-run"])],
            "error",
            "not-a-run",
        ),
        Case(
            "out/codebook-show-missing", ["codebook", "show", r(root / "no-such-codebook")], "error", "no-such-codebook"
        ),
    ]

    # flags of every verb, checked before anything loads
    run_out = r(root / "run")
    out += [
        Case("train/preset-bogus", ["train", "--preset", "bogus", "-o", run_out], "error", "bogus"),
        Case("train/lr-negative", ["train", "--lr", "-1", "-o", run_out], "error", "--lr", subprocess=True),
        Case("train/lr-nan", ["train", "--lr", "nan", "-o", run_out], "error", "--lr"),
        Case("train/steps-0", ["train", "--steps", "0", "-o", run_out], "error", "--steps"),
        Case("train/lecam-negative", ["train", "--lecam-weight", "-0.5", "-o", run_out], "error", "--lecam-weight"),
        Case("train/out-inside-a-file", ["train", "-o", r(places["notes.txt"] / "run")], "error", "notes.txt"),
        Case("train/resume-without-run", ["train", "--resume", "-o", r(places["empty-dir"])], "error", "--resume"),
        Case("train/resume-missing-folder", ["train", "--resume", "-o", r(root / "typo-run")], "error", "typo-run"),
        Case("train/out-non-empty-non-run", ["train", "-o", r(places["not-a-run"])], "error", "not-a-run"),
        Case(
            "train/mixed-precision-bogus",
            ["train", "--mixed-precision", "fp8", "-o", run_out],
            "error",
            "--mixed-precision",
        ),
        Case("train/cross-attention-typo", ["train", "--cross-attention", "afer", "-o", run_out], "error", "afer"),
        Case("train/perceptual-bogus", ["train", "--perceptual", "vgg", "-o", run_out], "error", "--perceptual"),
        Case(
            "train/codebook-source-bogus",
            ["train", "--codebook-source", "clip", "-o", run_out],
            "error",
            "--codebook-source",
        ),
        Case("bench/out-non-empty-non-report", ["bench", "-o", r(places["not-a-run"])], "error", "not a bench report"),
        Case("bench/suite-bogus", ["bench", "--suite", "full", "-o", run_out], "error", "--suite"),
        Case(
            "bench/tokenizers-no-label",
            ["bench", "--tokenizers", "runs/spae/final", "-o", run_out],
            "error",
            "--tokenizers",
        ),
        Case("train/ch-0", ["train", "--ch", "0", "-o", run_out], "error", "--ch"),
        Case("train/ch-heads-mismatch", ["train", "--preset", "tiny", "--ch", "3", "-o", run_out], "error", "--ch"),
        Case("train/num-res-blocks-0", ["train", "--num-res-blocks", "0", "-o", run_out], "error", "--num-res-blocks"),
        Case("train/train-only-without-init", ["train", "--train-only", "decoder", "-o", run_out], "error", "--init"),
        Case(
            "train/train-only-bogus",
            ["train", "--init", "cpu", "--train-only", "encoder", "-o", run_out],
            "error",
            "--train-only",
        ),
        Case(
            "train/init-missing-folder",
            ["train", "--init", r(root / "typo-run" / "final"), "-o", run_out],
            "error",
            "typo-run",
        ),
        Case(
            "train/init-contradicted",
            ["train", "--init", "cpu", "--ch", "32", "-o", run_out],
            "error",
            "comes from --init",
        ),
        Case("train/model-bogus", ["train", "--model", "spae2", "-o", run_out], "error", "--model"),
        Case(
            "train/model-contradicted",
            ["train", "--model", "vqgan-llm", "--projector", "-o", run_out],
            "error",
            "contradicts model 'vqgan-llm'",
        ),
        Case("codebook/templates-bogus", ["codebook", "build", "--templates", "bogus"], "error", "--templates"),
        Case("codebook/templates-81", ["codebook", "build", "--templates", "81"], "error", "--templates"),
        Case("codebook/dedupe-bogus", ["codebook", "build", "--dedupe", "case"], "error", "--dedupe"),
        Case("codebook/screen-bogus", ["codebook", "build", "--screen", "fp8"], "error", "--screen"),
        Case(
            "codebook/llm-batch-size-zero", ["codebook", "build", "--llm-batch-size", "0"], "error", "--llm-batch-size"
        ),
        Case("codebook/max-ngram-5", ["codebook", "build", "--max-ngram", "5"], "error", "--max-ngram"),
        Case(
            "codebook/filter-classes-bogus",
            ["codebook", "build", "--filter-classes", "some"],
            "error",
            "--filter-classes",
        ),
        Case("codebook/max-share-zero", ["codebook", "build", "--max-share", "0"], "error", "--max-share"),
        Case("codebook/max-share-above-one", ["codebook", "build", "--max-share", "1.5"], "error", "--max-share"),
        Case("tokenize/search-bogus", ["tokenize", g, *T, "--search", "bogus"], "error", "--search"),
        Case(
            "tokenize/tokenizer-missing",
            ["tokenize", g, "-t", r(root / "no-such-tokenizer")],
            "error",
            "no-such-tokenizer",
        ),
        Case("tokenize/tokenizer-run-missing", ["tokenize", g, "-t", "no-such-run/final/x"], "error", "does not exist"),
        Case("info/llm-missing", ["info", "--llm", r(root / "missing.gguf")], "error", "missing.gguf"),
        *_classify_cases(root, g),
        Case("cli/unknown-verb", ["bogus"], "error", "bogus", subprocess=True),
        Case("cli/unknown-option", ["words", g, "--bogus"], "error", "--bogus"),
    ]
    if run is not None and image_folder is not None:
        out.append(
            Case(
                "train/resume-damaged-checkpoint",
                [
                    "train",
                    "--resume",
                    "-o",
                    r(run),
                    "--preset",
                    "tiny",
                    "--steps",
                    "6",
                    "--batch-size",
                    "4",
                    "--checkpoint-every",
                    "2",
                    "--log-every",
                    "1",
                    "--disc-start",
                    "1000",
                    "--lr",
                    "1e-3",
                    "--warmup-steps",
                    "1",
                    "--perceptual-weight",
                    "0",
                    "--vl",
                    vl,
                    "--codebook",
                    codebook,
                    "--data",
                    image_folder,
                    "--split",
                    "",
                    "--classes",
                    "all",
                ],
                "ok",
                creates=(rel(run),),
                check=_fell_back("checkpoint-0000004", 2),
            )
        )
    from corpus_faults import fault_cases  # hostile data, damaged artefacts, numbers, templates, contradictions

    out += fault_cases(root, tok, codebook, r(images["good.png"]), json.loads(tokens["good"].read_text()))
    return out


def _classify_cases(root: Path, g: str) -> list[Case]:
    """`classify` and `fewshot`: support folders that cannot work, a corrupt query, bad options (before any model)."""
    base = root / "support"
    good_png = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(good_png, "PNG")

    def folder(name: str, classes: dict[str, dict[str, bytes]]) -> str:
        d = base / name
        d.mkdir(parents=True, exist_ok=True)
        for c, files in classes.items():
            (d / c).mkdir(exist_ok=True)
            for f, data in files.items():
                (d / c / f).write_bytes(data)
        return str(d)

    ok = {"0.png": good_png.getvalue()}
    good = folder("good", {"cat": ok, "dog": ok})
    corrupt_query = base / "query-corrupt.jpg"
    corrupt_query.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (base / "episodes-broken.json").write_text("{not json")
    cls = ["classify", g, "--support"]
    return [
        Case("classify/support-empty", [*cls, folder("empty", {})], "error", "no class sub-folders"),
        Case("classify/support-one-class", [*cls, folder("one", {"cat": ok})], "error", "one class only"),
        Case(
            "classify/support-class-without-images",
            [*cls, folder("noimg", {"cat": ok, "dog": {"a.txt": b"x"}})],
            "error",
            "has no images",
        ),
        Case(
            "classify/support-unreadable-image",
            [*cls, folder("badimg", {"cat": ok, "dog": {"0.jpg": b"\xff\xd8 truncated"}})],
            "error",
            "0.jpg",
        ),
        Case("classify/support-missing", [*cls, str(base / "missing")], "error", "does not exist"),
        Case("classify/support-is-a-file", [*cls, g], "error", "is a file"),
        Case(
            "classify/query-corrupt",
            ["classify", str(corrupt_query), "--support", good],
            "error",
            "query-corrupt.jpg",
            subprocess=True,
        ),
        Case("classify/rule-bogus", [*cls, good, "--rule", "vote"], "error", "--rule"),
        Case("classify/template-bogus", [*cls, good, "--template", "bogus"], "error", "--template"),
        Case("classify/template-missing-file", [*cls, good, "--template", str(base / "t.json")], "error", "t.json"),
        Case("classify/kg-0", [*cls, good, "--kg", "0"], "error", "--kg"),
        Case("fewshot/ways-1", ["fewshot", "--ways", "1", "-o", str(base / "r.json")], "error", "--ways"),
        Case("fewshot/out-is-a-folder", ["fewshot", "-o", good], "error", "good"),
        Case(
            "fewshot/episodes-file-broken",
            ["fewshot", "--episodes-file", str(base / "episodes-broken.json"), "-o", str(base / "r.json")],
            "error",
            "episodes-broken.json",
        ),
        Case("caption/image-corrupt", ["caption", g, str(corrupt_query)], "error", "query-corrupt.jpg"),
        Case("caption/pairs-bogus", ["caption", g, "--pairs", "best"], "error", "--pairs"),
        Case("caption/kg-0", ["caption", g, "--kg", "0"], "error", "--kg"),
        Case("caption/template-missing-file", ["caption", g, "--template", str(base / "t.json")], "error", "t.json"),
        Case(
            "caption/template-broken",
            ["caption", g, "--template", str(base / "episodes-broken.json")],
            "error",
            "episodes-broken.json",
        ),
        Case("vqa/question-empty", ["vqa", g, " ? "], "error", "question is empty"),
        Case("vqa/image-corrupt", ["vqa", str(corrupt_query), "What is it?"], "error", "query-corrupt.jpg"),
        Case("vqa/shots-negative", ["vqa", g, "What is it?", "--shots", "-1"], "error", "--shots"),
        Case(
            "denoise/image-corrupt",
            ["denoise", str(corrupt_query), "--task", "inpaint", "-o", str(base / "d.png")],
            "error",
            "query-corrupt.jpg",
        ),
        Case("denoise/task-bogus", ["denoise", g, "--task", "erase", "-o", str(base / "d.png")], "error", "--task"),
        Case("denoise/out-is-a-folder", ["denoise", g, "--task", "inpaint", "-o", good], "error", "good"),
        Case(
            "denoise/out-not-an-image", ["denoise", g, "--task", "inpaint", "-o", str(base / "d.txt")], "error", "d.txt"
        ),
        Case("denoise/m-0", ["denoise", g, "--task", "inpaint", "-o", str(base / "d.png"), "--m", "0"], "error", "--m"),
        Case(
            "denoise/par-layers-negative",
            ["denoise", g, "--task", "deblur", "-o", str(base / "d.png"), "--par-layers", "-1"],
            "error",
            "--par-layers",
        ),
        Case("recipe/unknown-name", ["recipe", "run", "no-such-recipe", "--dry-run"], "error", "no-such-recipe"),
        Case("caption/template-unknown-name", ["caption", g, "--template", "fancy"], "error", "--template 'fancy'"),
        Case(
            "recipe/ship-onto-a-file",
            ["recipe", "ship", "cpu", "-o", _a_file(base, "notes.txt")],
            "error",
            "notes.txt",
        ),
        Case("recipe/broken-toml", ["recipe", "run", _broken_recipe(base), "--dry-run"], "error", "not valid TOML"),
        Case(
            "recipe/unknown-stage", ["train", "--recipe", "cpu", "--stage", "no-such-stage"], "error", "no-such-stage"
        ),
        Case(
            "recipe/option-it-sets", ["train", "--recipe", "cpu", "--stage", "whole-ft", "--lr", "1"], "error", "--lr"
        ),
        Case(
            "recipe/ship-unfinished",
            ["recipe", "ship", "cpu", "--runs", str(base / "no-runs"), "-o", str(base / "shipped")],
            "error",
            "has not finished",
        ),
        *_tuning_cases(base, g, str(corrupt_query)),
        *_seed_cases(base / "seed", g, str(corrupt_query)),
        *_scale_cases(base / "scale", g),
    ]


def _tuning_cases(base: Path, g: str, corrupt: str) -> list[Case]:
    """`restore`, `generate`, `tune` and `--adapter`: refused before any model loads, nothing written."""
    out_png = str(base / "r.png")
    plain_folder = base / "not-an-adapter"
    plain_folder.mkdir(parents=True, exist_ok=True)
    broken = base / "broken-adapter"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "adapter_config.json").write_text('{"target_modules": ["q_proj"], "r": 4')  # truncated JSON
    return [
        Case("restore/mask-0", ["restore", g, "-o", out_png, "--mask", "0"], "error", "--mask"),
        Case("restore/mask-1", ["restore", g, "-o", out_png, "--mask", "1"], "error", "--mask"),
        Case("restore/mask-above-1", ["restore", g, "-o", out_png, "--mask", "1.5"], "error", "--mask"),
        Case("restore/mask-negative", ["restore", g, "-o", out_png, "--mask", "-0.3"], "error", "--mask"),
        Case("restore/image-corrupt", ["restore", corrupt, "-o", out_png], "error", "query-corrupt.jpg"),
        Case("restore/out-not-an-image", ["restore", g, "-o", str(base / "r.txt")], "error", "r.txt"),
        Case(
            "restore/masked-is-the-output",
            ["restore", g, "-o", out_png, "--save-masked", out_png],
            "error",
            "--save-masked",
        ),
        Case("restore/out-is-the-input", ["restore", g, "-o", g], "error", "IMAGE"),
        Case(
            "restore/adapter-missing", ["restore", g, "-o", out_png, "--adapter", str(base / "nope")], "error", "nope"
        ),
        Case(
            "restore/adapter-not-an-adapter",
            ["restore", g, "-o", out_png, "--adapter", str(plain_folder)],
            "error",
            "adapter_config.json",
        ),
        Case(
            "restore/adapter-truncated-config",
            ["restore", g, "-o", out_png, "--adapter", str(broken)],
            "error",
            "adapter_config.json",
        ),
        Case("generate/prompt-empty", ["generate", "", "-o", str(base / "g.png")], "error", "PROMPT is empty"),
        Case("generate/prompt-blank", ["generate", "   ", "-o", str(base / "g.png")], "error", "PROMPT is empty"),
        Case("generate/prompt-huge", ["generate", "x" * 5000, "-o", str(base / "g.png")], "error", "1,000"),
        Case(
            "generate/temperature-negative",
            ["generate", "cat", "-o", str(base / "g.png"), "--temperature", "-1"],
            "error",
            "--temperature",
        ),
        Case(
            "generate/samples-0", ["generate", "cat", "-o", str(base / "g.png"), "--samples", "0"], "error", "--samples"
        ),
        Case(
            "generate/several-into-one-file",
            ["generate", "cat", "dog", "-o", str(base / "g.png")],
            "error",
            "g.png",
        ),
        Case(
            "classify/adapter-missing",
            ["classify", g, "--support", str(base / "good"), "--adapter", str(base / "nope")],
            "error",
            "nope",
        ),
        Case("tune/resume-nothing", ["tune", "-o", str(base / "no-run"), "--resume"], "error", "no training run"),
        Case("tune/no-out", ["tune"], "error", "--out"),
        Case("tune/unknown-recipe", ["tune", "--recipe", "no-such-lora"], "error", "no-such-lora"),
        Case("tune/rank-0", ["tune", "-o", str(base / "t"), "--r", "0", "--dry-run"], "error", "--r"),
        Case("tune/dropout-1", ["tune", "-o", str(base / "t"), "--dropout", "1", "--dry-run"], "error", "--dropout"),
        Case(
            "tune/targets-empty", ["tune", "-o", str(base / "t"), "--targets", ",", "--dry-run"], "error", "--targets"
        ),
        Case("tune/ship-without-recipe", ["tune", "-o", str(base / "t"), "--ship"], "error", "--recipe"),
    ]


def _scale_cases(base: Path, g: str) -> list[Case]:
    """`--device` / `--dtype` (every verb that runs a model) and `v2l plan`: refused before any model loads."""
    import torch

    base.mkdir(parents=True, exist_ok=True)
    out = str(base / "t.json")
    a_file = _a_file(base, "plain.txt")
    cases = [
        Case("scale/device-tpu", ["tokenize", g, "-o", out, "--device", "tpu"], "error", "--device 'tpu'"),
        Case("scale/device-cuda-x", ["words", g, "--device", "cuda:x"], "error", "--device 'cuda:x'"),
        Case("scale/dtype-int8", ["reconstruct", g, "-o", out + ".png", "--dtype", "int8"], "error", "--dtype 'int8'"),
        Case("scale/dtype-fp16-on-cpu", ["words", g, "--device", "cpu", "--dtype", "float16"], "error", "float16"),
        Case("scale/seed-on-cuda", ["seed", "encode", g, "--device", "cuda"], "error", "SEED runs on the CPU"),
        Case("scale/plan-unknown-llm", ["plan", "--llm", "gpt-9"], "error", "--llm 'gpt-9'", subprocess=True),
        Case("scale/plan-unknown-vl", ["plan", "--vl", "dino"], "error", "--vl 'dino'"),
        Case("scale/plan-unknown-suite", ["plan", "--suite", "huge"], "error", "huge"),
        Case("scale/plan-dtype-int8", ["plan", "--dtype", "int8"], "error", "--dtype 'int8'"),
        Case("scale/plan-out-inside-a-file", ["plan", "-o", a_file + "/p.json"], "error", "plain.txt"),
    ]
    if not torch.cuda.is_available():
        cases.append(Case("scale/device-cuda-here", ["words", g, "--device", "cuda"], "error", "no CUDA device"))
    return cases


def _seed_cases(base: Path, g: str, corrupt: str) -> list[Case]:
    """`v2l seed ...` and `v2l train --model seed`: refused before any model loads, nothing written."""
    from v2l.tokenizer.image_tokenizer import resolve_checkpoint

    base.mkdir(parents=True, exist_ok=True)
    fake_seed = base / "a-seed-checkpoint"
    fake_seed.mkdir(exist_ok=True)
    (fake_seed / "seed_config.json").write_text("{}")
    v2l_folder = str(resolve_checkpoint("cpu"))
    png = str(base / "s.png")
    return [
        Case("seed/caption-corrupt", ["seed", "caption", corrupt], "error", "query-corrupt.jpg"),
        Case("seed/encode-corrupt", ["seed", "encode", corrupt], "error", "query-corrupt.jpg"),
        Case("seed/caption-no-model", ["seed", "caption", g, "--seed-model", str(base / "nope")], "error", "nope"),
        Case(
            "seed/caption-a-v2l-tokenizer",
            ["seed", "caption", g, "--seed-model", v2l_folder],
            "error",
            "is a V2L tokenizer checkpoint",
        ),
        Case("seed/tokenize-a-seed-checkpoint", ["tokenize", "-t", str(fake_seed), g], "error", "is a SEED checkpoint"),
        Case("seed/generate-empty", ["seed", "generate", "", "-o", png], "error", "PROMPT is empty"),
        Case("seed/generate-huge", ["seed", "generate", "x" * 5000, "-o", png], "error", "1,000"),
        Case(
            "seed/generate-temperature-negative",
            ["seed", "generate", "cat", "-o", png, "--temperature", "-1"],
            "error",
            "--temperature",
        ),
        Case(
            "seed/generate-greedy-samples",
            ["seed", "generate", "cat", "-o", png, "--samples", "2"],
            "error",
            "--samples",
        ),
        Case("seed/generate-several-into-one-file", ["seed", "generate", "cat", "dog", "-o", png], "error", "s.png"),
        Case(
            "seed/reconstruct-out-not-an-image", ["seed", "reconstruct", g, "-o", str(base / "r.txt")], "error", "r.txt"
        ),
        Case("seed/train-unknown-recipe", ["seed", "train", "--recipe", "no-such-seed"], "error", "no-such-seed"),
        Case("seed/train-bad-stage", ["seed", "train", "--stage", "qformers", "--dry-run"], "error", "--stage"),
        Case(
            "seed/train-model-seed-unknown-recipe",
            ["train", "--model", "seed", "--recipe", "no-such-seed"],
            "error",
            "no-such-seed",
        ),
        Case("seed/train-out-is-a-file", ["seed", "train", "-o", _a_file(base, "notes.txt")], "error", "notes.txt"),
    ]


def _a_file(base: Path, name: str) -> str:
    base.mkdir(parents=True, exist_ok=True)
    (base / name).write_text("the user's own notes\n")
    return str(base / name)


def _broken_recipe(base: Path) -> str:
    base.mkdir(parents=True, exist_ok=True)
    path = base / "broken-recipe.toml"
    path.write_text('name = "broken"\n[[stages]\nname = "a"\n')
    return str(path)


# ---- checks of `ok` cases ------------------------------------------------------------------------------------


def _tokens_json_check(n: int):
    def check(res: Result) -> str | None:
        rows = json.loads(res.stdout)
        if len(rows) != n or not rows[0]["local_ids"] or not rows[0]["global_ids"]:
            return "tokenize --json printed no tokens"
        return None

    return check


def _words_capped(codebook: str):
    def check(res: Result) -> str | None:
        size = len(json.loads((Path(codebook) / "global_vocab.json").read_text()))
        rows = json.loads(res.stdout)
        return None if 0 < len(rows[0]["words"]) <= size else f"{len(rows[0]['words'])} words for {size} entries"

    return check


def _says_on_stderr(text: str):
    def check(res: Result) -> str | None:
        return None if text in res.stderr else f"stderr does not say {text!r}"

    return check


def _file_is_tokens(path: Path):
    def check(res: Result) -> str | None:
        return None if "local_ids" in json.loads(path.read_text()) else f"{path} was not replaced by tokens"

    return check


def _fell_back(damaged: str, step: int):
    def check(res: Result) -> str | None:
        if damaged not in res.stderr or f"step {step})" not in res.stderr:
            return f"stderr does not name {damaged} and the fallback to step {step}: {res.stderr[-300:]!r}"
        return None

    return check
