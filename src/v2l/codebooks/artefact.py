"""The codebook artefact (paper §3.2, appendix A, Table 5): what a build writes, how it is loaded and checked, and the
shipped default (the global vocabulary list, the packed local codebook). A build produces an artefact folder:

    manifest.json                 what it was built from (LLM + vocabulary hash, VL model, templates, settings, counts)
    local_embeddings.safetensors  "embeddings": (N, d) VL text embeddings of every LLM token, row i = token id i
    global_embeddings.safetensors "embeddings": (G, d) VL text embeddings of the filtered expanded vocabulary (E-LLM)
    global_vocab.json             per global entry: text, kind (subword/bigram/trigram), LLM token ids, count

Artefacts live under `V2L_CACHE/codebooks/<key>/`, where the key hashes the build settings, so `v2l words` and the
tasks find them without being told.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..backbones.language_model import DEFAULT_LLM
from ..backbones.vision_language import DEFAULT_VL
from ..errors import ConfigError, ManifestMismatchError, ModelNotFoundError
from ..files import ArtefactError, json_field, read_json, read_safetensors
from ..paths import atomic_path, cache_root, text_sha256, write_json_atomic
from .config import FORMAT_VERSION, CodebookConfig, slug
from .local import embed_local_codebook, local_identity, unpack_local_codebook
from .templates import embed_entries

RESOURCES = Path(__file__).resolve().parent.parent / "resources" / "codebooks"
LOCAL_PACK = "local_codebook.bin"  # `pack_local_codebook` bytes
LOCAL_PACK_IDENTITY = "local_codebook.json"  # its `local_identity`, readable without unpacking


def is_codebook_folder(folder: Path) -> bool:
    """A folder a codebook build may replace: an earlier codebook artefact (it has a manifest.json)."""
    return (folder / "manifest.json").is_file()


def write_artefact(
    target: Path, local: torch.Tensor, glob: torch.Tensor, entries: list[dict], vocab, manifest: dict
) -> None:
    with atomic_path(target, replace=is_codebook_folder) as tmp:
        tmp.mkdir()
        save_file({"embeddings": local.contiguous()}, str(tmp / "local_embeddings.safetensors"))
        save_file({"embeddings": glob.contiguous()}, str(tmp / "global_embeddings.safetensors"))
        (tmp / "global_vocab.json").write_text(json.dumps(entries, ensure_ascii=False, indent=0) + "\n")
        _write_local_vocab(tmp / "local_vocab.json", vocab.display, vocab.kinds)
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

    def of_kinds(self, kinds: list[str]) -> Codebook:
        """This codebook's global list restricted to entries of `kinds` (subword, bigram, trigram...): Table 5's
        question asked of one built codebook (a copy; the folder on disk is untouched)."""
        import dataclasses

        have = sorted({e["kind"] for e in self.entries})
        unknown = [k for k in kinds if k not in have]
        if unknown:
            raise ConfigError(f"--kinds {','.join(unknown)}: {self.folder}'s entries are of kinds {', '.join(have)}.")
        keep = [i for i, e in enumerate(self.entries) if e["kind"] in kinds]
        return dataclasses.replace(
            self, entries=[self.entries[i] for i in keep], global_embeddings=self.global_embeddings[keep]
        )

    @property
    def global_sha256(self) -> str:
        """A hash of the global list's entries (their token ids, in order): what a tokenizer trained on this codebook
        records, since two builds with the same settings (the same key) can differ on a near-tie between entries on
        machines whose float32 kernels round differently."""
        return global_list_sha256(self.entries)

    @classmethod
    def load(cls, folder: str | Path, lm=None, vl=None) -> Codebook:
        """Load an artefact; refuse it if `lm` / `vl` (when given) are not the models it was built with."""
        folder = Path(folder)
        if not (folder / "manifest.json").is_file():
            raise ModelNotFoundError(f"{folder} is not a codebook (no manifest.json): run `v2l codebook build`.")
        fix = "the codebook is damaged: rebuild it with `v2l codebook build --force`"
        manifest = read_json(folder / "manifest.json", dict, fix)
        check_manifest(manifest, lm=lm, vl=vl, where=str(folder))
        entries = read_json(folder / "global_vocab.json", list, fix)
        if not all(isinstance(e, dict) and isinstance(e.get("ids"), list) and "text" in e for e in entries):
            raise ArtefactError(f"{folder / 'global_vocab.json'} holds entries without ids and text: {fix}.")
        glob = read_safetensors(folder / "global_embeddings.safetensors", fix, ("embeddings",))["embeddings"]
        local_path = folder / "local_embeddings.safetensors"
        local = read_safetensors(local_path, fix, ("embeddings",))["embeddings"] if local_path.is_file() else None
        display = kinds = None
        if (folder / "local_vocab.json").is_file():
            lv = read_json(folder / "local_vocab.json", dict, fix)
            display = json_field(lv, "display", list, folder / "local_vocab.json", fix)
            kinds = json_field(lv, "kinds", list, folder / "local_vocab.json", fix)
        if glob.ndim != 2 or glob.shape[0] != len(entries):
            raise ManifestMismatchError(
                f"{folder}: {glob.shape[0]} global embeddings for {len(entries)} entries; "
                "the artefact is damaged, rebuild it with `v2l codebook build --force`."
            )
        return cls(folder, manifest, entries, glob, local, display, kinds)

    def global_tokens(self, image_embeddings: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The `k` nearest global entries of each image embedding: (similarities, indices), both (n, k)."""
        sims = image_embeddings.float() @ self.global_embeddings.float().T
        return sims.topk(min(k, sims.shape[1]), dim=-1)


