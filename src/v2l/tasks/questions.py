"""Questions with exact one-word answers, derived from COCO instance annotations: a stand-in for VQA v2.

No VQA v2 / COCO-QA answers exist offline for our COCO images, so, in the spirit of COCO-QA (Ren et al. 2015, the
paper's [40]), `derive_questions` writes questions whose answers follow from the official instance annotations. The
rules are fixed, so the same annotations always give the same questions:

**What is visible.** Our images are the central square crop of the original photo (short side, then 160×160), so an
annotated object may be cut off. An instance is *visible* when at least half of its box lies inside the crop and the
part inside covers at least 64 pixels (8×8) of the 160×160 image; a category is *absent* when the image has no
annotation of it at all. Anything else (mostly cropped away, or tiny) is *uncertain*, and no question is asked whose
answer it could change.

**Question types** (at most one of each per image; choices among several candidates are seeded by the image key):

- `presence`, yes: "Is there a {category} in the picture?" ("an" before a vowel; "Are there skis ...") for a
  category with a visible instance.
- `presence`, no: the same for a category absent from the image (drawn from the 80 COCO categories).
- `counting`: "How many {plural} are in the picture?" → "one" … "ten", for a visible category with no uncertain
  and no crowd instances (a crowd annotation, `iscrowd` = 1, marks a group whose members were not counted, so its
  category's count is unknown and it is skipped) and at most ten instances. In one image in five (by key hash) the
  question asks about an absent category instead → "zero".
- `category`: "What {animal|vehicle|food} is in the picture?" → the category name, when exactly one category of
  that COCO super-category is visible, no other is uncertain, and the name is one word ("hot dog" is never asked).

Answers are lower-case single words; `normalize_answer` maps an LLM's answer to the same form (first word, no
punctuation or article, digits as words).
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from ..errors import V2LError

# The 80 COCO categories and their super-categories (COCO 2017 instance annotations).
COCO_CATEGORIES = {
    "person": "person",
    **dict.fromkeys(["bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat"], "vehicle"),
    **dict.fromkeys(["traffic light", "fire hydrant", "stop sign", "parking meter", "bench"], "outdoor"),
    **dict.fromkeys(["bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"], "animal"),
    **dict.fromkeys(["backpack", "umbrella", "handbag", "tie", "suitcase"], "accessory"),
    **dict.fromkeys(
        [
            "frisbee",
            "skis",
            "snowboard",
            "sports ball",
            "kite",
            "baseball bat",
            "baseball glove",
            "skateboard",
            "surfboard",
            "tennis racket",
        ],
        "sports",
    ),
    **dict.fromkeys(["bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl"], "kitchen"),
    **dict.fromkeys(
        ["banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake"], "food"
    ),
    **dict.fromkeys(["chair", "couch", "potted plant", "bed", "dining table", "toilet"], "furniture"),
    **dict.fromkeys(["tv", "laptop", "mouse", "remote", "keyboard", "cell phone"], "electronic"),
    **dict.fromkeys(["microwave", "oven", "toaster", "sink", "refrigerator"], "appliance"),
    **dict.fromkeys(["book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush"], "indoor"),
}
ASKED_SUPERCATEGORIES = ("animal", "vehicle", "food")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
QUESTION_TYPES = ("presence", "counting", "category")
_PLURALS = {
    "person": "people",
    "sheep": "sheep",
    "mouse": "mice",
    "knife": "knives",
    "skis": "skis",
    "scissors": "scissors",
}
_PLURAL_ONLY = {"skis", "scissors"}
CROP_SIZE = 160
MIN_VISIBLE_FRACTION = 0.5
MIN_VISIBLE_PIXELS = 64


@dataclass(frozen=True)
class Question:
    type: str
    question: str
    answer: str


def presence_question(name: str) -> str:
    if name in _PLURAL_ONLY:
        return f"Are there {name} in the picture?"
    return f"Is there {'an' if name[0] in 'aeiou' else 'a'} {name} in the picture?"


def plural(name: str) -> str:
    if name in _PLURALS:
        return _PLURALS[name]
    return name + ("es" if re.search(r"(s|sh|ch|x)$", name) else "s")


def visibility(obj: dict, original_size: tuple[int, int], crop: int = CROP_SIZE) -> str:
    """`visible` or `uncertain` for one instance (see the module docstring)."""
    w, h = original_size
    side = min(w, h)
    x0, y0 = (w - side) / 2, (h - side) / 2
    bx, by, bw, bh = obj["bbox"]
    iw = max(0.0, min(bx + bw, x0 + side) - max(bx, x0))
    ih = max(0.0, min(by + bh, y0 + side) - max(by, y0))
    inside = iw * ih
    if bw * bh <= 0 or inside <= 0:
        return "uncertain"
    frac = inside / (bw * bh)
    pixels = inside * (crop / side) ** 2
    return "visible" if frac >= MIN_VISIBLE_FRACTION and pixels >= MIN_VISIBLE_PIXELS else "uncertain"


def derive_questions(key: str, objects: list[dict] | None, original_size: tuple[int, int] | None) -> list[Question]:
    """The questions for one image (none when its annotations are unknown); see the module docstring."""
    if objects is None or original_size is None:
        return []
    rng = random.Random(f"v2l-questions:{key}")
    state: dict[str, dict[str, int]] = {}
    for o in objects:
        s = state.setdefault(o["category"], {"visible": 0, "uncertain": 0, "crowd": 0})
        if o.get("iscrowd"):
            s["crowd"] += 1
        s[visibility(o, original_size)] += 1
    visible = sorted(c for c, s in state.items() if s["visible"])
    absent = sorted(c for c in COCO_CATEGORIES if c not in state)
    out = []
    if visible:
        c = rng.choice(visible)
        out.append(Question("presence", presence_question(c), "yes"))
    if absent:
        c = rng.choice(absent)
        out.append(Question("presence", presence_question(c), "no"))
    countable = [
        c for c in visible if not state[c]["uncertain"] and not state[c]["crowd"] and state[c]["visible"] <= 10
    ]
    zero = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 5 == 0
    if zero and absent:
        c = rng.choice(absent)
        out.append(Question("counting", f"How many {plural(c)} are in the picture?", "zero"))
    elif countable:
        c = rng.choice(countable)
        out.append(Question("counting", f"How many {plural(c)} are in the picture?", NUMBERS[state[c]["visible"]]))
    for sup in ASKED_SUPERCATEGORIES:
        seen = [c for c in state if COCO_CATEGORIES.get(c) == sup]
        vis = [c for c in seen if state[c]["visible"]]
        if len(vis) == 1 and len(seen) == 1 and " " not in vis[0]:
            out.append(Question("category", f"What {sup} is in the picture?", vis[0]))
    return out


_ARTICLES = {"a", "an", "the"}


def normalize_answer(text: str) -> str:
    """An answer as one lower-case word: the first word that is not an article, without punctuation; digits 0–10
    become words."""
    for w in re.findall(r"[a-z0-9]+", text.lower()):
        if w in _ARTICLES:
            continue
        if w.isdigit() and int(w) <= 10:
            return NUMBERS[int(w)]
        return w
    return ""


def normalize_question(q: str) -> str:
    """A question as the paper's prompt writes it ("Question: Q. Answer:"): stripped, without a final "?" or "."; an
    empty question gets one clear sentence."""
    try:
        q.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 (a shell passes them through as lone surrogates)
        raise V2LError(
            f"The question {q.encode('utf-8', 'backslashreplace')!r} is not UTF-8 text: pass it in UTF-8."
        ) from None
    out = q.strip().rstrip("?.").rstrip()
    if not out:
        raise V2LError('The question is empty: ask a question about the image, e.g. "What animal is in the picture?".')
    return out
