"""Greedy generation with the frozen LLM (a room of `LanguageModel`): batched, after a shared prefix, with stop
strings and token constraints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .kv_cache import reserve_cache, share_prefix
from .llm_cache import Prefix, fork_cache, kept_prefix, returned_cache


@dataclass
class Generation:
    """One generated continuation: text (cut before a stop string), ids, per-token log-probabilities, and why it
    ended (`eos`, `stop`, `constraint` or `length`)."""

    text: str
    ids: list[int]
    logprobs: list[float]
    finish_reason: str


class GenerationMixin:
    """Greedy generation; mixed into `LanguageModel` (which provides `_hidden`, `_logits`, `_batches`)."""

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
        kept = kept_prefix(prefix.cache, plen) if windowed else 0
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
            cache, h, step_pos = returned_cache(out), out.last_hidden_state[:, -1], pos[:, -1:]
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
            cache, h = returned_cache(out), out.last_hidden_state[:, -1]
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
