"""The frozen LLM: a transformers causal LM plus the few batched operations the rest of v2l needs.

Loads from a preset name, a hub id, a local folder or a GGUF file. GGUF weights are de-quantised by transformers (slow,
~25 s for SmolLM2) and then cached as safetensors under `V2L_CACHE/llm/<sha256 of the GGUF>` so later loads take a few
seconds. Everything runs under `torch.inference_mode()`; the model is never trained.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from ..errors import ContextLengthError
from .kv_cache import enable_shared_prefix_attention, share_prefix
from .llm_cache import Prefix, cache_argument, deepcopy_cache, fork_cache, returned_cache
from .llm_generation import Generation, GenerationMixin
from .llm_loading import DEFAULT_LLM, LLM_PRESETS, LLMPreset, hub_offline, open_model, resolve_gguf
from .llm_scoring import ScoringMixin, TokenScores
from .vocabulary import Vocabulary


def text_start_ids(tokenizer) -> tuple[int, ...]:
    """The ids a transformers tokenizer puts before a text (Gemma's `<bos>`; none for SmolLM2)."""
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return tuple(full[:i])
    return ()


def execution_device(model) -> torch.device:
    """Where inputs go: the device of the first placed module under Accelerate's `device_map` (the CPU when every
    layer sits on the CPU or on disk), else the parameters' device."""
    placed = getattr(model, "hf_device_map", None)
    if placed:
        for where in placed.values():
            if isinstance(where, int) or str(where).startswith(("cuda", "xpu", "mps")):
                return torch.device(f"cuda:{where}" if isinstance(where, int) else str(where))
        return torch.device("cpu")
    return next(model.parameters()).device


class LanguageModel(ScoringMixin, GenerationMixin):
    """A frozen causal LM with batched top-k, greedy generation, scoring and shared-prefix KV-cache reuse: the facade
    over its rooms (`llm_loading`, `llm_scoring`, `llm_generation`, `llm_cache`)."""

    def __init__(self, model, tokenizer, name: str, source: str, source_hash: str | None = None):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name, self.source, self.source_hash = name, source, source_hash
        self.adapter: dict | None = None  # the LoRA adapter merged in (`load(adapter=...)`), if any
        self.vocab = Vocabulary.from_tokenizer(tokenizer, model.get_input_embeddings().weight.shape[0])
        self.device = execution_device(model)
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
        cls,
        name: str = DEFAULT_LLM,
        *,
        dtype: torch.dtype | str | None = None,
        device: str | None = None,
        progress: bool = True,
        adapter: str | None = None,
        device_map: str | dict | None = None,
        max_memory: dict | None = None,
        offload_folder: str | None = None,
    ) -> LanguageModel:
        """Load a preset (`smollm2-135m`, `gemma3-270m`, `llama2-7b`), a local folder, a `.gguf` file or a hub id.
        `device` / `dtype`: where and in what precision (default: `v2l.runtime.current()`, cpu and float32 unless
        configured). `device_map="auto"` (the default under `--device auto` on CUDA): Accelerate's big-model loading,
        for an LLM larger than one GPU (`max_memory`, `offload_folder`: its caps and its disk offload). `adapter`: a
        LoRA adapter (a shipped name such as `v2l-cpu`, or a folder; `v2l.tuning`) merged into the weights in memory;
        the files of the base model are never written."""
        from ..runtime import current, pick

        if device_map is None and device is None and current().device_map:
            device_map = current().device_map
        device, dtype = pick(device, dtype)
        model, tok, name, source, source_hash = open_model(
            name,
            dtype=dtype,
            device=device,
            progress=progress,
            device_map=device_map,
            max_memory=max_memory,
            offload_folder=offload_folder,
        )
        meta = None
        if adapter:
            from .adapters import load_adapter

            model, meta = load_adapter(model, adapter, name, source_hash)
        lm = cls(model, tok, name=name, source=source, source_hash=source_hash)
        lm.adapter = meta
        return lm

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
        return Prefix(returned_cache(out), base + tuple(ids), out.last_hidden_state[0, -1].clone())

    @functools.cached_property
    def start_ids(self) -> tuple[int, ...]:
        """The ids the tokenizer puts before a text (Gemma's `<bos>`; none for SmolLM2). Prompts assembled from
        pieces encoded without special tokens start with these, as a prompt encoded whole would."""
        return text_start_ids(self.tokenizer)

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
    def info(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "class": type(self.model).__name__,
            "vocab_size": self.vocab_size,
            "hidden_size": self.model.get_input_embeddings().weight.shape[1],
            "vocabulary_sha256": self.vocab.sha256[:16],
            **({"adapter": self.adapter.get("folder")} if self.adapter else {}),
        }


__all__ = [
    "DEFAULT_LLM",
    "LLM_PRESETS",
    "Generation",
    "LLMPreset",
    "LanguageModel",
    "Prefix",
    "TokenScores",
    "cache_argument",
    "deepcopy_cache",
    "fork_cache",
    "hub_offline",
    "resolve_gguf",
]
