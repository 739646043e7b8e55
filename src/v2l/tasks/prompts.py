"""Editable prompt templates for in-context classification (paper §3.3, Fig. 3).

The paper's prompt (§3.3, "N-Way K-Shot Image Classification"):

    For each of the following input-output pairs, output is one of ["French bulldog", "Rock beauty"]. Input: T_g,
    output: French bulldog. Input: T_g, output: Rock beauty. Input: T_g^test, output:

Without task induction the first sentence is left out. A prompt is assembled from token-id *pieces* (instruction,
each sample's head, its label, the label's end, the query's head), each tokenized on its own, so the label tokens in
the examples are exactly the candidate tokens scored or generated after the query, and prompts that share a start
share their token ids (their KV cache is reused; see `fewshot.py`). The decoded prompt equals the template's text.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import ConfigError
from ..registry import new_registry


@dataclass(frozen=True)
class FewShotTemplate:
    """The text of an in-context classification prompt. `{names}`: the class list; `{words}`: an image's words."""

    instruction: str = "For each of the following input-output pairs, output is one of [{names}]."
    name_format: str = '"{}"'  # how each class name appears in the instruction's list
    name_separator: str = ", "
    sample: str = "Input: {words}, output:"  # a support example's head; its label follows
    label_prefix: str = " "  # between the head and the label
    label_end: str = "."  # closes a label; the candidates are scored and generated with it
    separator: str = " "  # before every sample and before the query (after the instruction too)
    query: str = "Input: {words}, output:"
    word_separator: str = ", "  # how an image's K_g words are joined
    stops: tuple[str, ...] = (".", "\n")  # a generated answer ends at the first of these
    content_free: str = "N/A"  # the query's words for contextual calibration (Zhao et al. 2021)

    def names(self, classes: list[str]) -> str:
        return self.name_separator.join(self.name_format.format(c) for c in classes)

    def words(self, words: list[str]) -> str:
        return self.word_separator.join(w.strip() for w in words)

    def render(
        self, classes: list[str], samples: list[tuple[list[str], str]], query: list[str] | str, induction: bool = True
    ) -> str:
        """The prompt as text (for reading and golden tests; the LLM gets the same text as token pieces)."""
        return "".join(text for _, text in self.pieces(classes, samples, query, induction))

    def pieces(
        self, classes: list[str], samples: list[tuple[list[str], str]], query: list[str] | str, induction: bool = True
    ) -> list[tuple[str, str]]:
        """(kind, text) pieces: kinds are instruction, head, label, end and query."""
        out: list[tuple[str, str]] = []
        if induction:
            out.append(("instruction", self.instruction.format(names=self.names(classes))))
        for words, label in samples:
            sep = self.separator if out else ""
            out += [
                ("head", sep + self.sample.format(words=self.words(words))),
                ("label", self.label_prefix + label),
                ("end", self.label_end),
            ]
        q = query if isinstance(query, str) else self.words(query)
        out.append(("query", (self.separator if out else "") + self.query.format(words=q)))
        return out

    def to_json(self) -> dict:
        d = asdict(self)
        d["stops"] = list(self.stops)
        return d

    @classmethod
    def from_json(cls, d: dict) -> FewShotTemplate:
        from ..files import typed_fields

        t = cls(**typed_fields(d, cls, "Prompt template"))
        t.check()
        return t

    def check(self) -> None:
        for field, keys in (("instruction", ("names",)), ("sample", ("words",)), ("query", ("words",))):
            text = getattr(self, field)
            try:
                text.format(**{k: "x" for k in keys})
            except (KeyError, IndexError, ValueError) as e:
                raise ConfigError(
                    f"Prompt template field {field!r} ({text!r}) is not a valid template: only "
                    f"{{{', '.join(keys)}}} may appear in braces ({e})."
                ) from None
            if "{words}" not in text and field != "instruction":
                raise ConfigError(f"Prompt template field {field!r} ({text!r}) must contain {{words}}.")
        if not self.label_end:
            raise ConfigError("Prompt template field 'label_end' is empty: a label needs an end (e.g. '.').")


PROMPT_TEMPLATES = new_registry("prompt-templates", "prompt template", "--template")
PROMPT_TEMPLATES.add("paper", FewShotTemplate(), "the paper's prompt, §3.3 (one line)")
PROMPT_TEMPLATES.add(
    "lines", replace(FewShotTemplate(), separator="\n"), "the paper's prompt with one example per line"
)
PROMPT_TEMPLATES.add(
    "official",
    FewShotTemplate(
        instruction="For each of the following input-output pairs, output is one of [{names}].",
        sample="###\nInput: < {words} >\nOutput:",
        label_end="\n",
        separator="\n",
        query="###\nInput: < {words} >\nOutput:",
        word_separator=" ",
        stops=("\n",),
    ),
    "the official code's layout (### blocks, < words >, one answer per line)",
)


def load_template(name_or_path: str) -> FewShotTemplate:
    """A registered template by name, or a JSON file with some of `FewShotTemplate`'s fields (the rest default)."""
    if name_or_path in PROMPT_TEMPLATES:
        return PROMPT_TEMPLATES[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        return FewShotTemplate.from_json(
            read_template_json(
                path, f"pass one of {', '.join(PROMPT_TEMPLATES.names())} or a JSON file of template fields"
            )
        )
    return PROMPT_TEMPLATES[name_or_path]  # raises UnknownNameError listing the names


def read_template_json(path: Path, hint: str = "pass a JSON file of template fields") -> dict:
    """The JSON object of template fields in `path`; a missing or malformed file gets one sentence."""
    if not path.is_file():
        raise ConfigError(f"--template {path}: no such file; {hint}.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--template {path} is not valid JSON ({e}): fix the file.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--template {path} must hold a JSON object of template fields.")
    return data
