"""The settings of a codebook build (paper §3.2, appendix A, Table 5) and the key that names its artefact."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from ..backbones.language_model import DEFAULT_LLM
from ..backbones.vision_language import DEFAULT_VL
from ..config import check_choice, check_range
from ..errors import ConfigError
from ..paths import text_sha256
from .templates import resolve_templates

FORMAT_VERSION = 1
KINDS = ("subword", "bigram", "trigram")
DEDUPE = ("text", "encoder")
SCREEN = ("bf16", "off")
FILTER_CLASSES = ("train", "heldout", "all")
KEY_DEFAULTS = {"dedupe": "text", "max_share": 1.0}  # options added after the first artefacts, at their original value


@dataclass
class CodebookConfig:
    """Every setting of a codebook build; saved in the manifest. Defaults are the CPU build of the README."""

    llm: str = DEFAULT_LLM
    vl: str = DEFAULT_VL
    prefix: str = "a photo of"  # appendix A; joined to entries by token ids, not text (see v2l.codebooks.expansion)
    top_m: int = 1  # M in appendix A: next tokens kept per entry
    max_ngram: int = 3  # Table 5: 1 = subwords only, 2 = + bigrams, 3 = + trigrams
    templates: str | tuple[str, ...] = "cpu"  # "cpu" (3), "imagenet80", "single", N, or explicit templates
    renormalize_templates: bool = True  # re-normalise the template mean (the official code does not); our choice:
    # every codebook row is then a unit vector, so dot products are cosines as in the paper's filtering text.
    filter_data: str = "tiny-imagenet-200"  # a data set under the data root, or a folder of images
    filter_split: str | None = "train"
    filter_classes: str = "all"  # "all" (the paper's protocol, §3.2): images of every class, labels unused, never an
    # evaluation image (on tiny-imagenet-200 the held-out classes give only their non-evaluation train images, see
    # v2l.data.splits); "train": v2l's 160 training classes only (the strict variant: held-out names rarely appear)
    filter_per_class: int = 50  # images per class (0 = all); the paper uses all of ImageNet-1K train
    filter_top_k: int = 5  # top-5 entries per image (§3.2)
    min_count: int = 1  # keep entries chosen at least this often (paper: union, i.e. 1; official code: > 100)
    max_share: float = 1.0  # drop entries chosen by more than this share of the filtering images (hubs: generic
    # entries such as "photo of" that sit near every image); 1.0 keeps all, as the paper
    dedupe: str = "text"  # candidates kept once per "text" (stripped), or per "encoder" input: texts the VL text
    # encoder cannot tell apart (e.g. "Snake" / "snake" for an uncased one) embed identically; keep the first
    screen: str = "bf16"  # "bf16": embed the expanded candidates in bfloat16 first and again in float32 only where
    # they could enter an image's top-k (v2l.codebooks.screening; the same codebook, faster); "off": all in float32
    chunk_size: int = 2048  # prompts / texts / images per resumable chunk
    batch_size: int = 256  # texts per text-encoder batch
    llm_batch_size: int = 1024  # prompts per LLM batch in the expansion (1.07x the rate of 256 on 2 cores, same ids)

    def __post_init__(self):
        own = "CodebookConfig"
        for name in ("llm", "vl", "filter_data"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{own}.{name} {getattr(self, name)!r} is invalid: use a non-empty name.")
        check_range("top_m", self.top_m, low=1, owner=own, cli=True)
        check_range("max_ngram", self.max_ngram, low=1, high=len(KINDS), owner=own, cli=True)
        check_range("filter_per_class", self.filter_per_class, low=0, owner=own, cli=True)
        check_range("filter_top_k", self.filter_top_k, low=1, owner=own, cli=True)
        check_range("min_count", self.min_count, low=1, owner=own, cli=True)
        if not isinstance(self.max_share, (int, float)) or not 0 < self.max_share <= 1:
            raise ConfigError(
                f"--max-share {self.max_share!r} is invalid: use a share of the filtering images in "
                "(0, 1], e.g. 0.01; 1 keeps every entry."
            )
        check_range("chunk_size", self.chunk_size, low=1, owner=own, cli=True)
        check_range("batch_size", self.batch_size, low=1, owner=own, cli=True)
        check_range("llm_batch_size", self.llm_batch_size, low=1, owner=own, cli=True)
        check_choice("dedupe", self.dedupe, DEDUPE, owner=own, cli=True)
        check_choice("screen", self.screen, SCREEN, owner=own, cli=True)
        check_choice("filter_classes", self.filter_classes, FILTER_CLASSES, owner=own, cli=True)
        resolve_templates(self.templates)  # a bad set fails here, before any model loads

    def key(self) -> str:
        d = dataclasses.asdict(self)
        d["templates"] = list(resolve_templates(self.templates))
        for k in ("chunk_size", "batch_size", "llm_batch_size", "screen"):  # do not change the result
            d.pop(k)
        for name, original in KEY_DEFAULTS.items():  # options added later keep the keys of artefacts built before them
            if d[name] == original:
                d.pop(name)
        return f"{slug(self.llm)}__{slug(self.vl)}__{text_sha256(json.dumps(d, sort_keys=True))[:12]}"


def slug(name: str) -> str:
    """A file-name-safe short form of a model name (the first part of an artefact key)."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(name).name or name)[:40]
