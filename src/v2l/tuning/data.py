"""Training data of the tuned LLM (paper appendix A): the V2L tokenizer's tokens of a class subset, as LLM sequences.

Each image becomes one sequence: its global words as a text prefix, then its 16×16 local ids in raster order (they
are LLM ids: the local codebook is the LLM's vocabulary, paper §3.2). The loss is on the local ids only (`labels` is
−100 on the prefix). The tokens are computed once per (tokenizer, data set, images) and cached in atomic chunks under
`V2L_CACHE/tuning_tokens/` (`v2l.data.Chunks`), so a killed run resumes its tokenizing and a second run reads them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from ..errors import V2LError
from ..files import read_cache_tensors, write_cache_tensors
from ..paths import cache_root

IGNORE = -100  # the label of a position the loss skips (torch's cross_entropy ignore_index)
SEPARATOR = ", "
END = ".\n"


def tuning_classes(count: int = 12, wnids: Sequence[str] = (), available: Sequence[str] | None = None) -> list[str]:
    """The tuning classes, from v2l's 160 Tiny-ImageNet training classes (or from `available`, another data set's
    classes): `wnids` if given (each must be one of them), else the `count` with the smallest
    sha256("v2l-lora:" + wnid): a fixed choice, blind to what the classes are (the paper picks 12 ImageNet classes at
    random and does not name them)."""
    from ..data import tiny_imagenet_split

    pool = list(available) if available is not None else tiny_imagenet_split()["train"]
    if wnids:
        bad = [w for w in wnids if w not in pool]
        if bad and available is None:
            raise V2LError(
                f"--wnids {bad[0]} is not one of v2l's 160 Tiny-ImageNet training classes: the held-out 40 are "
                "kept for evaluation; see src/v2l/resources/tiny_imagenet_split.json."
            )
        if bad:
            raise V2LError(f"--wnids {bad[0]} is not a class of the data: its classes are {', '.join(pool[:8])}, ….")
        return sorted(set(wnids))
    return sorted(sorted(pool, key=lambda w: hashlib.sha256(f"v2l-lora:{w}".encode()).hexdigest())[:count])


def dataset_classes(ds) -> list[str]:
    """The class labels of a data set, sorted (a WebDataset's wnids, an image folder's sub-folder names)."""
    found = set()
    for i in range(len(ds)):
        meta = ds.meta(i) if hasattr(ds, "meta") else {}
        c = meta.get("wnid") or meta.get("label")
        if c:
            found.add(c)
    if not found:
        raise V2LError(f"{ds} has no class labels: pass a folder with one sub-folder of images per class.")
    return sorted(found)


def class_indices(ds, wnids: Sequence[str], per_class: int = 0) -> list[int]:
    """Indices of `ds` whose class is in `wnids`, at most `per_class` each (0 = all), in shard order."""
    keep, counts, out = set(wnids), {}, []
    for i in range(len(ds)):
        meta = ds.meta(i) if hasattr(ds, "meta") else {}
        c = meta.get("wnid") or meta.get("label") or ""
        if c in keep and (not per_class or counts.get(c, 0) < per_class):
            counts[c] = counts.get(c, 0) + 1
            out.append(i)
    if not out:
        raise V2LError(f"No images of the classes {', '.join(sorted(keep))} in {ds}: check --data and --split.")
    return out


def tokenizer_fingerprint(tok) -> str:
    """What identifies a tokenizer's tokens: its weights and its codebook."""
    h = hashlib.sha256()
    for k, v in sorted(tok.net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
        h.update(str(tuple(v.shape)).encode())
    h.update(json.dumps(tok.codebook.manifest.get("config"), sort_keys=True, default=str).encode())
    h.update(str(getattr(tok.codebook, "global_sha256", "")).encode())
    return h.hexdigest()[:16]


@torch.inference_mode()
def image_tokens(tok, images: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
    """(global ids (B, K_g), local ids (B, h·w) in raster order) of images (paths or PIL images)."""
    from ..tokenizer.image_tokenizer import to_tensor

    gids = tok.global_ids(list(images))
    _, lids, _ = tok.net.encode(to_tensor(list(images), tok.config.resolution).to(tok.device))
    return gids, lids.flatten(1).cpu()


def cached_tokens(tok, ds, indices: list[int], name: str, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens of `ds[indices]` by `tok`, computed once and cached (a damaged entry is rebuilt with a warning)."""
    from ..data import Chunks

    key = hashlib.sha256(json.dumps([tokenizer_fingerprint(tok), name, indices]).encode()).hexdigest()[:16]
    path = cache_root() / "tuning_tokens" / f"{key}.safetensors"
    cached = read_cache_tensors(path)
    if cached is not None and {"global", "local"} <= set(cached[0]) and len(cached[0]["local"]) == len(indices):
        return cached[0]["global"], cached[0]["local"]
    work = path.with_suffix(".partial")
    both = Chunks(work, None, shard=True).map(  # under `accelerate launch`: every process tokenizes its share
        "tokens",
        indices,
        128,
        lambda idx: torch.cat([t.long() for t in image_tokens(tok, [ds[i].image for i in idx])], 1),
        f"tokenize {name} (once)",
        progress=progress,
    )
    k = tok.config.num_global
    gids, lids = both[:, :k].contiguous(), both[:, k:].contiguous()
    write_cache_tensors(path, {"global": gids, "local": lids}, {"data": name, "images": len(indices)})
    shutil.rmtree(work, ignore_errors=True)
    return gids, lids


def prefix_ids(lm_tokenizer, start_ids: Sequence[int], words: Sequence[str]) -> list[int]:
    """The text prefix of an image: the LLM's start ids, then its global words ("w1, w2, …, wK.\\n")."""
    text = SEPARATOR.join(words) + END
    return list(start_ids) + list(lm_tokenizer(text, add_special_tokens=False)["input_ids"])


def sequence(prefix: Sequence[int], local: Sequence[int]) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one training sequence: the prefix, then the local ids; labels are the ids on the local
    positions and `IGNORE` on the prefix, so the autoregressive loss covers exactly the local ids."""
    ids = [int(t) for t in prefix] + [int(t) for t in local]
    return ids, [IGNORE] * len(prefix) + [int(t) for t in local]


class TokenSequences(Dataset):
    """One (input ids, labels) pair per image: `prefixes[i]` then `local[i]`."""

    def __init__(self, prefixes: list[list[int]], local: torch.Tensor):
        if len(prefixes) != len(local):
            raise ValueError("one prefix per image")
        self.prefixes, self.local = prefixes, local

    def __len__(self) -> int:
        return len(self.prefixes)

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return sequence(self.prefixes[i], self.local[i].tolist())


def collate(items: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids, attention_mask (0 on padding) and labels (`IGNORE` on padding)."""
    n = max(len(ids) for ids, _ in items)
    ids = torch.full((len(items), n), pad_id, dtype=torch.long)
    labels = torch.full((len(items), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), n), dtype=torch.long)
    for b, (x, y) in enumerate(items):
        ids[b, : len(x)] = torch.tensor(x)
        labels[b, : len(y)] = torch.tensor(y)
        mask[b, : len(x)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def local_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled (local) positions: position t's logits predict label t+1."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=IGNORE
    )
