"""Codebooks (paper §3.2, appendix A, Table 5): local codebook embeddings, vocabulary expansion and global filtering.

One resumable build produces an artefact folder:

    manifest.json                 what it was built from (LLM + vocabulary hash, VL model, templates, settings, counts)
    local_embeddings.safetensors  "embeddings": (N, d) VL text embeddings of every LLM token, row i = token id i
    global_embeddings.safetensors "embeddings": (G, d) VL text embeddings of the filtered expanded vocabulary (E-LLM)
    global_vocab.json             per global entry: text, kind (subword/bigram/trigram), LLM token ids, count

The build works in chunks under `<key>.partial/`; each chunk is written atomically, so a killed build resumes from the
last finished chunk and gives byte-identical output. Artefacts live under `V2L_CACHE/codebooks/<key>/`, where the key
hashes the build settings, so `v2l words` and the tasks find them without being told.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from . import __version__
from .errors import ManifestMismatchError, ModelNotFoundError, V2LError
from .paths import atomic_path, cache_root, text_sha256, write_json_atomic
from .templates import resolve_templates

FORMAT_VERSION = 1
KINDS = ("subword", "bigram", "trigram")
RESOURCES = Path(__file__).resolve().parent / "resources" / "codebooks"


@dataclass
class CodebookConfig:
    """Every setting of a codebook build; saved in the manifest. Defaults are the CPU build of the README."""

    llm: str = "smollm2-135m"
    vl: str = "conse"
    prefix: str = "a photo of"  # appendix A; joined to entries by token ids, not text (see v2l.expansion)
    top_m: int = 1  # M in appendix A: next tokens kept per entry
    max_ngram: int = 3  # Table 5: 1 = subwords only, 2 = + bigrams, 3 = + trigrams
    templates: str | tuple[str, ...] = "cpu"  # "cpu" (3), "imagenet80", "single", N, or explicit templates
    renormalize_templates: bool = True  # re-normalise the template mean (the official code does not); our choice:
    # every codebook row is then a unit vector, so dot products are cosines as in the paper's filtering text.
    filter_data: str = "tiny-imagenet-200"  # a data set under the data root, or a folder of images
    filter_split: str | None = "train"
    filter_classes: str = "train"  # "train": only v2l's 160 training classes (held-out few-shot classes never
    # shape the codebook); "all": every image
    filter_per_class: int = 50  # images per class (0 = all); the paper uses all of ImageNet-1K train
    filter_top_k: int = 5  # top-5 entries per image (§3.2)
    min_count: int = 1  # keep entries chosen at least this often (paper: union, i.e. 1; official code: > 100)
    dedupe: str = "text"  # candidates kept once per "text" (stripped), or per "encoder" input: texts the VL text
    # encoder cannot tell apart (e.g. "Snake" / "snake" for an uncased one) embed identically; keep the first
    chunk_size: int = 2048  # prompts / texts / images per resumable chunk
    batch_size: int = 256

    def __post_init__(self):
        if self.dedupe not in ("text", "encoder"):
            raise V2LError(f"Unknown --dedupe {self.dedupe!r}: use text or encoder.")

    def key(self) -> str:
        d = dataclasses.asdict(self)
        d["templates"] = list(resolve_templates(self.templates))
        for k in ("chunk_size", "batch_size"):  # do not change the result
            d.pop(k)
        if d["dedupe"] == "text":  # the original behaviour keeps the keys of artefacts built before the option
            d.pop("dedupe")
        return f"{_slug(self.llm)}__{_slug(self.vl)}__{text_sha256(json.dumps(d, sort_keys=True))[:12]}"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(name).name or name)[:40]


def _entry_text(text: str | None, display: str) -> str:
    """What the VL text encoder reads for a token: its text without surrounding spaces (display form if none)."""
    s = (text or "").strip()
    return s if s else display


def embed_entries(vl, texts: Sequence[str], templates: Sequence[str], renormalize: bool = True,
                  batch_size: int = 256) -> torch.Tensor:
    """Template-averaged VL text embeddings (len(texts), d); each template's embedding is unit-norm."""
    acc = None
    for t in templates:
        e = vl.encode_text([t.format(x) for x in texts], batch_size=batch_size)
        acc = e if acc is None else acc + e
    mean = acc / len(templates)
    return torch.nn.functional.normalize(mean, dim=-1) if renormalize else mean


