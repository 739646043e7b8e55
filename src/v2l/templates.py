"""Prompt templates for embedding codebook entries with the VL text encoder (METHOD.md §1).

`IMAGENET_TEMPLATES` are the 80 templates of CLIP's ImageNet zero-shot notebook (also used by SPAE); `CPU_TEMPLATES`
is the small default: three of them, so that the default build embeds ~150k entries in minutes on 2 cores.
"""

CPU_TEMPLATES = ("a photo of a {}.", "a photo of the {}.", "itap of a {}.")

IMAGENET_TEMPLATES = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)

TEMPLATE_SETS = {"cpu": CPU_TEMPLATES, "imagenet80": IMAGENET_TEMPLATES, "single": ("a photo of a {}.",)}


def resolve_templates(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A named set (`cpu`, `imagenet80`, `single`), a number N (the first N of the 80), or explicit templates."""
    if isinstance(spec, (tuple, list)):
        templates = tuple(spec)
    elif spec in TEMPLATE_SETS:
        templates = TEMPLATE_SETS[spec]
    elif str(spec).isdigit() and 1 <= int(spec) <= len(IMAGENET_TEMPLATES):
        templates = IMAGENET_TEMPLATES[: int(spec)]
    else:
        raise ValueError(f"--templates {spec!r}: use cpu, imagenet80, single, or a number from 1 to 80.")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError("every template must contain '{}' where the entry goes.")
    return templates
