"""The codebook build (paper §3.2, appendix A, Table 5): local codebook embeddings, vocabulary expansion (see
`v2l.codebooks.expansion`) and global filtering (`v2l.codebooks.filtering`).

One resumable build writes the artefact folder described in `v2l.codebooks.artefact`. It works in chunks under
`<key>.partial/`; each chunk is written atomically, so a killed build resumes from the last finished chunk and gives
byte-identical output.
"""


from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from .. import __version__
from ..data.chunks import Chunks
from ..paths import cache_root
from .artefact import write_artefact
from .config import FORMAT_VERSION, KINDS, CodebookConfig
from .filtering import filter_candidates, filter_images
from .local import local_texts
from .templates import embed_entries, entry_text, resolve_templates


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
    from ..backbones import LanguageModel, load_vl
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
    chunks = Chunks(work, callback)
    vocab = lm.vocab

    # 1. Local codebook: every token's text, row i = token id i.
    local = chunks.map("local", local_texts(vocab), cfg.chunk_size,
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
    multi_emb = chunks.map("candidates", [cand_text[i] for i in multi], cfg.chunk_size,
                           lambda xs: embed_entries(vl, xs, templates, cfg.renormalize_templates, cfg.batch_size),
                           "embed expanded entries")
    cand_emb = torch.empty((len(cand_ids), local.shape[1]))
    # A subword candidate's text and templates are those of its local-codebook row: reuse the row.
    cand_emb[sub_rows] = local[[cand_ids[i][0] for i in sub_rows]]
    if multi:
        cand_emb[multi] = multi_emb

    # 4. Filtering images, embedded once for the build and its variants.
    ds, chosen = filter_images(cfg, data_root)
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
        entries, emb = filter_candidates(dataclasses.replace(cfg, max_ngram=n), img_emb, cand_emb[rows],
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
        write_artefact(folder, local, emb, entries, vocab, manifest)
    shutil.rmtree(work, ignore_errors=True)
    return target