class _Chunks:
    """Numbered safetensors chunks in a work folder; each written atomically, loaded instead of recomputed."""

    def __init__(self, folder: Path, callback: Callable[[str, int], None] | None):
        self.folder, self.callback = folder, callback
        folder.mkdir(parents=True, exist_ok=True)

    def map(self, stage: str, items: Sequence, chunk: int, fn: Callable[[Sequence], torch.Tensor],
            desc: str) -> torch.Tensor:
        parts = []
        n_chunks = (len(items) + chunk - 1) // chunk
        bar = tqdm(total=len(items), desc=desc, unit="item", dynamic_ncols=True)
        for c in range(n_chunks):
            path = self.folder / f"{stage}-{c:05d}.safetensors"
            part = items[c * chunk : (c + 1) * chunk]
            if path.is_file():
                parts.append(load_file(path)["t"])
            else:
                t = fn(part).contiguous()
                with atomic_path(path) as tmp:
                    save_file({"t": t}, str(tmp))
                parts.append(t)
                if self.callback:
                    self.callback(stage, c)
            bar.update(len(part))
        bar.close()
        return torch.cat(parts) if parts else torch.empty(0)


def _filter_images(cfg: CodebookConfig, data_root):
    from .data import open_images, select_indices

    ds = open_images(cfg.filter_data, split=cfg.filter_split, root=data_root)
    return ds, select_indices(ds, cfg.filter_classes, cfg.filter_per_class, data_name=cfg.filter_data)


def variant_folder(cfg: CodebookConfig, max_ngram: int, out: str | Path | None = None) -> Path:
    """Where the Table 5 variant of `cfg` with `max_ngram` goes: the cache by key, or beside `out`."""
    if out is not None:
        return Path(out).with_name(f"{Path(out).name}-max-ngram-{max_ngram}")
    return cache_root() / "codebooks" / dataclasses.replace(cfg, max_ngram=max_ngram).key()


