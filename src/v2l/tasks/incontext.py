"""In-context *generation* by a frozen LLM: the engine under captioning and VQA (paper §3.3, Fig. 5).

A prompt is an instruction, in-context samples and a query, each a piece of token ids (as in `fewshot.py`):

    Generate a caption sentence based on words describing an image. Input: T_g, output: C. ... Input: T_g^test, output:

`GenerationTemplate` holds the text; `InContextGenerator.generate` answers many prompts greedily until a stop string,
sharing work: prompts go into a tree by their pieces, the KV cache of every start shared by two or more prompts is
computed once (`LanguageModel.extend`), and the prompts below it are generated as one batch after it. When every query
uses the same in-context samples (`pairs="random"`: one seeded draw for the run), the instruction and all samples are
computed once and only the queries run per image; with per-query samples (`pairs="nearest"`) the instruction and any
shared first samples are. `reference_generate` is the plain way (one prompt per call, nothing shared), kept to measure
against: both give the same tokens.
"""

from __future__ import annotations

import string
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..backbones.language_model import Generation, LanguageModel, Prefix
from ..errors import ConfigError


@dataclass(frozen=True)
class GenerationTemplate:
    """The text of an in-context generation prompt. A sample and the query are formatted with an image's `{words}`
    and the task's fields (`{answer}` for the sample's target; `{question}` for VQA)."""

    instruction: str
    sample: str
    query: str
    separator: str = ". "  # between samples and before the query (the paper's "{Samples}. Input: ...")
    after_instruction: str = " "
    word_separator: str = ", "
    stops: tuple[str, ...] = (".", "\n")
    max_new_tokens: int = 40

    def words(self, words: Sequence[str] | str) -> str:
        return words if isinstance(words, str) else self.word_separator.join(w.strip() for w in words)

    def pieces(self, samples: Sequence[dict], query: dict) -> list[str]:
        """Text pieces: the instruction, each sample, the query; joined they are the prompt."""
        out = [self.instruction] if self.instruction else []
        for i, s in enumerate(samples):
            sep = (self.after_instruction if i == 0 else self.separator) if out else ""
            out.append(sep + self.sample.format(**{**s, "words": self.words(s["words"])}))
        sep = (self.separator if samples else self.after_instruction) if out else ""
        out.append(sep + self.query.format(**{**query, "words": self.words(query["words"])}))
        return out

    def render(self, samples: Sequence[dict], query: dict) -> str:
        return "".join(self.pieces(samples, query))

    def fields(self, text: str) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f}

    def check(self, sample_fields: set[str], query_fields: set[str]) -> None:
        for name, text, allowed in (("sample", self.sample, sample_fields), ("query", self.query, query_fields)):
            try:
                got = self.fields(text)
            except ValueError as e:
                raise ConfigError(f"Prompt template field {name!r} ({text!r}) is not a valid template ({e}).") from None
            if "words" not in got:
                raise ConfigError(f"Prompt template field {name!r} ({text!r}) must contain {{words}}.")
            if got - allowed:
                raise ConfigError(
                    f"Prompt template field {name!r} ({text!r}) uses {sorted(got - allowed)}: only "
                    f"{{{', '.join(sorted(allowed))}}} may appear in braces."
                )
        if not self.stops:
            raise ConfigError("Prompt template field 'stops' is empty: generation needs a stop string (e.g. '.').")

    def to_json(self) -> dict:
        return {**asdict(self), "stops": list(self.stops)}

    @classmethod
    def load(cls, base: GenerationTemplate, name_or_path: str | Path | None) -> GenerationTemplate:
        """`base` for None or "paper" (the paper's prompt, §3.3), else `base` with the fields a JSON file sets: the
        same name-or-file convention as the classification templates (`--template`)."""
        if name_or_path is None or str(name_or_path) == "paper":
            return base
        from .prompts import read_template_json

        path = Path(name_or_path)
        if path.suffix != ".json" and not path.exists():
            raise ConfigError(
                f"--template {str(name_or_path)!r}: use paper (the paper's prompt) or a JSON file of template fields."
            )
        from ..files import typed_fields

        data = typed_fields(read_template_json(path), cls, f"--template {path}")
        return cls(**{**asdict(base), **data})