def global_list_sha256(entries: list[dict]) -> str:
    return text_sha256(json.dumps([e["ids"] for e in entries]))


def _write_local_vocab(path: Path, display: list[str], kinds: list[str]) -> None:
    path.write_text(json.dumps({"display": display, "kinds": kinds}, ensure_ascii=False) + "\n")


def ensure_local_embeddings(codebook: Codebook, vl, lm=None, progress: bool = True) -> Codebook:
    """Add the local codebook (and the LLM's display vocabulary) to an artefact that lacks them, once.

    A codebook materialised from the shipped global list has no local embeddings; the tokenizer needs them. If v2l
    ships the local codebook for exactly this (LLM vocabulary, VL model, templates), it is unpacked (about a second,
    no LLM load); otherwise every LLM token is embedded by the VL text encoder (`embed_local_codebook`: minutes on 2
    cores, resumable). Either way the result is written into the artefact folder atomically.
    """
    if codebook.local_embeddings is not None and codebook.local_display is not None:
        return codebook
    check_manifest(codebook.manifest, vl=vl, where=str(codebook.folder))
    shipped = shipped_local_codebook(codebook.manifest)
    if shipped is not None:
        header, local = unpack_local_codebook(shipped.read_bytes(), where=str(shipped))
        if progress:
            tqdm.write(
                f"v2l: unpacked the shipped local codebook ({local.shape[0]} tokens) into {codebook.folder}",
                file=sys.stderr,
            )
        display, kinds = header["display"], header["kinds"]
    else:
        from ..backbones import LanguageModel

        lm = lm or LanguageModel.load(codebook.manifest["llm"]["name"], progress=progress)
        check_manifest(codebook.manifest, lm=lm, vl=vl, where=str(codebook.folder))
        display, kinds = lm.vocab.display, lm.vocab.kinds
        local = codebook.local_embeddings
        if local is None:
            if progress:
                tqdm.write(
                    f"v2l: embedding the LLM vocabulary ({lm.vocab_size} tokens) once for the local codebook",
                    file=sys.stderr,
                )
            cfg = codebook.manifest["config"]
            work = codebook.folder.with_name(codebook.folder.name + ".local-partial")
            local = embed_local_codebook(
                vl,
                lm.vocab,
                codebook.manifest["templates"],
                cfg["renormalize_templates"],
                cfg["batch_size"],
                cfg.get("chunk_size", 2048),
                work=work,
                progress=progress,
            )
            shutil.rmtree(work, ignore_errors=True)
    if codebook.local_embeddings is None:
        with atomic_path(codebook.folder / "local_embeddings.safetensors") as tmp:
            save_file({"embeddings": local.contiguous()}, str(tmp))
    if codebook.local_display is None:
        with atomic_path(codebook.folder / "local_vocab.json") as tmp:
            _write_local_vocab(tmp, display, kinds)
    return Codebook.load(codebook.folder, vl=vl)


def shipped_local_codebook(manifest: dict) -> Path | None:
    """The shipped packed local codebook for this artefact's identity (LLM vocabulary, VL text tower, templates), if
    v2l ships one. Codebooks that differ only in the VL image side (e.g. ConSE's top-T) share it."""
    from ..backbones.vision_language import text_fingerprint

    want = local_identity(manifest)
    for ident in sorted(RESOURCES.glob(f"*/{LOCAL_PACK_IDENTITY}")):
        pack, stored = ident.with_name(LOCAL_PACK), json.loads(ident.read_text())
        # identities written before they kept only the text tower compare by it too
        if pack.is_file() and {**stored, "vl": text_fingerprint(stored.get("vl") or {})} == want:
            return pack
    return None


def _spec(fingerprint: dict) -> str:
    from ..backbones.vision_language import vl_spec

    try:
        return vl_spec(fingerprint)
    except (ConfigError, KeyError):  # a model load_vl cannot rebuild from its fingerprint: show the fingerprint
        return str(fingerprint)


