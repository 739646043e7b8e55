"""The codebook build (paper §3.2, appendix A, Table 5): local codebook embeddings, vocabulary expansion (see
`v2l.codebooks.expansion`) and global filtering (`v2l.codebooks.filtering`).

One resumable build writes the artefact folder described in `v2l.codebooks.artefact`. Its expensive parts (the local
codebook, the expansion, the candidates' embeddings, the filtering images' embeddings) are computed in chunks, each
written atomically, into *parts* folders named by a hash of exactly what they are computed from (the texts, the LLM,
the VL model, the templates, the images). A killed build therefore resumes from the last finished chunk and gives
byte-identical output, and a build that differs from an earlier one only in its filtering (`--filter-classes`,
`--min-count`, `--max-share`, another image set) recomputes only what changed: seconds to minutes instead of a whole
build. The parts live under `<cache>/codebook-parts/` (about 300 MB for the default build; delete the folder to
reclaim it).

Build cost (paper §3.2 embeds every entry with 80 templates; we default to 3): the text tower dominates, so each
distinct encoder input is embedded once and inputs go shortest first (`v2l.codebooks.local.embed_texts`); the
expanded entries are screened in bfloat16 and embedded in float32 only where they could be chosen
(`v2l.codebooks.screening`: the same codebook); with M = 1 the expansion's levels run as one greedy generation that
reuses each level's KV cache (`v2l.codebooks.expansion.extend_greedy`). The local codebook stays float32 throughout
(bfloat16 changes 1.6 % of its top-1 nearest entries; measured in docs/results.md).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from ..backbones.vision_language import text_fingerprint
from ..data.chunks import Chunks
from ..distributed import barrier, is_main
from ..paths import cache_root, text_sha256
from .artefact import write_artefact
from .config import FORMAT_VERSION, KINDS, CodebookConfig
from .filtering import filter_candidates, filter_images
from .local import embed_texts, local_texts
from .screening import confirm_screened
from .templates import entry_text, resolve_templates


def variant_folder(cfg: CodebookConfig, max_ngram: int, out: str | Path | None = None) -> Path:
    """Where the Table 5 variant of `cfg` with `max_ngram` goes: the cache by key, or beside `out`."""
    if out is not None:
        return Path(out).with_name(f"{Path(out).name}-max-ngram-{max_ngram}")
    return cache_root() / "codebooks" / dataclasses.replace(cfg, max_ngram=max_ngram).key()


def parts_root() -> Path:
    """Where builds keep their reusable parts (see the module docstring)."""
    return cache_root() / "codebook-parts"


def _dataset_identity(ds) -> list:
    """What a filtering image set's embeddings depend on besides the chosen indices: its files, sizes and times."""
    files = getattr(ds, "shards", None) or getattr(ds, "files", [])
    stats = [(Path(f).resolve(), Path(f).stat()) for f in files]
    return [(str(f), st.st_size, st.st_mtime_ns) for f, st in stats]


