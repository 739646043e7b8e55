"""Visual question answering in context by a frozen LLM (paper §3.3 "Visual Question Answering", §4.2, Fig. 5).

The prompt is the paper's (`incontext.VQA_PAPER`): the instruction, 10 in-context triplets "Condition: T_g.
Question: Q. Answer: A", then "Condition: T_g^test. Question: Q. Answer:"; the LLM answers greedily until ".".
The triplets come from the questions `questions.derive_questions` writes for the pool images (coco-captions train):
a stand-in for VQA v2, which has no offline copy here. `blind=True` gives the question-only baseline: the same
prompts with every image's words left out, which shows whether the words help at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import V2LError
from .coco import CocoImage
from .incontext import VQA_PAPER, GenerationTemplate, InContextGenerator
from .pool import WordVectors, choose_samples, word_vectors
from .questions import QUESTION_TYPES, Question, derive_questions, normalize_answer, normalize_question

STAND_IN = "VQA stand-in: questions derived from COCO instance annotations (not VQA v2)"


@dataclass
class VQAResult:
    image: str
    question: str
    answer: str  # normalised: one lower-case word
    raw: str  # the LLM's text before the stop
    words: list[str]
    samples: list[int]  # indices of the in-context triplets, in prompt order

    def to_json(self) -> dict:
        return {
            "image": self.image,
            "question": self.question,
            "answer": self.answer,
            "raw": self.raw,
            "words": self.words,
            "note": STAND_IN,
        }


def pool_questions(pool: Sequence[CocoImage]) -> list[tuple[int, Question]]:
    """(pool image index, question) for every question derived from the pool's annotations."""
    return [(i, q) for i, img in enumerate(pool) for q in derive_questions(img.key, img.objects, img.original_size)]


def majority_answers(triplets: Sequence[tuple[int, Question]]) -> dict[str, str]:
    """The most common answer of each question type (ties: alphabetical)."""
    out = {}
    for t in QUESTION_TYPES:
        c = Counter(q.answer for _, q in triplets if q.type == t)
        if c:
            out[t] = min(c, key=lambda a: (-c[a], a))
    return out


class VisualQA:
    """Answers questions about images in context from the derived pool (see the module docstring)."""

    def __init__(
        self,
        lm,
        vl,
        codebook,
        pool: Sequence[CocoImage],
        kg: int = 21,
        shots: int = 10,
        pairs: str = "random",
        seed: int = 0,
        template: GenerationTemplate = VQA_PAPER,
        batch_size: int = 64,
    ):
        template.check({"words", "question", "answer"}, {"words", "question"})
        self.vl, self.codebook, self.kg, self.shots, self.pairs, self.seed = vl, codebook, kg, shots, pairs, seed
        self.pool = list(pool)
        self.triplets = pool_questions(self.pool)
        if shots and not self.triplets:
            raise V2LError(
                "The VQA pool has no questions: pass images with COCO instance annotations (coco-captions train)."
            )
        words = word_vectors([p.image for p in self.pool], vl, codebook, kg)
        self.pool_words = words
        idx = [i for i, _ in self.triplets]
        self.triplet_words = WordVectors([words.words[i] for i in idx], words.vectors[idx] if idx else words.vectors)
        self.gen = InContextGenerator(lm, template, batch_size=batch_size)

    def prompts(self, queries: WordVectors, questions: Sequence[str], blind: bool = False):
        if len(questions) != len(queries):
            raise ValueError(f"{len(questions)} questions for {len(queries)} images.")
        chosen = choose_samples(self.pairs, self.triplet_words, queries, self.shots, self.seed)
        prompts = []
        for q, idx in enumerate(chosen):
            question = normalize_question(questions[q])
            if not queries.words[q] and not blind:
                raise V2LError(f"Query image {q} has no words: an answer needs at least one global word (--kg ≥ 1).")
            samples = [
                {
                    "words": "" if blind else self.triplet_words.words[i],
                    "question": normalize_question(self.triplets[i][1].question),
                    "answer": self.triplets[i][1].answer,
                }
                for i in idx
            ]
            prompts.append(self.gen.prompt(samples, {"words": "" if blind else queries.words[q], "question": question}))
        return prompts, chosen

    def answer(
        self,
        images: Sequence,
        questions: Sequence[str],
        names: Sequence[str] | None = None,
        blind: bool = False,
        words: WordVectors | None = None,
        progress=None,
    ) -> list[VQAResult]:
        """One answer per (image, question) pair; `words` may be passed precomputed for the images."""
        names = list(names) if names is not None else [str(i) for i in range(len(images))]
        words = words if words is not None else word_vectors(list(images), self.vl, self.codebook, self.kg)
        prompts, chosen = self.prompts(words, questions, blind)
        gens = self.gen.generate(prompts, progress)
        return [
            VQAResult(
                names[i],
                questions[i],
                normalize_answer(g.text),
                g.text.strip(),
                [w.strip() for w in words.words[i]],
                chosen[i],
            )
            for i, g in enumerate(gens)
        ]


def accuracy_by_type(types: Sequence[str], gold: Sequence[str], predicted: Sequence[str]) -> dict[str, dict]:
    """Exact-match accuracy per question type and overall: {type: {"n", "correct", "acc"}}."""
    out = {}
    for t in (*QUESTION_TYPES, "all"):
        rows = [(g, p) for ty, g, p in zip(types, gold, predicted, strict=True) if t in ("all", ty)]
        if rows:
            correct = sum(g == p for g, p in rows)
            out[t] = {"n": len(rows), "correct": correct, "acc": correct / len(rows)}
    return out


def answer_questions(
    images: Sequence[str],
    questions: Sequence[str],
    lm=None,
    vl=None,
    codebook=None,
    pool: Sequence[CocoImage] | None = None,
    kg: int = 21,
    shots: int = 10,
    pairs: str = "random",
    seed: int = 0,
    template: GenerationTemplate = VQA_PAPER,
    data_root=None,
    blind: bool = False,
    progress: bool = False,
) -> list[VQAResult]:
    """Answer one free question per image file in context; triplets come from the pool derived from coco-captions
    train under the data root."""
    from tqdm.auto import tqdm

    from .classify import decode_images
    from .coco import load_coco
    from .models import load_task_models

    if len(images) != len(questions):
        raise V2LError(f"{len(questions)} questions for {len(images)} images: pass one question per image.")
    for q in questions:
        normalize_question(q)  # an empty question is refused before any model loads
    decoded = decode_images(images, "Image")
    lm, vl, codebook = load_task_models(lm, vl, codebook)
    pool = load_coco("train", root=data_root) if pool is None else pool
    vqa = VisualQA(lm, vl, codebook, pool, kg=kg, shots=shots, pairs=pairs, seed=seed, template=template)
    with tqdm(total=len(decoded), desc="vqa", disable=not progress, unit="prompt") as bar:
        return vqa.answer(decoded, questions, [str(p) for p in images], blind=blind, progress=bar.update)
