"""`SeedModel`: a SEED checkpoint (the tokenizer networks, and its SEED-LLM) with the models it reads, saved and
loaded like every v2l model.

    from v2l.seed import SeedModel
    seed = SeedModel.from_pretrained("seed-cpu")         # the shipped checkpoint
    seed.encode(images)                                  # (B, 32) codes
    seed.reconstruct(images)                             # images drawn from their codes alone
    seed.caption(images)                                 # SEED-LLM: one caption per image
    seed.generate(["a goldfish"])                        # SEED-LLM: codes from text, drawn

A checkpoint folder holds `seed_config.json` (the settings, the VL model and V2L tokenizer it was built on, the
training records, code usage), `seed.safetensors` (float16) and `llm/` (the SEED-LLM adapter, `v2l.seed.tune_llm`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import ModelNotFoundError, V2LError
from ..files import json_field, read_json, read_safetensors
from ..paths import atomic_path
from .config import SeedConfig
from .network import SeedNet

SHIPPED = Path(__file__).resolve().parent.parent / "resources" / "seed"
DEFAULT_SEED = "seed-cpu"
CONFIG, WEIGHTS, LLM = "seed_config.json", "seed.safetensors", "llm"
SUBSTITUTIONS = (
    "image tower: the VL model's feature map (EfficientNet-Lite0 under conse), not EVA-CLIP ViT-G",
    "text tower of the contrastive loss: the VL model's (all-MiniLM-L6-v2 under conse), not BLIP-2's",
    "generator: the V2L tokenizer's decoder (its 16×16 local features regressed), not Stable Diffusion",
    "LLM: SmolLM2-135M, not OPT-2.7B",
)


def seed_folder(name: str | Path) -> Path:
    """A shipped SEED checkpoint's name (`seed-cpu`) or a folder; a V2L tokenizer folder is refused in one sentence."""
    shipped = SHIPPED / str(name)
    folder = shipped if "/" not in str(name) and (shipped / CONFIG).is_file() else Path(name).expanduser()
    if (folder / CONFIG).is_file():
        return folder
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        raise V2LError(f"{folder} is a V2L tokenizer checkpoint, not a SEED checkpoint: use it with v2l tokenize.")
    names = ", ".join(sorted(p.name for p in SHIPPED.iterdir() if p.is_dir())) if SHIPPED.is_dir() else "none"
    raise ModelNotFoundError(
        f"--seed {name}: no SEED checkpoint there (shipped: {names}); train one with `v2l train --model seed`."
    )


def is_seed_folder(folder: str | Path) -> bool:
    return (Path(folder) / CONFIG).is_file()