def build_codebook(cfg: CodebookConfig, *, lm=None, vl=None, out: str | Path | None = None, data_root=None,
                   callback: Callable[[str, int], None] | None = None, force: bool = False,
                   variants: bool = False) -> Path:
    """Build (or resume, or find) the codebook artefact for `cfg`; returns its folder.

    `lm` / `vl` may be passed already loaded. `callback(stage, chunk)` runs after each chunk is saved (progress
    hooks; tests raise from it to simulate a kill). `variants=True` also writes Table 5's smaller variants
    (`max_ngram` = 1 .. cfg.max_ngram - 1, see `variant_folder`) from the same candidates and image embeddings: a
    variant's candidates are exactly the first kinds of this build's (expansion and de-duplication go level by level,
    shorter entries first), so it equals a separate build of that variant up to float rounding, at the cost of one
    extra filtering pass instead of a whole build.
    """
    from .backbones import LanguageModel, load_vl
    from .expansion import candidate_subwords, extend_once, word_mask

    target = Path(out) if out else cache_root() / "codebooks" / cfg.key()
    targets = {cfg.max_ngram: target}
    if variants:
        targets.update({n: variant_folder(cfg, n, out) for n in range(1, cfg.max_ngram)})
    if not force and all((t / "manifest.json").is_file() for t in targets.values()):
        return target
    templates = resolve_templates(cfg.templates)
    lm = lm or LanguageModel.load(cfg.llm)
    vl = vl or load_vl(cfg.vl)
    work = target.with_name(target.name + ".partial")
    chunks = _Chunks(work, callback)
    vocab = lm.vocab

    # 1. Local codebook: every token's text, row i = token id i.
    local_texts = [_entry_text(t, d) for t, d in zip(vocab.texts, vocab.display, strict=True)]
    local = chunks.map("local", local_texts, cfg.chunk_size,
                       lambda xs: embed_entries(vl, xs, templates, cfg.renormalize_templates, cfg.batch_size),
                       "embed LLM vocabulary")

    # 2. Expansion: subwords -> bigrams -> trigrams, by token ids after the prefix.
    prefix_ids = lm.encode(cfg.prefix, add_special_tokens=True)
    cache = lm.prefix_cache(prefix_ids)
    allowed = word_mask(lm)
    levels = [torch.tensor([[t] for t in candidate_subwords(lm)], dtype=torch.long)]
    for n in range(2, cfg.max_ngram + 1):
        def extend(rows, _cache=cache):
            return torch.tensor(extend_once(lm, rows.tolist(), prefix_ids, cfg.top_m, cfg.batch_size, allowed,
                                            prefix_cache=_cache))
        levels.append(chunks.map(f"expand{n}", levels[-1], cfg.chunk_size, extend, f"expand to {KINDS[n - 1]}s"))

    # 3. Candidates: de-duplicated by text (or by text-encoder input), shorter entries first.
    cand_ids, cand_kind, cand_text, seen = [], [], [], set()
    for kind, rows in zip(KINDS, levels, strict=False):
        rows = rows.tolist()
        texts = [lm.decode(row).strip() if kind != "subword" else _entry_text(vocab.texts[row[0]], "") for row in rows]
        keys = texts if cfg.dedupe == "text" else vl.text_keys(texts, templates)
        for row, text, key in zip(rows, texts, keys, strict=True):
            if not text or key in seen:
                continue
            seen.add(key)
            cand_ids.append(row)
            cand_kind.append(kind)
            cand_text.append(text)
    sub_rows = [i for i, k in enumerate(cand_kind) if k == "subword"]
    multi = [i for i, k in enumerate(cand_kind) if k != "subword"]
    multi_emb = chunks.map("candidates", [cand_text[i] for i in multi], cfg.chunk_size,
                           lambda xs: embed_entries(vl, xs, templates, cfg.renormalize_templates, cfg.batch_size),
                           "embed expanded entries")
    cand_emb = torch.empty((len(cand_ids), local.shape[1]))
    # A subword candidate's text and templates are those of its local-codebook row: reuse the row.
    cand_emb[sub_rows] = local[[cand_ids[i][0] for i in sub_rows]]
    if multi:
        cand_emb[multi] = multi_emb

    # 4. Filtering images, embedded once for the build and its variants.
    ds, chosen = _filter_images(cfg, data_root)
    img_emb = chunks.map("images", chosen, min(cfg.chunk_size, 512),
                         lambda idx: vl.encode_image([ds[i].image for i in idx], batch_size=64),
                         f"embed {cfg.filter_data} images")
    common = {"format": FORMAT_VERSION, "v2l_version": __version__, "templates": list(templates),
              "llm": {**lm.info(), "vocabulary_sha256": vocab.sha256, "source_sha256": lm.source_hash},
              "vl": vl.fingerprint(), "prefix_ids": prefix_ids,
              "join": "token ids (prefix ids + entry ids; no re-tokenisation)",
              "candidate_policy": "subword candidates = tokens of kind 'word'; next tokens chosen among 'word' tokens"}
    for n, folder in sorted(targets.items(), reverse=True):
        if (folder / "manifest.json").is_file() and not force:
            continue
        rows = [i for i, k in enumerate(cand_kind) if KINDS.index(k) < n]
        entries, emb = _filter(dataclasses.replace(cfg, max_ngram=n), img_emb, cand_emb[rows],
                               [cand_text[i] for i in rows], [cand_kind[i] for i in rows],
                               [cand_ids[i] for i in rows])
        cand_by_kind = {k: cand_kind.count(k) if KINDS.index(k) < n else 0 for k in KINDS}
        manifest = {**common, "config": dataclasses.asdict(dataclasses.replace(cfg, max_ngram=n)),
                    "counts": {"local": int(local.shape[0]), "candidates": len(rows),
                               "candidates_by_kind": cand_by_kind,
                               "global": len(entries),
                               "global_by_kind": {k: sum(1 for e in entries if e["kind"] == k) for k in KINDS},
                               "filter_images": len(chosen)}}
        if folder != target:
            manifest["derived_from"] = f"the build of {target.name} (its first {n} candidate kinds)"
        _write_artefact(folder, local, emb, entries, vocab, manifest)
    shutil.rmtree(work, ignore_errors=True)
    return target


def _filter(cfg: CodebookConfig, img_emb: torch.Tensor, cand_emb: torch.Tensor, texts: list[str], kinds: list[str],
            ids: list[list[int]]) -> tuple[list[dict], torch.Tensor]:
    """Each image's top-k candidates by cosine similarity; keep the union (count >= min_count)."""
    counts = torch.zeros(len(texts), dtype=torch.long)
    for start in range(0, len(img_emb), 256):
        top = (img_emb[start : start + 256] @ cand_emb.T).topk(min(cfg.filter_top_k, len(texts)), dim=-1).indices
        counts += torch.bincount(top.flatten(), minlength=len(texts))
    keep = [i for i in range(len(texts)) if counts[i] >= cfg.min_count]
    if not keep:
        raise V2LError(f"No entry was chosen at least {cfg.min_count} times: lower --min-count.")
    entries = [{"text": texts[i], "kind": kinds[i], "ids": ids[i], "count": int(counts[i])} for i in keep]
    return entries, cand_emb[keep]


