"""Resumable work in chunks: each chunk's result is written atomically, and a rerun loads it instead of recomputing.

A killed job (codebook build, image embedding) therefore resumes from its last finished chunk and gives byte-identical
output (tested in tests/test_codebook.py).

With `shard=True` under `accelerate launch` (the codebook build), process r of n computes chunks r, r + n, r + 2n, …
into the shared folder, every process waits for the others, then reads every chunk in order: the same chunks, hence
the same bytes, as one process (tested with 2 CPU processes). Every process must call `map` (it holds a barrier).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import V2LError
from ..files import read_cache_tensors, write_cache_tensors


class Chunks:
    """Numbered safetensors chunks in a work folder; each written atomically, loaded instead of recomputed."""

    def __init__(self, folder: Path, callback: Callable[[str, int], None] | None, shard: bool = False):
        self.folder, self.callback, self.shard = folder, callback, shard
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
        from ..distributed import barrier, world

        rank, size = world() if self.shard else (0, 1)
        parts: dict[int, torch.Tensor] = {}
        n_chunks = (len(items) + chunk - 1) // chunk
        mine = range(rank, n_chunks, size)
        share = sum(len(items[c * chunk : (c + 1) * chunk]) for c in mine)
        bar = tqdm(total=share, desc=desc, unit="item", dynamic_ncols=True, disable=not progress or rank > 0)
        for c in mine:
            path = self.folder / f"{stage}-{c:05d}.safetensors"
            part = items[c * chunk : (c + 1) * chunk]
            cached = read_cache_tensors(path)  # a damaged part (a warning) is computed again
            if cached is not None and "t" in cached[0] and len(cached[0]["t"]) == len(part):
                parts[c] = cached[0]["t"]
            else:
                t = fn(part).contiguous()
                write_cache_tensors(path, {"t": t}, {"stage": stage, "chunk": c, "items": len(part)})
                parts[c] = t
                if self.callback:
                    self.callback(stage, c)
            bar.update(len(part))
        bar.close()
        if size > 1:  # the other processes' chunks, from the shared folder
            barrier()
            for c in range(n_chunks):
                if c not in parts:
                    got = read_cache_tensors(self.folder / f"{stage}-{c:05d}.safetensors")
                    if got is None or "t" not in got[0]:
                        raise V2LError(
                            f"Chunk {c} of {stage} in {self.folder} was not written by process {c % size}: the "
                            "processes must share this folder (one machine, or a shared file system)."
                        )
                    parts[c] = got[0]["t"]
            barrier()  # nobody removes the folder while another still reads it
        return torch.cat([parts[c] for c in range(n_chunks)]) if parts else torch.empty(0)
