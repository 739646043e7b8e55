"""Prompt templates for embedding codebook entries with the VL text encoder (paper §3.2, appendix A), and the
template-averaged embedding itself.

`IMAGENET_TEMPLATES` are the 80 templates of CLIP's ImageNet zero-shot notebook (also used by SPAE); `CPU_TEMPLATES`
is the small default: three of them, so that the default build embeds ~150k entries in minutes on 2 cores.
Template sets are a registry (`v2l info --list`); `--templates N` takes the first N of the 80.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import ConfigError
from ..registry import new_registry

CPU_TEMPLATES = ("a photo of a {}.", "a photo of the {}.", "itap of a {}.")

IMAGENET_TEMPLATES = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

TEMPLATE_SETS = new_registry("template-sets", "template set", "--templates")
TEMPLATE_SETS.add("cpu", CPU_TEMPLATES, "3 of CLIP's ImageNet templates (the CPU default)")
TEMPLATE_SETS.add("imagenet80", IMAGENET_TEMPLATES, "CLIP's 80 ImageNet templates (as SPAE)")
TEMPLATE_SETS.add("single", ("a photo of a {}.",), "one template")


def resolve_templates(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A named set (`cpu`, `imagenet80`, `single`), a number N (the first N of the 80), or explicit templates."""
    if isinstance(spec, (tuple, list)):
        templates = tuple(spec)
    elif spec in TEMPLATE_SETS:
        templates = TEMPLATE_SETS.get(spec)
    elif str(spec).isdigit() and 1 <= int(spec) <= len(IMAGENET_TEMPLATES):
        templates = IMAGENET_TEMPLATES[: int(spec)]
    else:
        raise ConfigError(
            f"--templates {spec!r} is not a template set: use one of {', '.join(TEMPLATE_SETS.names())}, "
            f"or a number from 1 to {len(IMAGENET_TEMPLATES)}."
        )
    if not templates or any(not isinstance(t, str) or "{}" not in t for t in templates):
        raise ConfigError("--templates: every template must contain '{}' where the entry goes.")
    return templates


def entry_text(text: str | None, display: str) -> str:
    """What the VL text encoder reads for a token: its text without surrounding spaces (display form if none)."""
    s = (text or "").strip()
    return s if s else display


def embed_entries(
    vl, texts: Sequence[str], templates: Sequence[str], renormalize: bool = True, batch_size: int = 256
) -> torch.Tensor:
    """Template-averaged VL text embeddings (len(texts), d); each template's embedding is unit-norm."""
    acc = None
    for t in templates:
        e = vl.encode_text([t.format(x) for x in texts], batch_size=batch_size)
        acc = e if acc is None else acc + e
    mean = acc / len(templates)
    return torch.nn.functional.normalize(mean, dim=-1) if renormalize else mean
