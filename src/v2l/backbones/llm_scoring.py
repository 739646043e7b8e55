"""Scoring with the frozen LLM (a room of `LanguageModel`): batched next-token top-k, constrained choice, and the
log-probabilities of continuations (tree attention over a shared prefix)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .kv_cache import ATTENTION
from .llm_cache import Prefix
from .lm_head import ScreenedHead, bf16_matmul_is_fast


@dataclass
class TokenScores:
    """One scored continuation: its ids, the log-probability of each, and the greedy (argmax) id at each position."""

    ids: list[int]
    logprobs: torch.Tensor
    greedy: list[int]


class ScoringMixin:
    """Next-token top-k and continuation scores; mixed into `LanguageModel` (which provides `_hidden`, `_logits`,
    `_batches`)."""

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