def build_codebook(
    cfg: CodebookConfig,
    *,
    lm=None,
    vl=None,
    out: str | Path | None = None,
    data_root=None,
    callback: Callable[[str, int], None] | None = None,
    force: bool = False,
    variants: bool = False,
    parts: str | Path | None = None,
) -> Path:
    """Build (or resume, or find) the codebook artefact for `cfg`; returns its folder.

    `lm` / `vl` may be passed already loaded. `callback(stage, chunk)` runs after each chunk is saved (progress
    hooks; tests raise from it to simulate a kill). `variants=True` also writes Table 5's smaller variants
    (`max_ngram` = 1 .. cfg.max_ngram - 1, see `variant_folder`) from the same candidates and image embeddings: a
    variant's candidates are exactly the first kinds of this build's (expansion and de-duplication go level by level,
    shorter entries first), so it equals a separate build of that variant up to float rounding, at the cost of one
    extra filtering pass instead of a whole build. `parts` is where the reusable parts go (default `parts_root()`).
    """
    from ..backbones import LanguageModel, load_vl

    target = Path(out) if out else cache_root() / "codebooks" / cfg.key()
    targets = {cfg.max_ngram: target}
    if variants:
        targets.update({n: variant_folder(cfg, n, out) for n in range(1, cfg.max_ngram)})
    if not force and all((t / "manifest.json").is_file() for t in targets.values()):
        return target
    lm = lm or LanguageModel.load(cfg.llm)
    vl = vl or load_vl(cfg.vl)
    p = build_parts(cfg, lm, vl, data_root=data_root, callback=callback, parts=parts)
    vocab = lm.vocab
    common = {
        "format": FORMAT_VERSION,
        "v2l_version": __version__,
        "templates": list(p.templates),
        "llm": {**lm.info(), "vocabulary_sha256": vocab.sha256, "source_sha256": lm.source_hash},
        "vl": vl.fingerprint(),
        "prefix_ids": p.prefix_ids,
        "join": "token ids (prefix ids + entry ids; no re-tokenisation)",
        "candidate_policy": "subword candidates = tokens of kind 'word'; next tokens chosen among 'word' tokens",
    }
    for n, folder in sorted(targets.items(), reverse=True):
        if (folder / "manifest.json").is_file() and not force:
            continue
        rows = [i for i, k in enumerate(p.kinds) if KINDS.index(k) < n]
        entries, emb = filter_candidates(
            dataclasses.replace(cfg, max_ngram=n),
            p.images,
            p.embeddings[rows],
            [p.texts[i] for i in rows],
            [p.kinds[i] for i in rows],
            [p.ids[i] for i in rows],
        )
        cand_by_kind = {k: p.kinds.count(k) if KINDS.index(k) < n else 0 for k in KINDS}
        manifest = {
            **common,
            "config": dataclasses.asdict(dataclasses.replace(cfg, max_ngram=n)),
            "counts": {
                "local": int(p.local.shape[0]),
                "candidates": len(rows),
                "candidates_by_kind": cand_by_kind,
                "global": len(entries),
                "global_by_kind": {k: sum(1 for e in entries if e["kind"] == k) for k in KINDS},
                "filter_images": int(p.images.shape[0]),
            },
        }
        if p.screen is not None:
            manifest["screen"] = p.screen
        if folder != target:
            manifest["derived_from"] = f"the build of {target.name} (its first {n} candidate kinds)"
        if is_main():  # every process computed the same artefact; one writes it
            write_artefact(folder, p.local, emb, entries, vocab, manifest)
    barrier()
    return target


@dataclass
class BuildParts:
    """What filtering works on: the local codebook, every candidate (ids, kind, text, embedding; shorter kinds
    first) and the filtering images' embeddings."""

    templates: tuple[str, ...]
    prefix_ids: list[int]
    local: torch.Tensor
    ids: list[list[int]]
    kinds: list[str]
    texts: list[str]
    embeddings: torch.Tensor
    images: torch.Tensor
    screen: dict | None = None  # what the bfloat16 screen did (v2l.codebooks.screening), if it ran