# The paper's prompts (§3.3). A caption sample's `{answer}` is the caption without its final "."; the separator puts
# ". " after every sample, so each in-context caption ends with "." exactly where generation stops.
CAPTION_PAPER = GenerationTemplate(
    instruction="Generate a caption sentence based on words describing an image.",
    sample="Input: {words}, output: {answer}",
    query="Input: {words}, output:",
)
# The question is written without its "?" (the paper's "Question: Q. Answer:"), see `vqa.normalize_question`.
VQA_PAPER = GenerationTemplate(
    instruction="Answer the question with a single word based on the condition.",
    sample="Condition: {words}. Question: {question}. Answer: {answer}",
    query="Condition: {words}. Question: {question}. Answer:",
    max_new_tokens=8,
)


class InContextGenerator:
    """Builds prompts from a `GenerationTemplate` and generates their answers; see the module docstring."""

    def __init__(self, lm: LanguageModel, template: GenerationTemplate, batch_size: int = 64):
        self.lm, self.template, self.batch_size = lm, template, batch_size
        self._ids: dict[str, tuple[int, ...]] = {}

    def ids(self, text: str) -> tuple[int, ...]:
        got = self._ids.get(text)
        if got is None:
            got = self._ids[text] = tuple(self.lm.encode(text))
        return got

    def prompt(self, samples: Sequence[dict], query: dict) -> list[tuple[int, ...]]:
        """Token pieces: the tokenizer's start (Gemma's <bos>), then the template's pieces."""
        start = [self.lm.start_ids] if self.lm.start_ids else []
        return start + [self.ids(t) for t in self.template.pieces(samples, query)]

    def generate(
        self, prompts: Sequence[list[tuple[int, ...]]], progress: Callable[[int], None] | None = None
    ) -> list[Generation]:
        """Greedy answers to all prompts (each until a stop string or `max_new_tokens`), sharing common starts."""
        t = self.template
        return generate_shared(
            self.lm, prompts, t.max_new_tokens, t.stops, batch_size=self.batch_size, progress=progress
        )


def generate_shared(
    lm: LanguageModel,
    prompts: Sequence[list[tuple[int, ...]]],
    max_new_tokens: int,
    stop: Sequence[str] = (),
    constraint=None,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> list[Generation]:
    """Greedy generation for prompts given as token pieces: every start shared by two or more prompts is run once,
    and the prompts below it are generated as one batch after it (see the module docstring). `constraint` applies to
    every prompt (e.g. `TokenSetConstraint` for denoising)."""
    for p in prompts:
        lm.check_context(sum(len(x) for x in p), "prompt", max_new_tokens)
    out: list[Generation | None] = [None] * len(prompts)

    def walk(prefix: Prefix | None, items) -> None:
        groups: dict[tuple[int, ...], list] = defaultdict(list)
        for key, rest in items:
            groups[rest[0]].append((key, rest))
        leaves = []
        for group in groups.values():
            if len(group) < 2 or any(len(r) == 1 for _, r in group):
                leaves += group  # nothing more to share below this point
                continue
            n = 1  # extend over the longest run of pieces the whole group shares, keeping a piece for each prompt
            while all(len(r) > n + 1 for _, r in group) and all(r[n] == group[0][1][n] for _, r in group):
                n += 1
            walk(lm.extend(prefix, [t for piece in group[0][1][:n] for t in piece]), [(k, r[n:]) for k, r in group])
        if leaves:
            gens = lm.generate_ids(
                [[t for piece in r for t in piece] for _, r in leaves],
                max_new_tokens=max_new_tokens,
                stop=stop,
                prefix=prefix,
                batch_size=batch_size,
                constraint=constraint,
            )
            for (key, _), g in zip(leaves, gens, strict=True):
                out[key] = g
            if progress is not None:
                progress(len(leaves))

    walk(None, [(i, list(p)) for i, p in enumerate(prompts)])
    return out  # type: ignore[return-value]


def reference_generate(gen: InContextGenerator, prompt: list[tuple[int, ...]]) -> Generation:
    """One prompt per call, batch 1, nothing shared (the plain way, to measure against)."""
    t = gen.template
    return gen.lm.generate_ids(
        [[i for piece in prompt for i in piece]], max_new_tokens=t.max_new_tokens, stop=t.stops, batch_size=1
    )[0]