class SeedModel:
    def __init__(self, net: SeedNet, vl, tok, meta: dict, folder: Path | None = None, llm_name: str | None = None):
        self.net, self.vl, self.tok, self.meta, self.folder = net.eval(), vl, tok, meta, folder
        self._llm, self._llm_name = None, llm_name

    @classmethod
    def from_pretrained(cls, name: str | Path = DEFAULT_SEED, llm: str | None = None, progress: bool = False):
        """The checkpoint; its VL model and V2L tokenizer load now, its SEED-LLM on first use (`llm` overrides the
        base LLM's name, which must be the same model)."""
        from ..backbones.vision_language import load_vl
        from ..tokenizer import ImageTokenizer
        from ..tuning.data import tokenizer_fingerprint

        folder = seed_folder(name)
        fix = "train the checkpoint again with `v2l train --model seed`"
        meta = read_json(folder / CONFIG, fix=fix)
        for key, kind in (("config", dict), ("shape", dict), ("vl", str), ("tokenizer", dict)):
            json_field(meta, key, kind, folder / CONFIG, fix=fix)
        try:
            cfg = SeedConfig(**meta["config"])
            net = SeedNet(cfg, **{k: int(v) for k, v in meta["shape"].items()})
        except (TypeError, ValueError) as e:
            raise V2LError(f"{folder / CONFIG} has a wrong config or shape field ({e}): {fix}.") from e
        state = read_safetensors(folder / WEIGHTS, fix=fix)
        try:
            net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        except RuntimeError as e:
            raise V2LError(f"{folder / WEIGHTS} does not match its seed_config.json: {fix}.") from e
        vl = load_vl(meta["vl"])
        tok = ImageTokenizer.from_pretrained(meta["tokenizer"].get("name", "cpu"), vl=vl, progress=progress)
        want = meta["tokenizer"].get("fingerprint")
        if want and want != tokenizer_fingerprint(tok):
            raise V2LError(
                f"{folder} was trained on another V2L tokenizer than {meta['tokenizer'].get('name')}: "
                "pass the tokenizer it names, or train it again."
            )
        return cls(net, vl, tok, meta, folder, llm)

    @property
    def llm(self):
        if self._llm is None:
            from .tune_llm import load_seed_llm

            if self.folder is None or not (self.folder / LLM).is_dir():
                raise ModelNotFoundError(
                    f"{self.folder} has no SEED-LLM (llm/): train stage llm of `v2l train --model seed`."
                )
            self._llm = load_seed_llm(self.folder / LLM, self.net.config.queries, self._llm_name)
        return self._llm

    def save_pretrained(self, folder: str | Path, llm_folder: Path | None = None) -> Path:
        """The networks in float16 and `seed_config.json`, plus `llm_folder` copied to `llm/` (atomically)."""
        import shutil

        from safetensors.torch import save_file

        folder = Path(folder)
        with atomic_path(folder, replace=True) as tmp:
            tmp.mkdir(parents=True)
            state = {
                k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in self.net.state_dict().items()
            }
            save_file(state, str(tmp / WEIGHTS))
            (tmp / CONFIG).write_text(json.dumps(self.meta, indent=1, default=str) + "\n")
            if llm_folder is not None:
                shutil.copytree(llm_folder, tmp / LLM)
        return folder

    # --- the tokenizer ---
    @torch.inference_mode()
    def features(self, images: Sequence) -> torch.Tensor:
        return self.vl.feature_map(list(images))

    @torch.inference_mode()
    def encode(self, images: Sequence, features: torch.Tensor | None = None) -> torch.Tensor:
        """(B, queries) codes of PIL images."""
        return self.net.encode(self.features(images) if features is None else features.float())

    @torch.inference_mode()
    def causal_vectors(self, features: torch.Tensor) -> torch.Tensor:
        """Unit vectors in the VL text space from the causal embeddings (SEED Table 1's "causal embedding" row)."""
        return self.net.qformer.embed(self.net.qformer(features.float()))

    @torch.inference_mode()
    def code_vectors(self, codes: torch.Tensor) -> torch.Tensor:
        """… and from the embeddings reconstructed from codes alone (Table 1's "causal code" row)."""
        return self.net.qformer.embed(self.net.from_codes(codes)[0])

    @torch.inference_mode()
    def draw(self, codes: torch.Tensor, batch_size: int = 32) -> list:
        """Images from codes alone: the Reverse Q-Former's decoder input, with the global words nearest to the
        reconstructed embedding's text-space vector, through the V2L decoder."""
        from ..tokenizer.image_tokenizer import to_images

        h, out = self.tok.config.latent_size, []
        for s in range(0, len(codes), batch_size):
            recon, z = self.net.from_codes(codes[s : s + batch_size])
            gids = self.tok.net.global_quantizer(self.net.qformer.embed(recon))[1]
            zq = z.transpose(1, 2).reshape(len(z), -1, h, h)
            out += to_images(self.tok.net.decode(zq, gids))
        return out

    def reconstruct(self, images: Sequence) -> list:
        return self.draw(self.encode(images))

    # --- SEED-LLM ---
    def caption(self, images: Sequence, codes: torch.Tensor | None = None) -> list[str]:
        return self.llm.caption(self.encode(images) if codes is None else codes)

    def generate(
        self, texts: Sequence[str], samples: int = 1, temperature: float = 0.0, top_k: int = 0, seed: int = 0
    ) -> list[list]:
        """For each text, `samples` (image, codes) pairs: codes written by SEED-LLM, drawn."""
        prompts = [t for t in texts for _ in range(samples)]
        codes = self.llm.generate_codes(prompts, temperature, top_k, seed)
        imgs = self.draw(codes)
        return [
            [(imgs[i * samples + s], codes[i * samples + s].tolist()) for s in range(samples)]
            for i in range(len(texts))
        ]
