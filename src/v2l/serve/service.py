"""The operations behind `v2l serve`: one implementation shared by the page and the JSON API, built on the same
library calls as the CLI verbs (no third copy of any task). Models load once, on first use, and are shared by every
request; a lock runs one model computation at a time (the request gate in `app` bounds how many wait).

Every operation takes image files already written by the app (so the CLI's checks run unchanged: decoding, the
decompression-bomb guard, the aspect-ratio limit) and returns a JSON-ready dict; images are PNG data URLs.
"""

from __future__ import annotations

import base64
import io
import threading
from pathlib import Path

from ..errors import V2LError

MAX_QUESTION = 1000  # characters


def data_url(img) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class Service:
    """Models (loaded on first use; tests pass tiny ones in `models`) and the operations."""

    def __init__(
        self,
        tokenizer: str = "cpu",
        llm: str | None = None,
        vl: str | None = None,
        data_root=None,
        models: dict | None = None,
        progress: bool = False,
    ):
        from ..backbones.language_model import DEFAULT_LLM

        self.tokenizer_name, self.llm_name, self.vl_name = tokenizer, llm or DEFAULT_LLM, vl
        self.data_root, self.progress = data_root, progress
        self.models = dict(models or {})
        self.lock = threading.Lock()
        self._load_lock = threading.RLock()  # a model may need another (the captioner its pool)

    # ---- models ----------------------------------------------------------------------------------------------------
    def _get(self, key: str, make):
        with self._load_lock:
            if key not in self.models:
                self.models[key] = make()
            return self.models[key]

    def tok(self):
        from ..backbones import load_vl
        from ..tokenizer import ImageTokenizer

        return self._get(
            "tokenizer",
            lambda: ImageTokenizer.from_pretrained(
                self.tokenizer_name, vl=load_vl(self.vl_name) if self.vl_name else None, progress=self.progress
            ),
        )

    def lm(self):
        from ..backbones import LanguageModel

        return self._get("lm", lambda: LanguageModel.load(self.llm_name, progress=self.progress))

    def pool(self):
        from ..tasks.coco import load_coco

        return self._get("pool", lambda: load_coco("train", root=self.data_root))

    def seed(self):
        from ..seed import SeedModel

        return self._get("seed", lambda: SeedModel.from_pretrained("seed-cpu"))

    def describe(self) -> dict:
        return {"tokenizer": str(self.tokenizer_name), "llm": self.llm_name, "loaded": sorted(self.models)}

    # ---- operations ------------------------------------------------------------------------------------------------
    def tokenize(self, image: Path) -> dict:
        from ..data.images import load_image

        with self.lock:
            t = self.tok().tokenize([load_image(image)])[0]
        return {
            "global_words": t.global_words,
            "global_ids": t.global_ids,
            "local_ids": t.local_ids,
            "local_tokens": t.local_tokens,
        }

    def words(self, image: Path, top: int = 10) -> dict:
        from ..data.images import load_image
        from ..tokenizer.words import image_words

        tok = self.tok()
        with self.lock:
            w = image_words([load_image(image)], top=top, codebook=tok.codebook, vl=tok.vl)[0]
        return {
            "words": [{"word": a, "similarity": round(float(b), 4)} for a, b in zip(w.words, w.scores, strict=True)]
        }

    def reconstruct(self, image: Path) -> dict:
        from ..data.images import center_crop_resize, load_image
        from ..eval.metrics import psnr
        from ..tokenizer.image_tokenizer import to_tensor

        tok = self.tok()
        img = load_image(image)
        with self.lock:
            rec = tok.reconstruct([img])[0]
        r = tok.config.resolution
        value = float(psnr(to_tensor([rec], r), to_tensor([img], r))[0])
        return {
            "original": data_url(center_crop_resize(img, r)),
            "reconstruction": data_url(rec),
            "psnr": round(value, 2),
        }

    def classify(self, image: Path, support: dict[str, list[Path]], rule: str = "rank") -> dict:
        from ..tasks.classify import classify_images

        if len(support) < 2:
            raise V2LError("Classify needs at least two classes, each with one or more example images.")
        for label, files in support.items():
            if not files:
                raise V2LError(f"The class {label!r} has no example images: add one or more, or remove the class.")
        tok = self.tok()
        with self.lock:
            r = classify_images([image], support, lm=self.lm(), vl=tok.vl, codebook=tok.codebook, rule=rule)[0]
        return {
            "answer": r.prediction,
            "by_rule": r.by_rule,
            "rule": rule,
            "scores": {k: round(float(v), 4) for k, v in r.scores.items()},
            "words": r.words,
        }

    def heldout_episode(self, folder: Path, shots: int = 1) -> dict[str, list[Path]]:
        """The bundled example classes: the first 5 of v2l's 40 held-out Tiny-ImageNet classes (never trained on),
        `shots` train images each, named by their class names (written into `folder`)."""
        from ..data import WebDatasetShards, tiny_imagenet_split
        from ..seed.data import class_names
        from ..tuning.data import class_indices

        wnids = tiny_imagenet_split()["heldout"][:5]
        ds = WebDatasetShards("tiny-imagenet-200", "train", root=self.data_root)
        names = class_names(self.data_root)
        out: dict[str, list[Path]] = {}
        for i in class_indices(ds, wnids, shots):
            label = names[ds.meta(i)["wnid"]]
            path = folder / f"episode-{i}.png"
            ds[i].image.save(path)
            out.setdefault(label, []).append(path)
        return out

    def restore(self, image: Path, ratio: float = 0.3, seed: int = 0) -> dict:
        """Masked restoration by the LoRA-tuned LLM (paper §4.3, Fig. 8; the shipped adapter `v2l-cpu`)."""
        from ..backbones import LanguageModel
        from ..tuning.restore import restore_images

        if not 0 < ratio < 1:
            raise V2LError(f"mask {ratio!r} is invalid: use a fraction between 0 and 1, such as 0.3.")
        tok = self.tok()
        tuned = self._get("tuned_lm", lambda: LanguageModel.load(self.llm_name, progress=False, adapter="v2l-cpu"))
        with self.lock:
            r = restore_images(tok, tuned, [str(image)], ratio, seed)[0]
        return {
            "original": data_url(r.original),
            "masked": data_url(r.masked),
            "restored": data_url(r.restored),
            "ratio": ratio,
            "masked_tokens_exact": round(float(r.accuracy), 4),
        }

    def caption(self, image: Path) -> dict:
        from ..data.images import load_image
        from ..tasks.captioning import Captioner
        from ..tasks.pool import word_vectors

        tok, lm = self.tok(), self.lm()
        with self.lock:
            cap = self._get("captioner", lambda: Captioner(lm, tok.vl, tok.codebook, self.pool()))
            words = word_vectors([load_image(image)], tok.vl, tok.codebook, cap.kg)
            prompts, _ = cap.prompts(words)
            text = cap.answer(prompts)[0]
        return {"caption": text, "words": [w.strip() for w in words.words[0]], "prompt": _prompt_text(lm, prompts[0])}

    def vqa(self, image: Path, question: str) -> dict:
        from ..data.images import load_image
        from ..tasks.pool import word_vectors
        from ..tasks.questions import normalize_question
        from ..tasks.vqa import VisualQA

        if len(question) > MAX_QUESTION:
            raise V2LError(f"The question is {len(question):,} characters long: ask in at most {MAX_QUESTION:,}.")
        normalize_question(question)
        tok, lm = self.tok(), self.lm()
        with self.lock:
            vqa = self._get("vqa", lambda: VisualQA(lm, tok.vl, tok.codebook, self.pool()))
            words = word_vectors([load_image(image)], tok.vl, tok.codebook, vqa.kg)
            r = vqa.answer([None], [question], ["image"], words=words)[0]
            prompts, _ = vqa.prompts(words, [question], False)
        return {"answer": r.answer, "raw": r.raw, "question": question, "prompt": _prompt_text(lm, prompts[0])}

    def denoise(self, image: Path, task: str) -> dict:
        from ..data.images import center_crop_resize, load_image
        from ..tasks.denoise import DenoiseConfig, Denoiser, check_task

        check_task(task)
        tok = self.tok()
        with self.lock:
            r = Denoiser(tok, self.lm(), DenoiseConfig()).restore([str(image)], task)[0]
        original = center_crop_resize(load_image(image), tok.config.resolution)
        return {
            "task": task,
            "original": data_url(original),
            "corrupted": data_url(r.corrupted),
            "restored": data_url(r.restored),
            "predicted": r.predicted,
        }

    def seed_caption(self, image: Path) -> dict:
        from ..data.images import load_image

        with self.lock:
            model = self.seed()
            codes = model.encode([load_image(image)])
            text = model.caption([], codes)[0]
        return {"caption": text, "codes": codes[0].tolist()}


def _prompt_text(lm, prompt) -> str:
    return lm.decode([t for piece in prompt for t in piece])
