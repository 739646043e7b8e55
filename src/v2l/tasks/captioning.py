"""Image captioning in context by a frozen LLM (paper §3.3 "Image Caption", §4.2, Fig. 5; SPAE §4).

The prompt is the paper's (`incontext.CAPTION_PAPER`): the instruction, 10 in-context pairs "Input: T_g, output: C"
from the training pool, then "Input: T_g^test, output:"; the LLM generates greedily until ".". Each pool image
contributes one of its five human captions (seeded per image). The pairs are chosen as `pool.choose_samples` says
(`random`, the paper's, by default).

Metrics (`evaluate_captions`) are `pycocoevalcap`'s — BLEU-4, METEOR, ROUGE-L, CIDEr against all five references,
after its PTB tokenizer — the package every captioning paper reports with. Its tokenizer and METEOR run Java; without
a Java runtime on the PATH, METEOR is skipped (the result says so and why) and the tokenizer is replaced by a Python
rule that does what the PTB tokenizer does to captions (lower-case, split off punctuation, drop it).
"""

from __future__ import annotations

import random
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import V2LError
from .coco import CocoImage
from .incontext import CAPTION_PAPER, GenerationTemplate, InContextGenerator
from .pool import WordVectors, choose_samples, word_vectors


@dataclass
class CaptionResult:
    image: str
    caption: str
    words: list[str]
    samples: list[str]  # keys of the in-context pool images, in prompt order

    def to_json(self) -> dict:
        return {"image": self.image, "caption": self.caption, "words": self.words, "samples": self.samples}


def end_caption(text: str, stops: Sequence[str] = (".", "\n"), ngram: int = 3) -> str:
    """A generated caption cut to one sentence: at its first stop string (end of sentence or line), and before the
    first word `ngram`-gram that repeats one already in it (case and punctuation ignored), so a small LLM that loops
    ("A man in a car, a man in a car, ...") gives "A man in a car". Trailing separators are dropped."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    text = text[:cut]
    spans = [(m.start(), m.end(), re.sub(r"\W+", "", m.group()).lower()) for m in re.finditer(r"\S+", text)]
    seen: set[tuple[str, ...]] = set()
    for i in range(len(spans) - ngram + 1):
        gram = tuple(w for _, _, w in spans[i : i + ngram])
        if gram in seen:  # the text repeats itself from word i on: keep what came before
            text = text[: spans[i - 1][1]]
            break
        seen.add(gram)
    return text.strip().rstrip(",;:-").strip()


def sample_caption(text: str) -> str:
    """A caption as an in-context answer: one line, no final "." (the template's separator adds it)."""
    return re.sub(r"\s+", " ", text).strip().rstrip(".").strip()


class Captioner:
    """Captions images in context from a pool of captioned images (see the module docstring)."""

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
        template: GenerationTemplate = CAPTION_PAPER,
        batch_size: int = 64,
    ):
        template.check({"words", "answer"}, {"words"})
        self.vl, self.codebook, self.kg, self.shots, self.pairs, self.seed = vl, codebook, kg, shots, pairs, seed
        self.pool = list(pool)
        if not self.pool and shots:
            raise V2LError("The captioning pool is empty: pass captioned images (coco-captions train).")
        self.pool_words = word_vectors([p.image for p in self.pool], vl, codebook, kg)
        self.answers = [
            sample_caption(random.Random(f"v2l-caption:{seed}:{p.key}").choice(p.captions)) for p in self.pool
        ]
        self.gen = InContextGenerator(lm, template, batch_size=batch_size)

    def prompts(self, queries: WordVectors, exclude: Sequence[int | None] | None = None):
        chosen = choose_samples(self.pairs, self.pool_words, queries, self.shots, self.seed, exclude)
        prompts = []
        for q, idx in enumerate(chosen):
            if not queries.words[q]:
                raise V2LError(f"Query image {q} has no words: a caption needs at least one global word (--kg ≥ 1).")
            samples = [{"words": self.pool_words.words[i], "answer": self.answers[i]} for i in idx]
            prompts.append(self.gen.prompt(samples, {"words": queries.words[q]}))
        return prompts, chosen

    def caption(self, images: Sequence, names: Sequence[str] | None = None, progress=None) -> list[CaptionResult]:
        """Captions of PIL images (`names` label the results; default their index)."""
        names = list(names) if names is not None else [str(i) for i in range(len(images))]
        words = word_vectors(list(images), self.vl, self.codebook, self.kg)
        prompts, chosen = self.prompts(words)
        texts = self.answer(prompts, progress)
        return [
            CaptionResult(n, text, [w.strip() for w in words.words[i]], [self.pool[j].key for j in chosen[i]])
            for i, (n, text) in enumerate(zip(names, texts, strict=True))
        ]

    def answer(self, prompts, progress=None) -> list[str]:
        """The caption of each prompt: generated, then ended at its first sentence with no repeated 3-gram
        (`end_caption`). The one path from prompts to captions, for the verb and the bench stage alike."""
        if not prompts:
            return []
        return [end_caption(g.text, self.gen.template.stops) for g in self.gen.generate(prompts, progress)]