def _write_artefact(target: Path, local: torch.Tensor, glob: torch.Tensor, entries: list[dict], vocab,
                    manifest: dict) -> None:
    with atomic_path(target) as tmp:
        tmp.mkdir()
        save_file({"embeddings": local.contiguous()}, str(tmp / "local_embeddings.safetensors"))
        save_file({"embeddings": glob.contiguous()}, str(tmp / "global_embeddings.safetensors"))
        (tmp / "global_vocab.json").write_text(json.dumps(entries, ensure_ascii=False, indent=0) + "\n")
        _write_local_vocab(tmp / "local_vocab.json", vocab)
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")


@dataclass
class Codebook:
    """A loaded codebook artefact. `local_embeddings` may be absent (a global-only artefact from a shipped list)."""

    folder: Path
    manifest: dict
    entries: list[dict]
    global_embeddings: torch.Tensor
    local_embeddings: torch.Tensor | None = field(default=None, repr=False)
    local_display: list[str] | None = field(default=None, repr=False)  # per LLM token id, readable
    local_kinds: list[str] | None = field(default=None, repr=False)

    @property
    def texts(self) -> list[str]:
        return [e["text"] for e in self.entries]

    @classmethod
    def load(cls, folder: str | Path, lm=None, vl=None) -> Codebook:
        """Load an artefact; refuse it if `lm` / `vl` (when given) are not the models it was built with."""
        folder = Path(folder)
        if not (folder / "manifest.json").is_file():
            raise ModelNotFoundError(f"{folder} is not a codebook (no manifest.json): run `v2l codebook build`.")
        manifest = json.loads((folder / "manifest.json").read_text())
        check_manifest(manifest, lm=lm, vl=vl, where=str(folder))
        entries = json.loads((folder / "global_vocab.json").read_text())
        glob = load_file(folder / "global_embeddings.safetensors")["embeddings"]
        local_path = folder / "local_embeddings.safetensors"
        local = load_file(local_path)["embeddings"] if local_path.is_file() else None
        display = kinds = None
        if (folder / "local_vocab.json").is_file():
            lv = json.loads((folder / "local_vocab.json").read_text())
            display, kinds = lv["display"], lv["kinds"]
        if glob.shape[0] != len(entries):
            raise ManifestMismatchError(f"{folder}: {glob.shape[0]} global embeddings for {len(entries)} entries; "
                                        "the artefact is damaged, rebuild it with `v2l codebook build --force`.")
        return cls(folder, manifest, entries, glob, local, display, kinds)

    def global_tokens(self, image_embeddings: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The `k` nearest global entries of each image embedding: (similarities, indices), both (n, k)."""
        sims = image_embeddings.float() @ self.global_embeddings.float().T
        return sims.topk(min(k, sims.shape[1]), dim=-1)


def _write_local_vocab(path: Path, vocab) -> None:
    path.write_text(json.dumps({"display": vocab.display, "kinds": vocab.kinds}, ensure_ascii=False) + "\n")


def ensure_local_embeddings(codebook: Codebook, vl, lm=None, progress: bool = True) -> Codebook:
    """Add the local codebook (and the LLM's display vocabulary) to an artefact that lacks them, once.

    A codebook materialised from the shipped global list has no local embeddings; the tokenizer needs them. They are
    the VL text embeddings of every LLM token with the artefact's templates (a few minutes on 2 cores), written into
    the artefact folder atomically.
    """
    if codebook.local_embeddings is not None and codebook.local_display is not None:
        return codebook
    from .backbones import LanguageModel

    lm = lm or LanguageModel.load(codebook.manifest["llm"]["name"], progress=progress)
    check_manifest(codebook.manifest, lm=lm, vl=vl, where=str(codebook.folder))
    if codebook.local_embeddings is None:
        if progress:
            tqdm.write(f"v2l: embedding the LLM vocabulary ({lm.vocab_size} tokens) once for the local codebook",
                       file=sys.stderr)
        texts = [_entry_text(t, d) for t, d in zip(lm.vocab.texts, lm.vocab.display, strict=True)]
        cfg = codebook.manifest["config"]
        chunks = _Chunks(codebook.folder.with_name(codebook.folder.name + ".local-partial"), None)
        local = chunks.map("local", texts, cfg.get("chunk_size", 2048),
                           lambda xs: embed_entries(vl, xs, codebook.manifest["templates"],
                                                    cfg["renormalize_templates"], cfg["batch_size"]),
                           "embed LLM vocabulary")
        with atomic_path(codebook.folder / "local_embeddings.safetensors") as tmp:
            save_file({"embeddings": local.contiguous()}, str(tmp))
        shutil.rmtree(chunks.folder, ignore_errors=True)
    if codebook.local_display is None:
        with atomic_path(codebook.folder / "local_vocab.json") as tmp:
            _write_local_vocab(tmp, lm.vocab)
    return Codebook.load(codebook.folder, vl=vl)


def check_manifest(manifest: dict, lm=None, vl=None, where: str = "codebook") -> None:
    if manifest.get("format") != FORMAT_VERSION:
        raise ManifestMismatchError(f"{where} has format {manifest.get('format')}, this v2l reads {FORMAT_VERSION}: "
                                    "rebuild it with `v2l codebook build`.")
    built_llm = manifest["llm"]
    if lm is not None and built_llm["vocabulary_sha256"] != lm.vocab.sha256:
        raise ManifestMismatchError(
            f"{where} was built for LLM {built_llm['name']!r} (vocabulary {built_llm['vocabulary_sha256'][:12]}), "
            f"not {lm.name!r} (vocabulary {lm.vocab.sha256[:12]}): build one with "
            f"`v2l codebook build --llm {lm.name}`.")
    if vl is not None and manifest["vl"] != vl.fingerprint():
        raise ManifestMismatchError(
            f"{where} was built with VL model {manifest['vl']}, not {vl.fingerprint()}: build one with "
            f"`v2l codebook build --vl {vl.name}`.")


def shipped_vocab(llm: str, vl: str) -> Path | None:
    """The shipped global vocabulary list for (llm, vl), if v2l ships one."""
    folder = RESOURCES / f"{_slug(llm)}__{_slug(vl)}"
    return folder if (folder / "manifest.json").is_file() else None


def materialize_shipped(folder: Path, vl, progress: bool = True) -> Path:
    """Embed a shipped global vocabulary list with `vl` once; cache it as a global-only artefact and return it."""
    manifest = json.loads((folder / "manifest.json").read_text())
    check_manifest(manifest, vl=vl, where=f"shipped codebook {folder.name}")
    target = cache_root() / "codebooks" / (CodebookConfig(**manifest["config"]).key() + "-global")
    if (target / "manifest.json").is_file():
        return target
    entries = json.loads((folder / "global_vocab.json").read_text())
    if progress:
        tqdm.write(f"v2l: embedding the shipped global vocabulary ({len(entries)} entries) once; cached in {target}",
                   file=sys.stderr)
    emb = embed_entries(vl, [e["text"] for e in entries], manifest["templates"],
                        manifest["config"]["renormalize_templates"], manifest["config"]["batch_size"])
    with atomic_path(target) as tmp:
        tmp.mkdir()
        save_file({"embeddings": emb.contiguous()}, str(tmp / "global_embeddings.safetensors"))
        shutil.copy(folder / "global_vocab.json", tmp / "global_vocab.json")
        write_json_atomic(tmp / "manifest.json", {**manifest, "materialized_from": "shipped global vocabulary"})
    return target


def find_codebook(llm: str = "smollm2-135m", vl_name: str = "conse", vl=None, progress: bool = True) -> Path:
    """The artefact `v2l words` and the tasks use: a built one in the cache, else the shipped list embedded once."""
    built = cache_root() / "codebooks" / CodebookConfig(llm=llm, vl=vl_name).key()
    if (built / "manifest.json").is_file():
        return built
    shipped = shipped_vocab(llm, vl_name)
    if shipped is not None:
        from .backbones import load_vl

        return materialize_shipped(shipped, vl or load_vl(vl_name), progress=progress)
    raise ModelNotFoundError(f"No codebook for LLM {llm!r} and VL model {vl_name!r}: run "
                             f"`v2l codebook build --llm {llm} --vl {vl_name}` (or pass --codebook FOLDER).")
