"""The Table 1 grid: episodes × cells × K_g, decided by a frozen LLM, plus two LLM-free references per cell.

The references show how much of what the words carry reaches the answer: the nearest support example by the VL image
embedding (what the image tower knows) and by the words alone (overlap of the query's K_g words with each example's;
ties broken at random, seeded per episode).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import V2LError
from ..files import read_cache_tensors, write_cache_tensors
from ..paths import cache_root, file_sha256
from .episodes import TABLE1_CELLS, Cell, Episode, sample_episodes
from .fewshot import CORRECTIONS, RULES, InContextClassifier


@dataclass
class FeatureStore:
    """Per image key: its VL image embedding and its global words (nearest first, distinct)."""

    keys: list[str]
    labels: list[str]
    embeddings: torch.Tensor  # (n, d), L2-normalised
    words: list[list[str]]

    def index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}

    def pool(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for k, lab in zip(self.keys, self.labels, strict=True):
            out.setdefault(lab, []).append(k)
        return out


def heldout_features(
    vl, codebook, data_root=None, top: int = 21, progress: bool = True, per_class: int | None = None
) -> FeatureStore:
    """Features of the evaluation images of the 40 held-out Tiny-ImageNet classes (their val images and first 50
    train images; `v2l.data.splits`): the few-shot pool.
    VL embeddings are cached under the v2l cache (keyed by the VL model and the shards' manifest). `per_class` keeps
    the first that many images of each class (shard order; a quick pool, e.g. the bench's smoke suite)."""
    from ..data import WebDatasetShards, tiny_imagenet_split
    from ..data.splits import select_indices, tiny_imagenet_classes
    from ..paths import data_root as resolve_root
    from ..tokenizer.words import words_of_embeddings

    root = resolve_root(data_root)
    held = set(tiny_imagenet_split()["heldout"])
    names = {r["wnid"]: r["names"].split(",")[0].strip() for r in tiny_imagenet_classes(root)}
    manifest = root / "tiny-imagenet-200" / "manifest.json"
    shards = file_sha256(manifest) if manifest.is_file() else ""
    key = json.dumps(
        [vl.fingerprint(), shards, sorted(held), "pool-2"] + ([per_class] if per_class else []), sort_keys=True
    )
    ident = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = cache_root() / "fewshot" / f"heldout-{ident}.safetensors"  # safetensors + JSON: no pickle (files.py)
    saved = read_cache_tensors(path)
    if saved is not None and _pool_entry_ok(saved):
        (tensors, meta) = saved
        keys, labels, emb = meta["keys"], meta["labels"], tensors["embeddings"]
    else:
        keys, labels, images = [], [], []
        seen: dict[str, int] = {}
        for split in ("train", "val"):
            ds = WebDatasetShards("tiny-imagenet-200", split, root=root)
            for i in select_indices(ds, "heldout", 0, data_name="tiny-imagenet-200"):
                wnid = ds.meta(i)["wnid"]
                if not per_class or seen.get(wnid, 0) < per_class:
                    seen[wnid] = seen.get(wnid, 0) + 1
                    s = ds[i]
                    keys.append(f"{split}/{s.key}")
                    labels.append(names[wnid])
                    images.append(s.image)
        emb = vl.encode_image(images, batch_size=64, progress=progress)
        write_cache_tensors(path, {"embeddings": emb}, {"keys": keys, "labels": labels})
    words = [w for w, _ in words_of_embeddings(codebook, emb, top)]
    if len(set(labels)) < 2:
        raise V2LError(f"The held-out pool under {root} has {len(set(labels))} classes: check the data root.")
    return FeatureStore(keys, labels, emb, words)


def _pool_entry_ok(saved) -> bool:
    tensors, meta = saved
    emb = tensors.get("embeddings")
    keys, labels = meta.get("keys"), meta.get("labels")
    return (
        emb is not None
        and isinstance(keys, list)
        and isinstance(labels, list)
        and emb.ndim == 2
        and len(keys) == len(labels) == emb.shape[0]
    )


def heldout_images(store: FeatureStore, data_root=None) -> list:
    """The images of a `heldout_features` pool, in its key order (for tokenizers other than V2L's global words, which
    need the pixels rather than the cached VL embeddings)."""
    from ..data import WebDatasetShards
    from ..paths import data_root as resolve_root

    root = resolve_root(data_root)
    where = {k: i for i, k in enumerate(store.keys)}
    out: list = [None] * len(store.keys)
    for split in ("train", "val"):
        ds = WebDatasetShards("tiny-imagenet-200", split, root=root)
        for i, key in enumerate(ds.keys):
            if f"{split}/{key}" in where:
                out[where[f"{split}/{key}"]] = ds[i].image
    missing = [k for k, im in zip(store.keys, out, strict=True) if im is None]
    if missing:
        raise V2LError(f"{len(missing)} held-out images (e.g. {missing[0]}) are not under {root}: check the data root.")
    return out


def wilson(correct: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (scipy.stats.binomtest's `proportion_ci(method="wilson")`)."""
    if n == 0:
        return (math.nan, math.nan)
    from ..errors import require

    binomtest = require("scipy.stats", "Wilson intervals of few-shot accuracies", "scipy").binomtest

    ci = binomtest(int(round(correct)), n).proportion_ci(confidence_level=0.95, method="wilson")
    return (float(ci.low), float(ci.high))


def table1_grid(
    clf: InContextClassifier,
    store: FeatureStore,
    ways: Sequence[int],
    kgs: Sequence[int],
    episodes: int | dict[int, list[Episode]],
    seed: int = 0,
    cells: Sequence[Cell] = TABLE1_CELLS,
    progress: bool = True,
    share: Callable[[list], list] = list,
    collect: Callable[[list], list] = list,
) -> tuple[dict[tuple[int, int], list[dict]], dict[int, list[Episode]]]:
    """The Table 1 loop, the one `v2l fewshot` and the bench's fewshot stage both run: for each N of `ways`, the
    episodes (drawn with `seed`, `episodes` per N, or given per N), then every K_g of `kgs` over them. `share` /
    `collect` split the episodes over processes and gather their records (the bench's sharding; one process: as
    they are). Returns ({(K_g, N): records}, {N: episodes})."""
    records, drawn = {}, {}
    for w in ways:
        eps = episodes[w] if isinstance(episodes, dict) else sample_episodes(store.pool(), w, episodes, seed=seed)
        drawn[w] = list(eps)
        for k in kgs:
            recs = run_grid(clf, store, share(eps), k, cells=cells, desc=f"{w}-way K_g={k}", progress=progress)
            records[(k, w)] = collect(recs)
    return records, drawn


def run_grid(
    clf: InContextClassifier,
    store: FeatureStore,
    episodes: Sequence[Episode],
    kg: int,
    cells: Sequence[Cell] = TABLE1_CELLS,
    progress: bool = True,
    desc: str = "episodes",
) -> list[dict]:
    """One record per (episode, cell): the label, each rule's choice, the LLM-free references and bias markers."""
    idx = store.index()
    records = []
    bar = tqdm(total=len(episodes), desc=desc, disable=not progress, unit="episode")
    for e_no, ep in enumerate(episodes):
        t0 = time.perf_counter()
        prompts = []
        qwords = store.words[idx[ep.query[1]]][:kg]
        for cell in cells:
            samples = [(store.words[idx[item]][:kg], ep.classes[c]) for c, item in ep.samples(cell)]
            prompts.append(clf.prompt(cell, ep.classes, samples, qwords, cell.induction))
        decided = clf.decide(prompts)
        seconds = time.perf_counter() - t0
        for cell in cells:
            d = decided[cell]
            support = ep.samples(cell)
            rec = {
                "episode": e_no,
                "ways": ep.ways,
                "kg": kg,
                "cell": cell.name,
                "label": ep.query[0],
                "choice": d.choice,
                "last_support": support[-1][0],
                "seconds": seconds / len(cells),
                "nn_vl": nearest_vl(store, idx, ep, support),
                "nn_words": nearest_words(store, idx, ep, support, kg),
            }
            records.append(rec)
        bar.update(1)
    bar.close()
    return records


def nearest_vl(store: FeatureStore, idx: dict, ep: Episode, support) -> int:
    q = store.embeddings[idx[ep.query[1]]]
    sims = torch.stack([store.embeddings[idx[item]] for _, item in support]) @ q
    return support[int(sims.argmax())][0]


def nearest_words(store: FeatureStore, idx: dict, ep: Episode, support, kg: int) -> int:
    q = {w.strip().lower() for w in store.words[idx[ep.query[1]]][:kg]}
    best, ties = -1.0, []
    for c, item in support:
        s = {w.strip().lower() for w in store.words[idx[item]][:kg]}
        j = len(q & s) / max(1, len(q | s))
        if j > best + 1e-12:
            best, ties = j, [c]
        elif abs(j - best) <= 1e-12:
            ties.append(c)
    return random.Random(f"v2l-nn-words:{ep.seed}").choice(ties)


def summarize(records: list[dict]) -> list[dict]:
    """Accuracy (with 95% Wilson intervals) per (kg, ways, cell) for every rule and reference, with bias markers."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["kg"], r["ways"], r["cell"]), []).append(r)
    rows = []
    for (kg, ways, cell), rs in groups.items():
        n = len(rs)
        row = {
            "kg": kg,
            "ways": ways,
            "cell": cell,
            "episodes": n,
            "chance": 1 / ways,
            "seconds_per_episode": sum(r["seconds"] for r in rs) / n * len({r["cell"] for r in records}),
        }
        for rule in (*RULES, *CORRECTIONS, "nn_vl", "nn_words"):
            hits = [
                (r["choice"].get(rule) if rule in r["choice"] else r.get(rule)) == r["label"]
                for r in rs
                if rule in r["choice"] or rule in r
            ]
            if hits:
                k = sum(hits)
                row[rule] = {"acc": k / len(hits), "ci95": wilson(k, len(hits))}
        # biases of the ranking rule: answering the last example's class (recency), the first listed class
        row["rank_is_last_support"] = sum(r["choice"]["rank"] == r["last_support"] for r in rs) / n
        row["rank_is_first_class"] = sum(r["choice"]["rank"] == 0 for r in rs) / n
        row["paper_not_a_class"] = sum(r["choice"]["paper"] is None for r in rs) / n
        rows.append(row)
    return rows


def save_records(path: Path, records: list[dict], meta: dict) -> None:
    from ..paths import write_json_atomic

    write_json_atomic(path, {"meta": meta, "summary": summarize(records), "records": records})