def build_parts(
    cfg: CodebookConfig,
    lm,
    vl,
    *,
    data_root=None,
    callback: Callable[[str, int], None] | None = None,
    parts: str | Path | None = None,
) -> BuildParts:
    """Compute (or load from the parts cache) everything the filtering of `cfg` needs (see the module docstring)."""
    from .expansion import candidate_subwords, extend_greedy, extend_once, word_mask

    templates = resolve_templates(cfg.templates)
    parts = Path(parts) if parts is not None else parts_root()
    vocab = lm.vocab

    def part(name: str, *identity) -> Chunks:
        """The chunk folder of one part, named by a hash of everything it is computed from."""
        digest = text_sha256(json.dumps([name, cfg.chunk_size, *identity], sort_keys=True, default=str))[:16]
        return Chunks(parts / f"{name}-{digest}", callback, shard=True)  # over `accelerate launch`'s processes

    # text parts are keyed by the text tower alone: builds that differ only in the image side share them
    text_ident = (text_fingerprint(vl.fingerprint()), list(templates), cfg.renormalize_templates)

    # 1. Local codebook: every token's text, row i = token id i.
    texts = local_texts(vocab)
    local = embed_texts(
        vl,
        texts,
        templates,
        cfg.renormalize_templates,
        cfg.batch_size,
        cfg.chunk_size,
        part("texts", *text_ident),
        "local",
        "embed LLM vocabulary",
    )

    # 2. Expansion: subwords -> bigrams -> trigrams, by token ids after the prefix.
    prefix_ids = lm.encode(cfg.prefix, add_special_tokens=True)
    cache = lm.prefix_cache(prefix_ids)
    allowed = word_mask(lm)
    levels = [torch.tensor([[t] for t in candidate_subwords(lm)], dtype=torch.long)]
    if cfg.top_m == 1 and cfg.max_ngram > 1:  # every level in one greedy pass (see `extend_greedy`)
        steps = cfg.max_ngram - 1
        chunks = part("greedy", vocab.sha256, lm.source_hash, prefix_ids, steps, levels[0].tolist())
        full = chunks.map(
            "greedy",
            levels[0],
            cfg.chunk_size,
            lambda rows: torch.tensor(
                extend_greedy(lm, rows.tolist(), steps, allowed, cfg.llm_batch_size, prefix_cache=cache)
            ),
            f"expand to {KINDS[cfg.max_ngram - 1]}s",
        )
        levels += [full[:, :n] for n in range(2, cfg.max_ngram + 1)]
    for n in range(len(levels) + 1, cfg.max_ngram + 1):

        def extend(rows, _cache=cache):
            return torch.tensor(
                extend_once(lm, rows.tolist(), prefix_ids, cfg.top_m, cfg.llm_batch_size, allowed, prefix_cache=_cache)
            )

        chunks = part("expand", vocab.sha256, lm.source_hash, prefix_ids, cfg.top_m, levels[-1].tolist())
        levels.append(chunks.map(f"expand{n}", levels[-1], cfg.chunk_size, extend, f"expand to {KINDS[n - 1]}s"))

    # 3. Candidates: de-duplicated by text (or by text-encoder input), shorter entries first.
    cand_ids, cand_kind, cand_text, seen = [], [], [], set()
    for kind, rows in zip(KINDS, levels, strict=False):
        rows = rows.tolist()
        texts = [lm.decode(row).strip() if kind != "subword" else entry_text(vocab.texts[row[0]], "") for row in rows]
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

    # 4. Filtering images, embedded once for the build and its variants.
    ds, chosen = filter_images(cfg, data_root)
    img_chunks = part("images", vl.fingerprint(), cfg.filter_data, cfg.filter_split, _dataset_identity(ds), chosen)
    img_emb = img_chunks.map(
        "images",
        chosen,
        min(cfg.chunk_size, 512),
        lambda idx: vl.encode_image([ds[i].image for i in idx], batch_size=64),
        f"embed {cfg.filter_data} images",
    )

    # 5. The candidates' embeddings. A subword's text and templates are those of its local-codebook row: reuse it.
    cand_emb = torch.empty((len(cand_ids), local.shape[1]))
    cand_emb[sub_rows] = local[[cand_ids[i][0] for i in sub_rows]]

    def embed(rows, bf16=False):
        return embed_texts(
            vl,
            [cand_text[i] for i in rows],
            templates,
            cfg.renormalize_templates,
            cfg.batch_size,
            cfg.chunk_size,
            part("screen" if bf16 else "texts", *text_ident),
            "candidates",
            "screen expanded entries (bfloat16)" if bf16 else "embed expanded entries",
            bf16=bf16,
        )

    screen = None
    if multi and cfg.screen == "bf16":  # see v2l.codebooks.screening
        cand_emb[multi] = embed(multi, bf16=True)
        screened = torch.zeros(len(cand_ids), dtype=torch.bool)
        screened[multi] = True
        groups = [
            torch.tensor([i for i, k in enumerate(cand_kind) if KINDS.index(k) < n], dtype=torch.long)
            for n in range(2, cfg.max_ngram + 1)
        ]  # each Table 5 variant that ranks expanded entries
        cand_emb, screen = confirm_screened(
            cand_emb, screened, img_emb, groups, cfg.filter_top_k, lambda rows: embed(rows.tolist())
        )
    elif multi:
        cand_emb[multi] = embed(multi)
    return BuildParts(templates, prefix_ids, local, cand_ids, cand_kind, cand_text, cand_emb, img_emb, screen)