def check_manifest(manifest: dict, lm=None, vl=None, where: str = "codebook") -> None:
    if manifest.get("format") != FORMAT_VERSION:
        raise ManifestMismatchError(
            f"{where} has format {manifest.get('format')}, this v2l reads {FORMAT_VERSION}: "
            "rebuild it with `v2l codebook build`."
        )
    built_llm = manifest["llm"]
    if lm is not None and built_llm["vocabulary_sha256"] != lm.vocab.sha256:
        raise ManifestMismatchError(
            f"{where} was built for LLM {built_llm['name']!r} (vocabulary {built_llm['vocabulary_sha256'][:12]}), "
            f"not {lm.name!r} (vocabulary {lm.vocab.sha256[:12]}): build one with "
            f"`v2l codebook build --llm {lm.name}`."
        )
    if vl is not None and manifest["vl"] != vl.fingerprint():
        raise ManifestMismatchError(
            f"{where} was built with VL model {_spec(manifest['vl'])}, not {_spec(vl.fingerprint())}: load it with "
            f"--vl {_spec(manifest['vl'])}, or build one with `v2l codebook build --vl {_spec(vl.fingerprint())}`."
        )


def shipped_vocab(llm: str, vl: str) -> Path | None:
    """The shipped global vocabulary list for (llm, vl), if v2l ships one."""
    folder = RESOURCES / f"{slug(llm)}__{slug(vl)}"
    return folder if (folder / "manifest.json").is_file() else None


def materialize_shipped(folder: Path, vl, progress: bool = True) -> Path:
    """Embed a shipped global vocabulary list with `vl` once; cache it as a global-only artefact and return it."""
    manifest = json.loads((folder / "manifest.json").read_text())
    check_manifest(manifest, vl=vl, where=f"shipped codebook {folder.name}")
    target = cache_root() / "codebooks" / (CodebookConfig(**manifest["config"]).key() + "-global")
    if (target / "manifest.json").is_file():
        try:
            Codebook.load(target)  # a damaged cache entry is rebuilt, never used
            return target
        except ArtefactError as e:
            logging.getLogger("v2l").warning(f"v2l: cached codebook {target} is damaged ({e}); rebuilding it.")
            shutil.rmtree(target, ignore_errors=True)
    entries = json.loads((folder / "global_vocab.json").read_text())
    if progress:
        tqdm.write(
            f"v2l: embedding the shipped global vocabulary ({len(entries)} entries) once; cached in {target}",
            file=sys.stderr,
        )
    emb = embed_entries(
        vl,
        [e["text"] for e in entries],
        manifest["templates"],
        manifest["config"]["renormalize_templates"],
        manifest["config"]["batch_size"],
    )
    with atomic_path(target, replace=is_codebook_folder) as tmp:
        tmp.mkdir()
        save_file({"embeddings": emb.contiguous()}, str(tmp / "global_embeddings.safetensors"))
        shutil.copy(folder / "global_vocab.json", tmp / "global_vocab.json")
        write_json_atomic(tmp / "manifest.json", {**manifest, "materialized_from": "shipped global vocabulary"})
    return target


def shipped_by_key(key: str) -> Path | None:
    """The shipped global vocabulary list whose build settings have key `key` (the default list, or one kept for a
    shipped checkpoint trained with other settings: `resources/codebooks/<key>/`)."""
    for folder in sorted(RESOURCES.glob("*/manifest.json")):
        cfg = json.loads(folder.read_text()).get("config") or {}
        try:
            if CodebookConfig(**cfg).key() == key:
                return folder.parent
        except (TypeError, ConfigError):  # a list written by another v2l version
            continue
    return None


def find_codebook(
    llm: str = DEFAULT_LLM, vl_name: str | None = None, vl=None, progress: bool = True, key: str | None = None
) -> Path:
    """The artefact `v2l words` and the tasks use: a built one in the cache, else the shipped list embedded once.
    `vl_name` defaults to the spec of `vl` if given, else `DEFAULT_VL`. `key` asks for the codebook of particular
    settings (a checkpoint's) instead of the default ones."""
    vl_name = vl_name or (_spec(vl.fingerprint()) if vl is not None else DEFAULT_VL)
    key = key or CodebookConfig(llm=llm, vl=vl_name).key()
    built = cache_root() / "codebooks" / key
    if (built / "manifest.json").is_file():
        return built
    shipped = shipped_by_key(key)
    if shipped is not None:
        from ..backbones import load_vl
        from ..backbones.vision_language import vl_spec

        built_with = json.loads((shipped / "manifest.json").read_text())["vl"]
        return materialize_shipped(shipped, vl or load_vl(vl_spec(built_with)), progress=progress)
    raise ModelNotFoundError(
        f"No codebook {key} for LLM {llm!r} and VL model {vl_name!r}: run "
        f"`v2l codebook build --llm {llm} --vl {vl_name}` with the settings that give it (or pass "
        "--codebook FOLDER)."
    )
