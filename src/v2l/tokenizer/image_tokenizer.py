"""The user-facing V2L tokenizer: images ⇄ LLM tokens (global words + a grid of local tokens).

`ImageTokenizer` bundles the trained network (`v2l.tokenizer.network.V2LTokenizer`), the frozen VL model (global
encoder) and the codebook artefact. Resize policy: an image of any size is resized so its short side equals the preset
resolution (bicubic) and centre-cropped to a square — the same policy as the VL models — so non-square images lose
their borders.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..codebooks import Codebook, check_manifest
from ..data.images import center_crop_resize, load_image
from ..errors import ManifestMismatchError, ModelNotFoundError, V2LError
from ..files import read_safetensors
from ..paths import atomic_path
from .config import TokenizerConfig
from .network import V2LTokenizer
from .quantizers import check_search

SHIPPED = Path(__file__).resolve().parent.parent / "resources" / "checkpoints"


@dataclass
class TokenizedImage:
    global_ids: list[int]  # rows of the global codebook
    global_words: list[str]
    local_ids: list[list[int]]  # h × w LLM token ids
    local_tokens: list[list[str]]  # their display text

    def to_json(self) -> dict:
        return self.__dict__


def to_tensor(images: Sequence, resolution: int) -> torch.Tensor:
    """Decode, resize (short side) + centre-crop to `resolution`, scale to [−1, 1]: (B, 3, R, R)."""
    arrs = [np.asarray(center_crop_resize(load_image(im), resolution), dtype=np.float32) for im in images]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2) / 127.5 - 1.0


def to_images(x: torch.Tensor) -> list[Image.Image]:
    arr = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]


def local_exclusion(vocab_kinds: list[str]) -> torch.Tensor:
    """Local tokens never chosen: special/control tokens (an LLM prompt must not contain them)."""
    return torch.tensor([k == "special" for k in vocab_kinds], dtype=torch.bool)


class ImageTokenizer:
    def __init__(self, net: V2LTokenizer, codebook: Codebook, vl, display: list[str] | None = None):
        self.net, self.codebook, self.vl = net.eval(), codebook, vl
        self.display = display
        self.config: TokenizerConfig = net.config

    # ---- persistence ---------------------------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path, dtype: torch.dtype = torch.float32) -> Path:
        return save_tokenizer_folder(folder, self.net, self.codebook, dtype, codebook_folder=self.codebook.folder)

    @classmethod
    def from_pretrained(
        cls,
        name: str | Path = "cpu",
        codebook: Codebook | str | Path | None = None,
        vl=None,
        progress: bool = True,
        search: str = "exact",
        lm=None,
        device: str | None = None,
    ) -> ImageTokenizer:
        """A folder, a hub id, or `cpu` (the checkpoint shipped with v2l). The codebook manifest is checked.

        `search="hnsw"` finds local tokens with an approximate faiss index instead of the exact search (faster on a
        large codebook; recall measured in docs/results.md). `lm`: the codebook's LLM if already loaded (a model with
        the LLM's own embeddings as codebook, VQ-GAN+LLM, needs it; it is loaded otherwise). `device`: where the
        network runs (default `v2l.runtime.current()`); it stays float32 (a 2–40M-parameter network; the frozen VL
        model and LLM take `--dtype`)."""
        from ..runtime import pick

        check_search(search)
        folder = resolve_checkpoint(name)
        meta, cfg, ident = read_checkpoint_config(folder)
        from ..backbones import load_vl
        from ..backbones.vision_language import vl_spec
        from ..codebooks import ensure_local_embeddings, find_codebook

        vl = vl or load_vl(vl_spec(ident["vl"]))  # the VL model (and its options) the checkpoint was trained with
        chosen = codebook is not None  # by the caller, not found here
        hint = meta.get("codebook_folder")
        if codebook is None and hint and (Path(hint) / "manifest.json").is_file():
            codebook = hint  # where the training run found it (checked below like any other)
        if not isinstance(codebook, Codebook):
            path = codebook or find_codebook(ident["llm"]["name"], vl=vl, progress=progress, key=ident["key"])
            codebook = Codebook.load(path, vl=vl)
        want = ident.get("global_sha256")  # checkpoints saved before it was recorded have none
        if _codebook_identity(codebook.manifest) != {k: v for k, v in ident.items() if k != "global_sha256"}:
            raise ManifestMismatchError(
                f"Checkpoint {folder} was trained with another codebook "
                f"({ident['key']}) than {codebook.folder}: pass the matching --codebook."
            )
        if want and codebook.global_sha256 != want:
            codebook = _trained_global_list(folder, ident, codebook, vl, chosen, progress)
        check_manifest(codebook.manifest, vl=vl, where=str(codebook.folder))
        codebook = ensure_local_embeddings(codebook, vl, progress=progress)
        from ..models import build_network

        exclude, display = local_tokens_for(cfg, codebook)
        net = build_network(
            cfg,
            local_codebook_for(cfg, codebook, lm=lm),
            codebook.global_embeddings,
            exclude=exclude,
            token_text=codebook.local_embeddings,
        )
        sd = read_safetensors(folder / "model.safetensors", fix=_DAMAGED)
        try:
            net.load_state_dict({k: v.float() for k, v in sd.items()})
        except RuntimeError as e:
            raise ModelNotFoundError(
                f"{folder}/model.safetensors does not hold a {cfg.model!r} model of its "
                "config.json (missing or unexpected weights): the folder is damaged or was "
                "edited; save it again."
            ) from e
        if net.local_quantizer is not None:
            net.local_quantizer.use_search(search)
        elif search != "exact":
            raise V2LError(f"--search {search}: a {cfg.model!r} model searches its pyramid exactly; use exact.")
        return cls(net.to(pick(device)[0]), codebook, vl, display=display)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    # ---- the verbs ------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def global_ids(self, images: Sequence) -> torch.Tensor:
        emb = self.vl.encode_image(list(images))
        return self.net.global_quantizer(emb.to(self.device))[1].cpu()

    @torch.inference_mode()
    def tokenize(self, images: Sequence, batch_size: int = 32) -> list[TokenizedImage]:
        out = []
        for s in range(0, len(images), batch_size):
            chunk = list(images[s : s + batch_size])
            gids = self.global_ids(chunk)
            _, lids, _ = self.net.encode(to_tensor(chunk, self.config.resolution).to(self.device))
            for g, loc in zip(gids.tolist(), lids.tolist(), strict=True):
                out.append(
                    TokenizedImage(
                        global_ids=g,
                        global_words=[self.codebook.entries[i]["text"] for i in g],
                        local_ids=loc,
                        local_tokens=[[self._show(t) for t in row] for row in loc],
                    )
                )
        return out

    def _show(self, token_id: int) -> str:
        return self.display[token_id] if self.display else str(token_id)

    @torch.inference_mode()
    def decode(self, tokens: Sequence[TokenizedImage | dict]) -> list[Image.Image]:
        """Images from token grids (+ global ids). Validates ids and grid sizes first."""
        h = self.config.latent_size
        locs, globs = [], []
        for t in tokens:
            d = t.to_json() if isinstance(t, TokenizedImage) else t
            loc = torch.as_tensor(d["local_ids"], dtype=torch.long)
            if loc.shape != (h, h):
                raise V2LError(f"local_ids is a {tuple(loc.shape)} grid; this tokenizer decodes {h}×{h} grids.")
            n = self.net.local_quantizer.num_codes
            if loc.min() < 0 or loc.max() >= n:
                raise V2LError(f"local_ids holds ids outside 0..{n - 1} (the LLM vocabulary): check the tokens file.")
            g = torch.as_tensor(d.get("global_ids") or [], dtype=torch.long)
            ng = self.net.global_quantizer.codebook.shape[0]
            if len(g) and (g.min() < 0 or g.max() >= ng):
                raise V2LError(f"global_ids holds ids outside 0..{ng - 1} (the global codebook): check the file.")
            locs.append(loc)
            globs.append(g)
        k = {len(g) for g in globs}
        if len(k) > 1:
            raise V2LError("every image in one decode call needs the same number of global ids.")
        gids = torch.stack(globs) if k != {0} else None
        gids = gids.to(self.device) if gids is not None else None
        return to_images(self.net.decode_tokens(torch.stack(locs).to(self.device), gids))

    @torch.inference_mode()
    def reconstruct(self, images: Sequence, batch_size: int = 32) -> list[Image.Image]:
        out = []
        for s in range(0, len(images), batch_size):
            chunk = list(images[s : s + batch_size])
            x = to_tensor(chunk, self.config.resolution).to(self.device)
            x_hat = self.net(x, self.global_ids(chunk).to(self.device)).reconstruction
            out += to_images(x_hat)
        return out


def save_tokenizer_folder(
    folder: str | Path,
    net: V2LTokenizer,
    codebook: Codebook | dict,
    dtype: torch.dtype = torch.float32,
    extra: dict | None = None,
    codebook_folder: str | Path | None = None,
    replace: bool = False,
) -> Path:
    """Write `model.safetensors` (trained weights; the frozen codebooks come from the codebook artefact) and
    `config.json` (model config + the codebook's identity), atomically. An existing folder is replaced only if it is
    a tokenizer folder (or `replace=True`); any other folder is an error, never deleted.

    `codebook`: the `Codebook` trained with (its identity then includes the global list's hash, checked on load), or
    only its manifest (settings and models only)."""
    folder = Path(folder)
    if isinstance(codebook, Codebook):
        ident = {**_codebook_identity(codebook.manifest), "global_sha256": codebook.global_sha256}
    else:
        ident = _codebook_identity(codebook)
    with atomic_path(folder, replace=replace or is_tokenizer_folder) as tmp:
        tmp.mkdir()
        sd = {k: v.detach().to(dtype).contiguous() for k, v in net.state_dict().items()}
        save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        meta = {"model_config": net.config.to_dict(), "codebook": ident, **(extra or {})}
        if codebook_folder is not None:
            meta["codebook_folder"] = str(Path(codebook_folder).resolve())
        (tmp / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder


_DAMAGED = "the checkpoint folder is damaged: copy or save it again"


def read_checkpoint_config(folder: Path) -> tuple[dict, TokenizerConfig, dict]:
    """(config.json, its model config, its codebook identity), every field checked: a damaged or edited file is one
    sentence naming it."""
    from ..files import ArtefactError, json_field, read_json

    path = folder / "config.json"
    meta = read_json(path, dict, fix=_DAMAGED)
    try:
        cfg = TokenizerConfig.from_dict(json_field(meta, "model_config", dict, path, _DAMAGED))
    except (TypeError, ValueError) as e:
        if isinstance(e, ArtefactError):
            raise
        raise ArtefactError(f"{path}: its model_config is not valid ({e}): {_DAMAGED}.") from None
    ident = json_field(meta, "codebook", dict, path, _DAMAGED)
    for name, kind in (("key", str), ("llm", dict), ("vl", (str, dict))):
        json_field(ident, name, kind, f"{path} (codebook)", _DAMAGED)
    json_field(ident["llm"], "name", str, f"{path} (codebook.llm)", _DAMAGED)
    return meta, cfg, ident


def is_tokenizer_folder(folder: Path) -> bool:
    """A folder `save_pretrained` wrote: config.json with a model_config, and model.safetensors."""
    try:
        return (
            "model_config" in json.loads((folder / "config.json").read_text())
            and (folder / "model.safetensors").is_file()
        )
    except (OSError, ValueError, TypeError):
        return False


def local_codebook_for(cfg: TokenizerConfig, codebook: Codebook, lm=None) -> torch.Tensor:
    """The frozen local codebook a config asks for: VL text embeddings of the tokens ("vl", the paper's), or the LLM's
    own input embeddings ("llm", Table 6 row 1), L2-normalised like the encoder output they are compared with."""
    if cfg.codebook_source == "vl":
        return codebook.local_embeddings
    if cfg.codebook_source == "llm":
        from ..backbones import LanguageModel

        lm = lm or LanguageModel.load(codebook.manifest["llm"]["name"])
        return torch.nn.functional.normalize(lm.model.get_input_embeddings().weight.detach().float(), dim=-1)
    if cfg.codebook_source == "mlm":  # LQAE: the bidirectional LM's own word embeddings (v2l.baselines)
        from ..backbones.bidirectional import lm_word_embeddings

        return lm_word_embeddings(cfg.bidirectional_lm)
    raise V2LError(f"codebook_source {cfg.codebook_source!r}: use vl, llm or mlm.")


def local_tokens_for(cfg: TokenizerConfig, codebook: Codebook) -> tuple[torch.Tensor | None, list[str] | None]:
    """The local rows never chosen (special tokens) and the display text of each local token, for the vocabulary
    `cfg` quantizes to: the LLM's (V2L, VQ-GAN+LLM) or the bidirectional LM's (LQAE)."""
    if cfg.codebook_source == "mlm":
        from ..backbones.bidirectional import lm_vocabulary

        return lm_vocabulary(cfg.bidirectional_lm)
    exclude = local_exclusion(codebook.local_kinds) if codebook.local_kinds else None
    return exclude, codebook.local_display


def _trained_global_list(folder: Path, ident: dict, found: Codebook, vl, chosen: bool, progress: bool) -> Codebook:
    """The codebook whose global list is the one checkpoint `folder` was trained with, when `found` (same key) holds
    another: a build of the same settings on another machine can differ on a near-tie (float32 results are not
    bit-equal across machines; docs/results.md). A list found in the cache gives way to the shipped list of that
    key if that one matches; a list the caller chose is an error, as is a mismatch with nothing to fall back on."""
    from ..codebooks.artefact import materialize_shipped, shipped_by_key

    want = ident["global_sha256"]
    shipped = None if chosen else shipped_by_key(ident["key"])
    if shipped is not None:
        candidate = Codebook.load(materialize_shipped(shipped, vl, progress=progress), vl=vl)
        if candidate.global_sha256 == want:
            if progress:
                tqdm.write(
                    f"v2l: {found.folder} holds another global list than checkpoint {folder.name} was "
                    f"trained with ({len(found.entries)} entries); using the shipped list of that codebook "
                    f"({len(candidate.entries)} entries).",
                    file=sys.stderr,
                )
            return candidate
    raise ManifestMismatchError(
        f"Checkpoint {folder} was trained with another global list (sha256 {want[:12]}) than {found.folder} holds "
        f"({len(found.entries)} entries, sha256 {found.global_sha256[:12]}), though both have the settings "
        f"{ident['key']}: pass the codebook folder of its training run with --codebook."
    )


def _codebook_identity(manifest: dict) -> dict:
    from ..codebooks import CodebookConfig

    cfg = manifest.get("config") or {}
    return {
        "key": CodebookConfig(**cfg).key() if cfg else None,
        "llm": {"name": manifest["llm"]["name"], "vocabulary_sha256": manifest["llm"]["vocabulary_sha256"]},
        "vl": manifest["vl"],
    }


def resolve_checkpoint(name: str | Path) -> Path:
    if str(name) in ("cpu", "default"):
        folder = SHIPPED / "v2l-cpu"
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError("This v2l install has no shipped CPU checkpoint: train one with `v2l train`.")
        return folder
    p = Path(name)
    if p.is_dir():
        if (p / "seed_config.json").is_file():
            raise ModelNotFoundError(
                f"{p} is a SEED checkpoint, not a V2L tokenizer: use it with `v2l seed caption|generate|encode`."
            )
        if not (p / "config.json").is_file() or not (p / "model.safetensors").is_file():
            raise ModelNotFoundError(f"{p} is not a v2l tokenizer folder (needs config.json and model.safetensors).")
        return p
    if p.exists() or str(name).startswith((".", "/", "~")):
        raise ModelNotFoundError(f"Tokenizer path {name} is not a folder saved by save_pretrained: check the path.")
    if len(p.parts) > 2 or (len(p.parts) == 2 and Path(p.parts[0]).is_dir()):  # a local path, not OWNER/NAME
        raise ModelNotFoundError(
            f"Tokenizer folder {name} does not exist: check the path, or train it with "
            "`v2l train --out FOLDER` (its tokenizer is FOLDER/final)."
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name), allow_patterns=["config.json", "model.safetensors"]))
    except Exception as e:  # noqa: BLE001 - any hub failure gets the same advice
        raise ModelNotFoundError(
            f"Could not fetch tokenizer {name!r} from the Hugging Face hub ({type(e).__name__}):"
            " pass a local folder, or download it where you have network."
        ) from e
