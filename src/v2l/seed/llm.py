"""SEED-LLM (SEED v1 §2.3): the LLM reads and writes SEED codes as new tokens, tuned with LoRA through peft.

The codes are `codebook_size` new tokens `<img_00000>`, … after the LLM's own vocabulary, wrapped in `<img>` and
`</img>` (SEED's public code adds rows to the vocabulary). They are ids, never text: the LLM's text tokenizer is left
unchanged, so no text (not even the string "<img_00001>") can encode to a code, and `SeedVocabulary` maps ids to
codes and back. The new embedding rows (tied to the head rows in SmolLM2) are trained with peft's trainable tokens
beside the LoRA layers, by the LoRA trainer's loop (`v2l.tuning.trainer.lora_loop`). Two kinds of sequences:

    image → text:  <img> c1 … c32 </img> A photo of  → " a man riding a horse."   (loss on the caption)
    text → image:  Generate an image: a man riding a horse.\\n <img>  → c1 … c32 </img>   (loss on the codes)
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from ..errors import V2LError
from ..tuning.data import IGNORE

I2T = "A photo of"
T2I = "Generate an image: {}\n"


class SeedVocabulary:
    """Ids of the new tokens: `<img>` = base, `</img>` = base + 1, code c = base + 2 + c."""

    def __init__(self, base: int, codes: int):
        self.base, self.codes = int(base), int(codes)
        self.start, self.end = self.base, self.base + 1

    @property
    def size(self) -> int:
        return self.base + 2 + self.codes

    @property
    def new_ids(self) -> list[int]:
        return list(range(self.base, self.size))

    def code_ids(self) -> range:
        return range(self.base + 2, self.size)

    def wrap(self, codes: Sequence[int]) -> list[int]:
        for c in codes:
            if not 0 <= int(c) < self.codes:
                raise V2LError(f"SEED code {c} is out of range: the codebook has {self.codes} codes.")
        return [self.start, *(self.base + 2 + int(c) for c in codes), self.end]

    def codes_of(self, ids: Sequence[int]) -> list[int]:
        """The codes of a wrapped id sequence (the ids between `<img>` and `</img>`)."""
        ids = [int(i) for i in ids]
        if not ids or ids[0] != self.start or ids[-1] != self.end:
            raise V2LError("A SEED image is <img>, its codes, then </img>: these ids are not.")
        inner = ids[1:-1]
        bad = [i for i in inner if not self.base + 2 <= i < self.size]
        if bad:
            raise V2LError(f"Id {bad[0]} between <img> and </img> is not a SEED code.")
        return [i - self.base - 2 for i in inner]

    def text(self, token_id: int) -> str:
        if token_id == self.start:
            return "<img>"
        if token_id == self.end:
            return "</img>"
        if self.base + 2 <= token_id < self.size:
            return f"<img_{token_id - self.base - 2:05d}>"
        raise V2LError(f"Id {token_id} is not a SEED token.")


def caption_text(caption: str) -> str:
    """A caption as the continuation of "A photo of": " a man riding a horse." (first letter lowered, one period; a
    leading "a photo of" is dropped, so the class sentence "a photo of a goldfish." continues as " a goldfish.")."""
    c = " ".join(caption.split()).rstrip(".")
    if c.lower().startswith(I2T.lower() + " "):
        c = c[len(I2T) + 1 :]
    return " " + c[:1].lower() + c[1:] + "."


def i2t_prompt(vocab, tokenizer, start_ids, codes) -> list[int]:
    return [*start_ids, *vocab.wrap(codes), *tokenizer(" " + I2T, add_special_tokens=False)["input_ids"]]


def t2i_prompt(vocab, tokenizer, start_ids, text: str) -> list[int]:
    return [*start_ids, *tokenizer(T2I.format(text.strip()), add_special_tokens=False)["input_ids"], vocab.start]


def i2t_sequence(vocab, tokenizer, start_ids, codes, caption: str, max_tokens: int) -> tuple[list[int], list[int]]:
    prompt = i2t_prompt(vocab, tokenizer, start_ids, codes)
    answer = tokenizer(caption_text(caption), add_special_tokens=False)["input_ids"][:max_tokens]
    answer = answer + [tokenizer.eos_token_id]
    return prompt + answer, [IGNORE] * len(prompt) + answer


def t2i_sequence(vocab, tokenizer, start_ids, codes, text: str) -> tuple[list[int], list[int]]:
    prompt = t2i_prompt(vocab, tokenizer, start_ids, text)
    answer = vocab.wrap(codes)[1:]  # the codes and </img>
    return prompt + answer, [IGNORE] * len(prompt) + answer


class PairSequences(torch.utils.data.Dataset):
    """Both directions for each (image, text) pair: `per_image` texts of each image (seeded choice)."""

    def __init__(
        self,
        vocab,
        tokenizer,
        start_ids,
        codes: torch.Tensor,
        texts: list[list[str]],
        per_image: int,
        max_tokens: int,
        seed: int = 0,
    ):
        self.items = []
        for i, ts in enumerate(texts):
            chosen = random.Random(f"v2l-seed:{seed}:{i}").sample(list(ts), min(per_image, len(ts)))
            c = codes[i].tolist()
            for t in chosen:
                self.items.append(i2t_sequence(vocab, tokenizer, start_ids, c, t, max_tokens))
                self.items.append(t2i_sequence(vocab, tokenizer, start_ids, c, " ".join(t.split())))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def extend_vocabulary(model, vocab: SeedVocabulary) -> None:
    """Add the new rows (input embedding and, when untied, the head): each starts at the mean of the old rows."""
    old = model.get_input_embeddings().weight.shape[0]
    if old != vocab.base:
        raise V2LError(f"The LLM has {old} tokens, not the {vocab.base} this SEED-LLM was built on.")
    mean = model.get_input_embeddings().weight.detach().mean(0)
    model.resize_token_embeddings(vocab.size, mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight[vocab.base :] = mean
        head = model.get_output_embeddings()
        if head is not None and head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
            head.weight[vocab.base :] = head.weight[: vocab.base].mean(0)


class OnlyIds:
    """A transformers logits processor that allows only ids in [lo, hi) (`inside`) or only ids outside it."""

    def __init__(self, lo: int, hi: int, inside: bool):
        self.lo, self.hi, self.inside = lo, hi, inside

    def __call__(self, input_ids, scores):
        mask = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
        mask[self.lo : self.hi] = True
        return scores.masked_fill(~mask if self.inside else mask, float("-inf"))


def left_pad(prompts: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), n), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), n), dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, n - len(p) :] = torch.tensor(p)
        mask[b, n - len(p) :] = 1
    return ids, mask


class SeedLLM:
    """A tuned SEED-LLM (the base LLM, the new rows and LoRA merged): captions from codes, codes from text."""

    def __init__(self, model, tokenizer, vocab: SeedVocabulary, queries: int, name: str):
        self.model, self.tokenizer, self.vocab, self.queries, self.name = model.eval(), tokenizer, vocab, queries, name
        from ..backbones.language_model import text_start_ids

        self.start_ids = text_start_ids(tokenizer)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.context = int(getattr(model.config, "max_position_embeddings", 0) or 0)

    def _generate(self, prompts: list[list[int]], new: int, processor, sample: dict | None = None) -> torch.Tensor:
        from transformers import LogitsProcessorList

        longest = max(len(p) for p in prompts) + new
        if self.context and longest > self.context:
            raise V2LError(
                f"A SEED-LLM prompt needs {longest} tokens, beyond the LLM's context of {self.context}: "
                "give a shorter text."
            )
        ids, mask = left_pad(prompts, self.pad)
        kw = {"do_sample": False, "top_k": None, "top_p": None}
        if sample:
            kw = {**kw, "do_sample": True, **sample}
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=new,
                min_new_tokens=0,
                logits_processor=LogitsProcessorList([processor]),
                pad_token_id=self.pad,
                eos_token_id=None if processor.inside else self._stops(),
                **kw,
            )
        return out[:, ids.shape[1] :]

    def _stops(self) -> list[int]:
        nl = self.tokenizer("\n", add_special_tokens=False)["input_ids"]
        return [self.tokenizer.eos_token_id, *nl[-1:]]

    def caption(self, codes: torch.Tensor, max_tokens: int = 24, batch_size: int = 16) -> list[str]:
        """One caption per row of codes (B, Q): greedy, text tokens only, cut at its first sentence."""
        from ..tasks.captioning import end_caption

        out = []
        for s in range(0, len(codes), batch_size):
            prompts = [
                i2t_prompt(self.vocab, self.tokenizer, self.start_ids, c.tolist()) for c in codes[s : s + batch_size]
            ]
            gen = self._generate(prompts, max_tokens, OnlyIds(self.vocab.base, self.vocab.size, inside=False))
            for row in gen.tolist():
                text = self.tokenizer.decode([t for t in row if t != self.pad], skip_special_tokens=True)
                out.append(end_caption((I2T + text).strip(), (".", "\n")))
        return out

    def generate_codes(
        self, texts: Sequence[str], temperature: float = 0.0, top_k: int = 0, seed: int = 0, batch_size: int = 16
    ) -> torch.Tensor:
        """(len(texts), Q) codes written by the LLM after "Generate an image: TEXT\\n<img>", batched across prompts
        (greedy when `temperature` is 0)."""
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise V2LError("seed generate: a prompt is empty: give the text to draw, such as 'a goldfish'.")
        rows = []
        torch.manual_seed(seed)
        sample = (
            {"temperature": float(temperature), **({"top_k": int(top_k)} if top_k else {})} if temperature else None
        )
        lo, hi = self.vocab.base + 2, self.vocab.size
        for s in range(0, len(texts), batch_size):
            prompts = [t2i_prompt(self.vocab, self.tokenizer, self.start_ids, t) for t in texts[s : s + batch_size]]
            rows.append(self._generate(prompts, self.queries, OnlyIds(lo, hi, inside=True), sample) - lo)
        return torch.cat(rows)
