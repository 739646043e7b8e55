"""The corpus's hostile part: hostile data sets, damaged artefacts, numbers out of range, template fields of the wrong
type and options that contradict each other, each made here from real files (`fault_cases`, called by
`corpus.cases`). Every case must end in one sentence naming the input, with nothing written outside it.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

from PIL import Image

from corpus import Case


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 120, 200)).save(buf, format="JPEG")
    return buf.getvalue()


def _shard(root: Path, name: str, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> str:
    """A data root holding one data set `name` of one shard with `members` (TarInfo for links, else name and bytes)."""
    folder = root / "hostile-data" / name
    folder.mkdir(parents=True)
    with tarfile.open(folder / f"{name}-000000.tar", "w") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
                continue
            ti = tarfile.TarInfo(m[0])
            ti.size = len(m[1])
            tf.addfile(ti, io.BytesIO(m[1]))
    return str(root / "hostile-data")


_BIG: list[bytes] = []


def _big_truncated_png() -> bytes:
    """A 9,400 × 9,400 PNG (88 M pixels, under the decompression-bomb guard) cut in half; made once per process."""
    if not _BIG:
        img = Image.linear_gradient("L").resize((9400, 9400)).convert("RGB")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        _BIG.append(buf.getvalue()[: len(buf.getvalue()) // 2])
    return _BIG[0]


def _link(name: str, target: str, hard: bool = False) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    ti.linkname = target
    return ti


def _huge(root: Path) -> str:
    """A shard whose one member declares 2 GB (its data is not there: the header alone must refuse it)."""
    folder = root / "hostile-data" / "huge"
    folder.mkdir(parents=True)
    ti = tarfile.TarInfo("a.jpg")
    ti.size = 2 << 30
    header = ti.tobuf(format=tarfile.GNU_FORMAT)
    (folder / "huge-000000.tar").write_bytes(header + b"\0" * 1024)
    return str(root / "hostile-data")


def _damaged_copy(src: str, dst: Path, edit) -> str:
    """A copy of the folder `src` with `edit(folder)` applied (a dry build without `src` makes an empty folder)."""
    if Path(src).is_dir():
        shutil.copytree(src, dst)
    else:
        dst.mkdir(parents=True)
        (dst / "config.json").write_text("{}")
        (dst / "model.safetensors").write_bytes(b"")
        (dst / "manifest.json").write_text("{}")
    edit(dst)
    return str(dst)


def _truncate(name: str, keep: int | None = None):
    def edit(folder: Path) -> None:
        p = folder / name
        data = p.read_bytes() if p.is_file() else b"{}"
        p.write_bytes(data[: keep if keep is not None else len(data) // 2])

    return edit


def _flip_header(folder: Path) -> None:
    """A bit flip in a safetensors header: its JSON no longer parses."""
    p = folder / "model.safetensors"
    data = bytearray(p.read_bytes() if p.is_file() and p.stat().st_size > 16 else b"\0" * 16)
    data[min(9, len(data) - 1)] ^= 0xFF
    p.write_bytes(bytes(data))


def _config_edit(change):
    def edit(folder: Path) -> None:
        p = folder / "config.json"
        try:
            cfg = json.loads(p.read_text())
        except ValueError:
            cfg = {}
        p.write_text(json.dumps(change(cfg)))

    return edit


def _with_codebook(tok_copy_edit, codebook: str, root: Path, cb_edit):
    """A tokenizer copy whose config points to a damaged copy of its codebook."""

    def edit(folder: Path) -> None:
        cb = _damaged_copy(codebook, root / "damaged" / f"cb-{folder.name}", cb_edit)
        p = folder / "config.json"
        try:
            cfg = json.loads(p.read_text())
        except ValueError:
            cfg = {}
        cfg["codebook_folder"] = cb
        p.write_text(json.dumps(cfg))
        tok_copy_edit(folder)

    return edit


def fault_cases(root: Path, tok: str, codebook: str, good_image: str, tokens_good: dict) -> list[Case]:
    jpg = _jpeg()
    meta = lambda label: json.dumps({"label": label}).encode()  # noqa: E731
    exp = str(root / "exp")
    out: list[Case] = []

    # ---- hostile data sets through `data export` (CVE-2007-4559's attack on a reader) ---------------------------
    hostile = {
        "absolute-member": ([("/tmp/v2l-evil/a.jpg", jpg)], "an absolute path"),
        "dotdot-member": ([("../escape.jpg", jpg)], "'..'"),
        "deep-dotdot-member": ([("a/../../escape.jpg", jpg)], "'..'"),
        "symlink-member": ([_link("a.jpg", "/etc/passwd")], "a link"),
        "hardlink-member": ([("b.jpg", jpg), _link("a.jpg", "b.jpg", hard=True)], "a link"),
        "drive-letter-member": ([("C:/evil.jpg", jpg)], "an absolute path"),
    }
    for name, (members, why) in hostile.items():
        data = _shard(root, name, members)
        out.append(
            Case(
                f"hostile/{name}",
                ["data", "export", name, "--data-root", data, "-o", exp],
                "error",
                why,
                subprocess=name == "absolute-member",
                tags=("hostile",),
            )
        )
    out.append(
        Case(
            "hostile/member-declares-2gb",
            ["data", "export", "huge", "--data-root", _huge(root), "-o", exp],
            "error",
            "bytes declared",
            tags=("hostile",),
        )
    )
    for name, label, by_class, expect, must in (
        ("label-dotdot", "..", True, "error", "'..'"),
        ("label-dot", ".", True, "error", "'.'"),
        ("label-empty", "", True, "ok", None),  # an empty label is "unlabelled"
        ("label-slashes", "../../etc", True, "ok", None),  # cleaned to one component: .._.._etc
        ("label-newline", "cat\ndog", True, "ok", None),
        ("label-dotdot-flat", "..", False, "ok", None),  # flat names keep only letters and digits of a label
    ):
        data = _shard(root, name, [("k1.jpg", jpg), ("k1.json", meta(label))])
        argv = ["data", "export", name, "--data-root", data, "-o", exp] + (["--by-class"] if by_class else [])

        def inside(res, _exp=Path(exp)):
            files = [p for p in _exp.rglob("*") if p.is_file()]
            if len(files) != 1 or _exp.resolve() not in files[0].resolve().parents:
                return f"expected one file inside {_exp}, found {files}"
            if "\n" in str(files[0]):
                return f"a newline in a written name: {files[0]!r}"
            return None

        out.append(
            Case(
                f"hostile/{name}",
                argv,
                expect,
                must,
                creates=("exp",) if expect == "ok" else (),
                check=inside if expect == "ok" else None,
                tags=("hostile",),
            )
        )
    metalist = _shard(root, "metalist", [("k.jpg", jpg), ("k.json", b"[1]")])
    out.append(
        Case(
            "hostile/meta-is-a-list",
            ["data", "export", "metalist", "--data-root", metalist, "--by-class", "-o", exp],
            "error",
            "not a mapping",
            tags=("hostile",),
        )
    )

    # ---- damaged artefacts: a checkpoint and its codebook -------------------------------------------------------
    d = root / "damaged"
    tok_cases = {
        "weights-truncated": (_truncate("model.safetensors"), "model.safetensors"),
        "weights-empty": (_truncate("model.safetensors", 0), "model.safetensors"),
        "weights-header-flipped": (_flip_header, "model.safetensors"),
        "config-truncated": (_truncate("config.json"), "config.json"),
        "config-a-list": (_config_edit(lambda c: [c]), "holds a JSON list"),
        "config-no-codebook": (_config_edit(lambda c: {k: v for k, v in c.items() if k != "codebook"}), "'codebook'"),
        "config-model-config-a-string": (_config_edit(lambda c: {**c, "model_config": "v2l"}), "'model_config'"),
        "config-codebook-llm-a-number": (
            _config_edit(lambda c: {**c, "codebook": {**c.get("codebook", {}), "llm": 7}}),
            "'llm'",
        ),
    }
    cb_cases = {
        "codebook-embeddings-truncated": _truncate("global_embeddings.safetensors"),
        "codebook-vocab-truncated": _truncate("global_vocab.json"),
        "codebook-manifest-a-list": lambda f: (f / "manifest.json").write_text("[]"),
    }
    names = {
        "codebook-embeddings-truncated": "global_embeddings.safetensors",
        "codebook-vocab-truncated": "global_vocab.json",
        "codebook-manifest-a-list": "manifest.json",
    }
    for name, (edit, must) in tok_cases.items():
        folder = _damaged_copy(tok, d / name, edit)
        out.append(Case(f"artefact/{name}", ["tokenize", good_image, "-t", folder], "error", must, tags=("artefact",)))
    for name, cb_edit in cb_cases.items():
        folder = _damaged_copy(tok, d / name, _with_codebook(lambda f: None, codebook, root, cb_edit))
        out.append(
            Case(f"artefact/{name}", ["tokenize", good_image, "-t", folder], "error", names[name], tags=("artefact",))
        )

    # ---- numbers and fields of the wrong type --------------------------------------------------------------------
    t = root / "faults"
    t.mkdir()
    grid = tokens_good["local_ids"]

    def tokens_file(name: str, payload: dict) -> str:
        (t / name).write_text(json.dumps(payload))
        return str(t / name)

    for name, payload, must in (
        ("id-2-64", {**tokens_good, "local_ids": [[2**64] + r[1:] for r in grid]}, "local_ids[0]"),
        ("id-minus-2-63", {**tokens_good, "local_ids": [[-(2**63)] + r[1:] for r in grid]}, "local_ids[0]"),
        ("global-2-70", {**tokens_good, "global_ids": [2**70]}, "global_ids[0]"),
    ):
        out.append(
            Case(
                f"numbers/{name}",
                ["decode", tokens_file(f"{name}.json", payload), "-t", tok, "-o", str(t / "d.png")],
                "error",
                must,
                tags=("numbers",),
            )
        )
    for verb, name, fields, must in (
        ("caption", "stops-a-number", {"stops": 5}, "'stops'"),
        ("caption", "stops-a-string", {"stops": ". "}, "'stops'"),
        ("caption", "max-new-tokens-negative", {"max_new_tokens": -5}, "'max_new_tokens'"),
        ("caption", "max-new-tokens-a-string", {"max_new_tokens": "40"}, "'max_new_tokens'"),
        ("vqa", "instruction-a-list", {"instruction": ["a"]}, "'instruction'"),
        ("classify", "stops-a-number", {"stops": 5}, "'stops'"),
        ("classify", "label-end-a-number", {"label_end": 1}, "'label_end'"),
    ):
        (t / f"{verb}-{name}.json").write_text(json.dumps(fields))
        tmpl = ["--template", str(t / f"{verb}-{name}.json")]
        argv = {
            "caption": ["caption", good_image, *tmpl],
            "vqa": ["vqa", good_image, "What is it?", *tmpl],
            "classify": ["classify", good_image, "--support", str(root / "support" / "good"), *tmpl],
        }[verb]
        out.append(Case(f"template/{verb}-{name}", argv, "error", must, tags=("template",)))
    (t / "big-truncated.png").write_bytes(_big_truncated_png())
    out.append(
        Case(
            "image/truncated-9400x9400-png",
            ["tokenize", str(t / "big-truncated.png"), "-t", tok],
            "error",
            "truncated",
            tags=("image",),
        )
    )
    out.append(
        Case(
            "text/question-not-utf8",
            ["vqa", good_image, "What is \udcff?"],
            "error",
            "not UTF-8",
            tags=("text",),
        )
    )

    # ---- options that contradict each other ------------------------------------------------------------------------
    (t / "no-episodes.json").write_text(json.dumps({"meta": {}, "episodes": []}))
    same = str(t / "same.png")
    out += [
        Case(
            "options/denoise-out-is-corrupted",
            ["denoise", good_image, "--task", "inpaint", "-o", same, "--corrupted", same],
            "error",
            "--corrupted",
            tags=("options",),
        ),
        Case(
            "options/denoise-out-is-the-input",
            ["denoise", good_image, "--task", "inpaint", "-o", good_image],
            "error",
            "the input IMAGE",
            tags=("options",),
        ),
        Case(
            "options/fewshot-out-is-save-episodes",
            ["fewshot", "-o", str(t / "r.json"), "--save-episodes", str(t / "r.json")],
            "error",
            "--save-episodes",
            tags=("options",),
        ),
        Case(
            "options/fewshot-out-is-episodes-file",
            ["fewshot", "-o", str(t / "no-episodes.json"), "--episodes-file", str(t / "no-episodes.json")],
            "error",
            "--episodes-file",
            tags=("options",),
        ),
        Case(
            "options/fewshot-no-episodes",
            ["fewshot", "-o", str(t / "r.json"), "--episodes-file", str(t / "no-episodes.json")],
            "error",
            "no episodes",
            tags=("options",),
        ),
        Case(
            "options/bench-label-twice",
            ["bench", "-o", str(t / "b"), "--tokenizers", "a=x", "--tokenizers", "a=y"],
            "error",
            "given twice",
            tags=("options",),
        ),
        Case(
            "options/bench-stage-not-in-suite",
            ["bench", "-o", str(t / "b"), "--stage", "training"],
            "error",
            "--stage",
            tags=("options",),
        ),
        Case(
            "options/bench-codebook-missing",
            ["bench", "-o", str(t / "b"), "--codebook", str(t / "no-codebook")],
            "error",
            "no such codebook folder",
            tags=("options",),
        ),
        Case(
            "options/fewshot-cells-bogus",
            ["fewshot", "--cells", "ind-2shot", "-o", str(t / "r.json")],
            "error",
            "--cells",
            tags=("options",),
        ),
        Case(
            "options/fewshot-tokens-without-tokenizer",
            ["fewshot", "--tokens", "5", "-o", str(t / "r.json")],
            "error",
            "--tokenizer",
            tags=("options",),
        ),
    ]

    # ---- numbers: NaN, inf, negative and huge values of integer and float options ----------------------------------
    run = str(t / "run")
    numbers = {
        "train-lr-inf": (["train", "--lr", "inf", "-o", run], "--lr"),
        "train-gan-weight-nan": (["train", "--gan-weight", "nan", "-o", run], "--gan-weight"),
        "train-perceptual-weight-inf": (["train", "--perceptual-weight", "inf", "-o", run], "--perceptual-weight"),
        "train-steps-huge": (["train", "--steps", str(10**24), "-o", run], "--steps"),
        "train-warmup-huge": (["train", "--warmup-steps", str(2**63), "-o", run], "--warmup-steps"),
        "train-batch-size-negative": (["train", "--batch-size", "-3", "-o", run], "--batch-size"),
        "codebook-max-share-nan": (["codebook", "build", "--max-share", "nan", "-o", str(t / "cb")], "--max-share"),
        "codebook-max-share-negative": (["codebook", "build", "--max-share", "-1", "-o", str(t / "cb")], "--max-share"),
        "codebook-max-share-above-1": (["codebook", "build", "--max-share", "2", "-o", str(t / "cb")], "--max-share"),
        "fewshot-episodes-huge": (["fewshot", "--episodes", str(10**12), "-o", str(t / "r.json")], "--episodes"),
    }
    out += [Case(f"numbers/{k}", argv, "error", why, tags=("numbers",)) for k, (argv, why) in numbers.items()]

    # ---- user files of the wrong shape or type: recipes, episode lists, templates ----------------------------------
    shipped = (Path(__file__).resolve().parents[1] / "src/v2l/resources/recipes/cpu.toml").read_text()
    (t / "recipe-binary.toml").write_bytes(b"\xff\xfe\x00 not text")
    (t / "recipe-per-class-text.toml").write_text(shipped.replace("per_class = 100 ", 'per_class = "many" '))
    (t / "recipe-name-number.toml").write_text(shipped.replace('name = "cpu"', "name = 5", 1))
    (t / "episodes-list.json").write_text("[]")
    (t / "template-inf.json").write_text('{"max_new_tokens": 1e400}')
    (t / "template-empty-stop.json").write_text('{"stops": [""]}')
    files = {
        "recipe-not-utf8": (["recipe", "run", str(t / "recipe-binary.toml"), "--dry-run"], "not valid TOML"),
        "recipe-per-class-text": (
            ["recipe", "run", str(t / "recipe-per-class-text.toml"), "--dry-run"],
            "must be a whole number",
        ),
        "recipe-name-number": (["recipe", "run", str(t / "recipe-name-number.toml"), "--dry-run"], "needs a name"),
        "episodes-a-list": (
            ["fewshot", "-o", str(t / "r.json"), "--episodes-file", str(t / "episodes-list.json")],
            "episodes-list.json",
        ),
        "template-max-new-tokens-inf": (
            ["caption", good_image, "--template", str(t / "template-inf.json")],
            "max_new_tokens",
        ),
        "template-empty-stop": (["caption", good_image, "--template", str(t / "template-empty-stop.json")], "stops"),
    }
    out += [Case(f"artefact/{k}", argv, "error", why, tags=("artefact",)) for k, (argv, why) in files.items()]
    return out
