"""The local codebook (paper §3.2): every LLM token embedded by the VL text encoder, row i = token id i.

Two ways to get it, both exact up to float rounding:

- `embed_local_codebook` computes it. Tokens whose encoder inputs are identical under every template (" cat" and
  "cat" after stripping; "Cat" and "cat" for an uncased encoder) are embedded once, and the distinct inputs are
  embedded shortest first, so that batches are not padded to their longest member. For SmolLM2 + MiniLM that is 32,851
  distinct inputs for 49,152 tokens, and length-sorted batches run 1.9× faster than arrival order
  (benchmarks/results/first_use.json).
- A *shipped* local codebook: the distinct rows in float16 plus the token → row index, byte-shuffled and zlib-compressed
  (`pack_local_codebook`), with the identity it was computed for (LLM vocabulary hash, VL fingerprint, templates).
  It is used only when that identity matches the artefact's manifest exactly; float16 rounding moves a row by at most
  2⁻¹¹ of its largest entry, far below the bfloat16 search the `cpu` preset runs (agreement measured in
  benchmarks/results/first_use.json).
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.chunks import Chunks
from ..errors import ManifestMismatchError
from ..paths import text_sha256
from .templates import embed_entries, entry_text

PACK_FORMAT = "v2l-local-codebook-1"


def local_texts(vocab) -> list[str]:
    """What the VL text encoder reads for each LLM token (its text without surrounding spaces)."""
    return [entry_text(t, d) for t, d in zip(vocab.texts, vocab.display, strict=True)]


def distinct_inputs(vl, texts: Sequence[str], templates: Sequence[str]) -> tuple[list[int], torch.Tensor, list]:
    """(first index of each distinct encoder input, inverse map token → distinct row, the distinct keys)."""
    keys = vl.text_keys(list(texts), list(templates))
    first: dict = {}
    reps: list[int] = []
    inverse: list[int] = []
    for i, k in enumerate(keys):
        j = first.get(k)
        if j is None:
            j = first[k] = len(reps)
            reps.append(i)
        inverse.append(j)
    return reps, torch.tensor(inverse, dtype=torch.long), list(first)


def embed_texts(
    vl,
    texts: Sequence[str],
    templates: Sequence[str],
    renormalize: bool = True,
    batch_size: int = 256,
    chunk_size: int = 2048,
    chunks: Chunks | None = None,
    stage: str = "texts",
    desc: str = "embed texts",
    progress: bool = True,
    bf16: bool = False,
) -> torch.Tensor:
    """(len(texts), d) template-averaged VL text embeddings, each distinct encoder input embedded once, shortest first.

    Texts the encoder cannot tell apart (`vl.text_keys`: " cat" / "cat" after stripping, "Cat" / "cat" for an uncased
    encoder) are embedded once, and the distinct inputs go in order of length so that a batch is not padded to its
    longest member. The result equals `embed_entries(vl, texts, ...)` up to float rounding. `chunks` makes it
    resumable (finished chunks are loaded, not recomputed; see `v2l.data.Chunks`): they are named by `stage` and a hash
    of the texts embedded, so one folder can serve any text list for the same encoder and templates (`bf16=True`, the
    build's screen, runs the encoder under bfloat16 autocast: give it a folder of its own)."""
    texts = list(texts)
    if not texts:
        return torch.empty((0, vl.dim))
    reps, inverse, keys = distinct_inputs(vl, texts, templates)
    order = sorted(range(len(reps)), key=lambda j: (_key_length(keys[j]), j))
    sorted_texts = [texts[reps[j]] for j in order]

    def fn(xs):
        if not bf16:
            return embed_entries(vl, xs, templates, renormalize, batch_size)
        with torch.autocast(torch.device(getattr(vl, "device", "cpu")).type, dtype=torch.bfloat16):
            return embed_entries(vl, xs, templates, renormalize, batch_size).float()

    if chunks is None:
        parts = [fn(sorted_texts[s : s + chunk_size]) for s in range(0, len(sorted_texts), chunk_size)]
        emb_sorted = torch.cat(parts)
    else:
        emb_sorted = chunks.map(
            f"{stage}-{text_sha256(*sorted_texts)[:16]}",
            sorted_texts,
            chunk_size,
            fn,
            f"{desc} ({len(texts)} texts, {len(reps)} distinct)",
            progress=progress,
        )
    distinct = torch.empty_like(emb_sorted)
    distinct[torch.tensor(order)] = emb_sorted
    return distinct[inverse]


def embed_local_codebook(
    vl,
    vocab,
    templates: Sequence[str],
    renormalize: bool = True,
    batch_size: int = 256,
    chunk_size: int = 2048,
    work: Path | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """(vocab_size, d) VL text embeddings of every token (`embed_texts` of each token's text).

    `work` makes it resumable: finished chunks are kept there (see `v2l.data.Chunks`); the caller removes it."""
    return embed_texts(
        vl,
        local_texts(vocab),
        templates,
        renormalize,
        batch_size,
        chunk_size,
        Chunks(work, None) if work is not None else None,
        "local-distinct",
        "embed LLM vocabulary",
        progress,
    )


def _key_length(key) -> int:
    return sum(len(part) for part in key) if isinstance(key, tuple) else len(str(key))


# ---- the shipped, compact form ----------------------------------------------------------------------------------


def local_identity(manifest: dict) -> dict:
    """What a local codebook depends on: the LLM vocabulary, the VL model's text tower, the templates and their
    normalisation."""
    from ..backbones.vision_language import text_fingerprint

    return {
        "vocabulary_sha256": manifest["llm"]["vocabulary_sha256"],
        "vl": text_fingerprint(manifest["vl"]),
        "templates": list(manifest["templates"]),
        "renormalize_templates": bool(manifest["config"]["renormalize_templates"]),
    }


def pack_local_codebook(embeddings: torch.Tensor, identity: dict, display: list[str], kinds: list[str]) -> bytes:
    """Distinct rows as float16 + the token → row index, byte-shuffled and zlib-compressed, with `identity` and the
    LLM's display vocabulary (so the first `tokenize` needs no LLM)."""
    rows, inverse = torch.unique(embeddings.half(), dim=0, return_inverse=True)
    half = rows.numpy().view(np.uint8).reshape(-1, 2)
    shuffled = np.concatenate([half[:, 1], half[:, 0]])  # high bytes (sign, exponent) compress; low ones barely
    header = {
        "format": PACK_FORMAT,
        "identity": identity,
        "rows": list(rows.shape),
        "vocab_size": int(embeddings.shape[0]),
        "display": display,
        "kinds": kinds,
    }
    buf = io.BytesIO()
    np.savez(
        buf,
        header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
        rows=shuffled,
        index=inverse.numpy().astype(np.int32),
    )
    return zlib.compress(buf.getvalue(), 9)


def unpack_local_codebook(data: bytes, where: str = "shipped local codebook") -> tuple[dict, torch.Tensor]:
    """(header, (vocab_size, d) float32 embeddings) from `pack_local_codebook` bytes."""
    try:
        z = np.load(io.BytesIO(zlib.decompress(data)))
        header = json.loads(z["header"].tobytes())
        n, d = header["rows"]
        shuffled = z["rows"]
        half = np.stack([shuffled[n * d :], shuffled[: n * d]], axis=1).reshape(-1).view(np.float16).reshape(n, d)
        emb = torch.from_numpy(half.astype(np.float32))[torch.from_numpy(z["index"].astype(np.int64))]
    except (zlib.error, ValueError, KeyError, OSError) as e:
        raise ManifestMismatchError(f"{where} is damaged ({e}): reinstall v2l.") from e
    if header.get("format") != PACK_FORMAT or emb.shape[0] != header["vocab_size"]:
        raise ManifestMismatchError(f"{where} has an unknown format: reinstall v2l.")
    return header, emb
