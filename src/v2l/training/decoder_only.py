"""Fine-tuning the decoder alone (`--train-only decoder`, after `--init`): the encoder stays frozen, so each training
image's local tokens are computed once (`local_codes`, kept in the run in atomic parts) and the decoder learns to draw
them back (`DecoderOnly` over `WithLocalIds`)."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import V2LError
from ..tokenizer.network import V2LTokenizer
from .data import TokenizerTrainData


class DecoderOnly(torch.nn.Module):
    """`--train-only decoder`: the step decodes the cached local token ids of each image (the frozen encoder's), so
    neither the encoder nor the 49,152-code local search runs per step. `net` is the whole tokenizer (checkpoints)."""

    def __init__(self, net: V2LTokenizer):
        super().__init__()
        self.net = net

    def forward(self, local_ids: torch.Tensor, global_ids: torch.Tensor) -> torch.Tensor:
        return self.net.decode_tokens(local_ids, global_ids)


class WithLocalIds(torch.utils.data.Dataset):
    """A training set whose items also carry each image's local token ids (`local_codes`)."""

    def __init__(self, data: TokenizerTrainData, ids: torch.Tensor):
        self.data, self.ids = data, ids

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        return {**self.data[i], "local_ids": self.ids[i].long()}


CODE_PART = 1024  # images per file of `local_codes`


def local_codes(
    net: V2LTokenizer, data: TokenizerTrainData, out: Path, accelerator, batch_size: int = 32, progress: bool = True
) -> torch.Tensor:
    """The local token ids (N, h, w) of every training image under the frozen encoder, as inference computes them
    (float32 encoder, the model's own search). Kept in `out/local-codes/part-*.safetensors`, one file per 1,024
    images written atomically, so a killed run recomputes at most one part; processes split the parts."""
    from ..files import read_cache_tensors, write_cache_tensors

    folder = out / "local-codes"
    n_parts = -(-len(data) // CODE_PART)
    path = lambda k: folder / f"part-{k:05d}-of-{n_parts:05d}.safetensors"  # noqa: E731
    part_size = lambda k: min(CODE_PART, len(data) - k * CODE_PART)  # noqa: E731

    def intact(k: int) -> bool:  # a damaged part (truncated, flipped) is removed with a warning and computed again
        got = read_cache_tensors(path(k))
        return got is not None and "ids" in got[0] and len(got[0]["ids"]) == part_size(k)

    todo = [k for k in range(accelerator.process_index, n_parts, accelerator.num_processes) if not intact(k)]
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        net = net.to(accelerator.device).eval()
        total = sum(min(CODE_PART, len(data) - k * CODE_PART) for k in todo)
        bar = tqdm(
            total=total,
            desc="local codes (frozen encoder)",
            unit="img",
            disable=not (progress and accelerator.is_main_process),
            dynamic_ncols=True,
        )
        for k in todo:
            idx = range(k * CODE_PART, min(len(data), (k + 1) * CODE_PART))
            ids = []
            with torch.no_grad():
                for b in range(idx.start, idx.stop, batch_size):
                    x = torch.stack([data[i]["pixels"] for i in range(b, min(idx.stop, b + batch_size))])
                    ids.append(net.encode(x.to(accelerator.device))[1].to(torch.int32).cpu())
                    bar.update(x.shape[0])
            write_cache_tensors(path(k), {"ids": torch.cat(ids)}, {"part": k, "images": part_size(k)})
        bar.close()
    accelerator.wait_for_everyone()
    parts = [read_cache_tensors(path(k)) for k in range(n_parts)]
    if any(p is None for p in parts):
        raise V2LError(f"{folder}: a part of the local tokens is missing or damaged: run the same command again.")
    ids = torch.cat([p[0]["ids"] for p in parts])
    if len(ids) != len(data):
        raise V2LError(
            f"{folder} holds local tokens of {len(ids)} images, not of the {len(data)} this run trains on: "
            "resume with the run's own data options (--per-class, --classes), or use another --out."
        )
    return ids
