"""The fixed Tiny-ImageNet class split: 160 classes train the tokenizer, 40 held-out classes are kept for few-shot
evaluation (so the N-way K-shot tasks of paper §4.2 use classes the tokenizer never saw).

The *evaluation images* are the held-out classes' val images and their first `HELDOUT_POOL_TRAIN` train images (shard
order = file-name order): the few-shot pool, 60 per class. The held-out classes' other train images are never
evaluated on; they exist so that a codebook can be filtered with images of every class as the paper does (§3.2:
ImageNet-1K train, labels unused) without ever seeing an evaluation image: `select_indices(..., "all")` on
tiny-imagenet-200 skips the evaluation images.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import DataNotFoundError, V2LError
from ..paths import data_root

HELDOUT_COUNT = 40
HELDOUT_POOL_TRAIN = 50  # train images per held-out class in the evaluation pool (the other 50 may filter codebooks)
_SPLIT_FILE = Path(__file__).resolve().parent.parent / "resources" / "tiny_imagenet_split.json"


def heldout_rule(wnids: list[str], count: int = HELDOUT_COUNT) -> list[str]:
    """The documented rule: the `count` wnids with the smallest sha256("v2l-fewshot:" + wnid), sorted.

    A hash makes the choice fixed, independent of class order, and blind to what the classes are.
    """
    return sorted(sorted(wnids, key=lambda w: hashlib.sha256(f"v2l-fewshot:{w}".encode()).hexdigest())[:count])


def tiny_imagenet_split() -> dict[str, list[str]]:
    """{'train': 160 wnids used for training, 'heldout': 40 wnids kept for few-shot evaluation}."""
    return json.loads(_SPLIT_FILE.read_text())


def tiny_imagenet_classes(root=None) -> list[dict]:
    """Rows of `classes.tsv`: index, wnid, names."""
    path = data_root(root) / "tiny-imagenet-200" / "classes.tsv"
    if not path.is_file():
        raise DataNotFoundError(f"{path} not found: pass --data-root to the folder that holds tiny-imagenet-200/.")
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    return [{"index": int(r[0]), "wnid": r[1], "names": r[2]} for r in rows]


def is_evaluation_image(split: str | None, wnid: str, rank: int, heldout: set[str] | None = None) -> bool:
    """Whether the `rank`-th image (0-based, shard order) of class `wnid` in Tiny-ImageNet `split` is an evaluation
    image (see the module docstring)."""
    heldout = heldout if heldout is not None else set(tiny_imagenet_split()["heldout"])
    return wnid in heldout and (split != "train" or rank < HELDOUT_POOL_TRAIN)


def select_indices(ds, classes: str = "train", per_class: int = 0, data_name: str = "") -> list[int]:
    """Sample indices of `ds`: `classes` = "train" (v2l's 160 Tiny-ImageNet training classes), "heldout" (the 40
    held-out classes' evaluation images) or "all" (every class; on tiny-imagenet-200 never an evaluation image)."""
    allowed = None
    if classes in ("train", "heldout"):
        if data_name != "tiny-imagenet-200":
            raise V2LError(f"--classes {classes} applies to tiny-imagenet-200 only: pass --classes all.")
        allowed = set(tiny_imagenet_split()[classes])
    elif classes != "all":
        raise V2LError(f"--classes {classes!r}: use train, heldout or all.")
    held = set(tiny_imagenet_split()["heldout"]) if data_name == "tiny-imagenet-200" else set()
    split = getattr(ds, "split", None)
    counts: dict[str, int] = {}
    ranks: dict[str, int] = {}
    out = []
    for i in range(len(ds)):
        meta = ds.meta(i) if hasattr(ds, "meta") else {}
        c = meta.get("wnid") or meta.get("label") or ""
        rank = ranks[c] = ranks.get(c, -1) + 1
        if allowed is not None and c not in allowed:
            continue
        evaluation = is_evaluation_image(split, c, rank, held)
        if (classes == "all" and evaluation) or (classes == "heldout" and not evaluation):
            continue
        if per_class and counts.get(c, 0) >= per_class:
            continue
        counts[c] = counts.get(c, 0) + 1
        out.append(i)
    if not out:
        raise V2LError(f"No images selected from {data_name or ds}: check --data, --split and --classes.")
    return out
