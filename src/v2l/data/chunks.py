"""Resumable work in chunks: each chunk's result is written atomically, and a rerun loads it instead of recomputing.

A killed job (codebook build, image embedding) therefore resumes from its last finished chunk and gives byte-identical
output (tested in tests/test_codebook.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..files import read_cache_tensors, write_cache_tensors


class Chunks:
    """Numbered safetensors chunks in a work folder; each written atomically, loaded instead of recomputed."""

    def __init__(self, folder: Path, callback: Callable[[str, int], None] | None):
        self.folder, self.callback = folder, callback
        folder.mkdir(parents=True, exist_ok=True)

    def map(
        self,
        stage: str,
        items: Sequence,
        chunk: int,
        fn: Callable[[Sequence], torch.Tensor],
        desc: str,
        progress: bool = True,
    ) -> torch.Tensor:
        parts = []
        n_chunks = (len(items) + chunk - 1) // chunk
        bar = tqdm(total=len(items), desc=desc, unit="item", dynamic_ncols=True, disable=not progress)
        for c in range(n_chunks):
            path = self.folder / f"{stage}-{c:05d}.safetensors"
            part = items[c * chunk : (c + 1) * chunk]
            cached = read_cache_tensors(path)  # a damaged part (a warning) is computed again
            if cached is not None and "t" in cached[0] and len(cached[0]["t"]) == len(part):
                parts.append(cached[0]["t"])
            else:
                t = fn(part).contiguous()
                write_cache_tensors(path, {"t": t}, {"stage": stage, "chunk": c, "items": len(part)})
                parts.append(t)
                if self.callback:
                    self.callback(stage, c)
            bar.update(len(part))
        bar.close()
        return torch.cat(parts) if parts else torch.empty(0)
