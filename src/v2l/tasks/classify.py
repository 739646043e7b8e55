"""Classify images against a folder of labelled examples, in context, with a frozen LLM (the practical form of paper
§3.3's N-way K-shot classification).

The support folder holds one sub-folder per class; the sub-folder's name is the class name (as the LLM will read and
write it) and its images are that class's examples. Every query image gets one prompt; all of them share the
instruction and the examples, whose KV cache is computed once.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..data.images import IMAGE_EXTENSIONS, load_image
from ..errors import ConfigError, ImageDecodeError, V2LError
from .fewshot import CORRECTIONS, RULES, InContextClassifier
from .prompts import FewShotTemplate, load_template


@dataclass
class ClassifyResult:
    image: str
    prediction: str | None  # None: the paper rule's answer is not a class name
    rule: str
    scores: dict[str, float]  # per class: the log-probability of its label (calibrated for `calibrated`)
    words: list[str]
    by_rule: dict[str, str | None] = field(default_factory=dict)  # every rule's answer (one pass decides them all)

    def to_json(self) -> dict:
        return {
            "image": self.image,
            "prediction": self.prediction,
            "rule": self.rule,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "words": self.words,
        }


def load_support(folder: str | Path) -> dict[str, list[Path]]:
    """{class name: image paths} of a support folder; bad folders get one clear sentence."""
    folder = Path(folder)
    if not folder.exists():
        raise V2LError(
            f"Support folder {folder} does not exist: pass a folder with one sub-folder of images per class."
        )
    if not folder.is_dir():
        raise V2LError(
            f"--support {folder} is a file, not a folder: pass a folder with one sub-folder of images per class."
        )
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise V2LError(
                f"Class folder {sub} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))}): add examples or "
                "remove the folder."
            )
        classes[sub.name] = images
    if not classes:
        raise V2LError(
            f"Support folder {folder} has no class sub-folders: make one sub-folder of example images per "
            "class, named after the class."
        )
    if len(classes) < 2:
        raise V2LError(
            f"Support folder {folder} has one class only ({next(iter(classes))}): classification needs at "
            "least two class sub-folders."
        )
    return classes


def decode_images(paths: Sequence[Path | str], what: str) -> list:
    images = []
    for p in paths:
        try:
            images.append(load_image(Path(p)))
        except ImageDecodeError as e:
            raise ImageDecodeError(f"{what} {p} is not a readable image ({e}): replace or remove it.") from None
        except FileNotFoundError:
            raise V2LError(f"{what} {p} does not exist: check the path.") from None
    return images


def classify_images(
    images: Sequence[str | Path],
    support: str | Path | dict[str, list[Path]],
    lm=None,
    vl=None,
    codebook=None,
    kg: int = 5,
    rule: str = "rank",
    template: str | FewShotTemplate = "paper",
    seed: int = 0,
    progress: bool = False,
) -> list[ClassifyResult]:
    """Predict a class for each image from the labelled examples in `support` (see the module docstring).

    `rule`: `paper`, `constrained`, `rank` (the default: as accurate as or more accurate than the others over our
    Table 1 grids, docs/results.md) or `calibrated` (better at 2-way 1-shot, worse with more classes and examples).
    """
    from ..tokenizer.words import words_of_embeddings
    from .models import load_task_models

    if rule not in (*RULES, *CORRECTIONS):
        raise ConfigError(f"--rule {rule!r} is invalid: use one of {', '.join((*RULES, *CORRECTIONS))}.")
    if not isinstance(kg, int) or kg < 1:
        raise ConfigError(f"--kg {kg!r} is invalid: use a whole number of words per image, at least 1.")
    if not images:
        raise V2LError("No images to classify: pass one or more image files.")
    sup = support if isinstance(support, dict) else load_support(support)
    queries = decode_images(images, "Image")  # every input is checked before any model work
    classes = sorted(sup)
    paths = [(c, p) for c in classes for p in sup[c]]
    examples = decode_images([p for _, p in paths], "Support image")
    tmpl = template if isinstance(template, FewShotTemplate) else load_template(template)
    lm, vl, codebook = load_task_models(lm, vl, codebook, progress)
    sup_words = [w for w, _ in words_of_embeddings(codebook, vl.encode_image(examples), kg)]
    q_words = [w for w, _ in words_of_embeddings(codebook, vl.encode_image(queries), kg)]
    # rounds: one example of each class per round (as in the benchmark's episodes), class order shuffled per round
    by_class: dict[str, list[list[str]]] = {c: [] for c in classes}
    for (c, _), w in zip(paths, sup_words, strict=True):
        by_class[c].append(w)
    rng = random.Random(f"v2l-classify:{seed}")
    samples = []
    for r in range(max(len(v) for v in by_class.values())):
        order = [c for c in classes if r < len(by_class[c])]
        rng.shuffle(order)
        samples += [(by_class[c][r], c) for c in order]
    clf = InContextClassifier(lm, tmpl, calibrate=rule == "calibrated")
    prompts = [clf.prompt(i, classes, samples, w) for i, w in enumerate(q_words)]
    decided = clf.decide(prompts)
    out = []
    for i, img in enumerate(images):
        d = decided[i]
        choice = d.choice[rule]
        scores = d.calibrated if rule == "calibrated" else d.logprob
        out.append(
            ClassifyResult(
                str(img),
                classes[choice] if choice is not None else None,
                rule,
                dict(zip(classes, scores, strict=True)),
                [w.strip() for w in q_words[i]],
                {k: classes[v] if v is not None else None for k, v in d.choice.items()},
            )
        )
    return out