def java_available() -> bool:
    return shutil.which("java") is not None


_PTB_PUNCT = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"}


def _python_ptb(text: str) -> str:
    """What pycocoevalcap's PTB tokenizer does to a caption, without Java: lower-case, split off punctuation and
    clitics, drop punctuation tokens."""
    t = text.lower().replace("\n", " ")
    t = re.sub(r"([.,!?;:()\[\]{}\"])", r" \1 ", t)
    t = re.sub(r"(\w)('s|'re|'ve|'ll|'d|n't|'m)\b", r"\1 \2", t)
    return " ".join(w for w in t.split() if w not in _PTB_PUNCT and w not in '()[]{}"')


def evaluate_captions(predictions: dict[str, str], references: dict[str, list[str]]) -> dict:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr (pycocoevalcap) of one caption per image against its references."""
    from ..errors import require

    require("pycocoevalcap", "Caption metrics (BLEU, METEOR, ROUGE-L, CIDEr)")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    keys = sorted(predictions)
    missing = [k for k in keys if not references.get(k)]
    if missing:
        raise V2LError(f"No reference captions for {missing[:3]}: every predicted image needs references.")
    java = java_available()
    gts = {k: [{"caption": c} for c in references[k]] for k in keys}
    res = {k: [{"caption": predictions[k]}] for k in keys}
    if java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tok = PTBTokenizer()
        gts_t, res_t = tok.tokenize(gts), tok.tokenize(res)
    else:
        gts_t = {k: [_python_ptb(c["caption"]) for c in v] for k, v in gts.items()}
        res_t = {k: [_python_ptb(c["caption"]) for c in v] for k, v in res.items()}
    out: dict = {
        "images": len(keys),
        "tokenizer": "PTB (Stanford CoreNLP, Java)" if java else "Python PTB-like rule (no Java runtime)",
    }
    bleu, _ = Bleu(4).compute_score(gts_t, res_t, verbose=0)
    out.update({f"bleu{i + 1}": float(b) for i, b in enumerate(bleu)})
    out["rouge_l"] = float(Rouge().compute_score(gts_t, res_t)[0])
    out["cider"] = float(Cider().compute_score(gts_t, res_t)[0])
    if java:
        from pycocoevalcap.meteor.meteor import Meteor

        m = Meteor()  # a Java subprocess, ended when the object goes
        out["meteor"] = float(m.compute_score(gts_t, res_t)[0])
        del m
    else:
        out["meteor"] = None
        out["meteor_skipped"] = "no Java runtime on the PATH: METEOR runs Java (install e.g. openjdk-17-jre-headless)"
    return out


def caption_images(
    images: Sequence[str],
    lm=None,
    vl=None,
    codebook=None,
    pool: Sequence[CocoImage] | None = None,
    kg: int = 21,
    shots: int = 10,
    pairs: str = "random",
    seed: int = 0,
    template: GenerationTemplate = CAPTION_PAPER,
    data_root=None,
    progress: bool = False,
) -> list[CaptionResult]:
    """Caption image files in context; the pool defaults to coco-captions train under the data root."""
    from tqdm.auto import tqdm

    from .classify import decode_images
    from .coco import load_coco
    from .models import load_task_models

    if not images:
        raise V2LError("No images to caption: pass one or more image files.")
    decoded = decode_images(images, "Image")  # every input is checked before any model work
    lm, vl, codebook = load_task_models(lm, vl, codebook)
    pool = load_coco("train", root=data_root) if pool is None else pool
    cap = Captioner(lm, vl, codebook, pool, kg=kg, shots=shots, pairs=pairs, seed=seed, template=template)
    with tqdm(total=len(decoded), desc="caption", disable=not progress, unit="prompt") as bar:
        return cap.caption(decoded, [str(p) for p in images], progress=bar.update)
