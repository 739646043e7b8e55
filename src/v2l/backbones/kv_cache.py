"""KV caches for batched generation after a shared prompt prefix.

transformers' `DynamicLayer` grows a layer's keys and values by concatenation, so every generated token copies the
whole cache; and a batch that continues one prefix needs the prefix's keys and values once per row, because fused
attention kernels take one tensor per batch. When ten in-context examples (~800 tokens) precede every caption, those
two copies cost more than the model's own matrix products on CPU (profiled: a third of the captioning time went to
`torch.cat`, and attention mostly read the same prefix once per row).

Two layers replace `DynamicLayer` during generation (`LanguageModel._generate_batch`); the prefix's own cache is
never written to:

- `GrowingLayer`: the keys and values sit in a buffer with room for the tokens still to come; each step writes its
  token in place and attention reads views. Used for prompts without a shared prefix, and for any model whose
  attention is not torch's SDPA.
- `SharedPrefixLayer`: keeps the prefix's keys and values *once* (batch 1) and a growing buffer per row for what
  follows it. `shared_prefix_attention` (registered with transformers' `AttentionInterface` as `"v2l_sdpa"`; it
  hands every other layer to transformers' own SDPA function) computes softmax attention over prefix and suffix
  exactly, in two parts joined by their log-sum-exp, at each generated token: the prefix part is one matrix product
  for all rows' queries against the single copy (queries grouped by key/value head, so grouped-query models read it
  once too). The prompts' own tokens (many queries per row, once per batch) go to transformers' SDPA over the
  prefix repeated per row, which is faster there.

Sliding-window layers (Gemma 3) are bounded by their window and stay as transformers made them. Outputs equal the
plain caches' up to float rounding; tests check the tokens against one-prompt-at-a-time generation.
"""

from __future__ import annotations

import copy
import functools

import torch

ATTENTION = "v2l_sdpa"


@functools.cache
def layer_classes():
    """`(GrowingLayer, SharedPrefixLayer)`, made on first use (transformers is imported lazily: it is slow)."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A full-attention layer whose keys and values live in a buffer with room to grow (see the module doc)."""

        def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int):
            super().__init__()
            self.device, self.is_initialized = keys.device, True
            length = keys.shape[-2]
            self._k = _buffer(keys, length + room)
            self._v = _buffer(values, length + room)
            self._k[:, :, :length], self._v[:, :, :length] = keys, values
            self._view(length)

        def _view(self, length: int) -> None:
            self.keys, self.values = self._k[:, :, :length], self._v[:, :, :length]

        def update(self, key_states, value_states, *args, **kwargs):
            start = self.keys.shape[-2]
            end = start + key_states.shape[-2]
            if end > self._k.shape[-2]:  # out of room (never with the right `room`): twice as large
                size = max(end, 2 * self._k.shape[-2])
                grown = _buffer(self._k, size), _buffer(self._v, size)
                grown[0][:, :, :start], grown[1][:, :, :start] = self.keys, self.values
                self._k, self._v = grown
            self._k[:, :, start:end] = key_states
            self._v[:, :, start:end] = value_states
            self._view(end)
            return self.keys, self.values

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            length = self.keys.shape[-2]
            self._k, self._v = self._k[indices], self._v[indices]
            self._view(length)

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            self.batch_select_indices(beam_idx.to(self._k.device))

        def batch_repeat_interleave(self, repeats: int) -> None:
            length = self.keys.shape[-2]
            self._k, self._v = (b.repeat_interleave(repeats, dim=0) for b in (self._k, self._v))
            self._view(length)

    class SharedPrefixLayer(GrowingLayer):
        """One copy of a prefix's keys and values (batch 1) plus a growing buffer of what each row adds after it.
        `keys`/`values` are the rows' own part; the keys handed to attention carry the prefix for
        `shared_prefix_attention` (see the module doc)."""

        def __init__(
            self,
            prefix_keys: torch.Tensor,
            prefix_values: torch.Tensor,
            rows: int,
            room: int,
            prefix_length: int | None = None,
        ):
            empty = prefix_keys.new_empty((rows, prefix_keys.shape[1], 0, prefix_keys.shape[-1]))
            super().__init__(empty, empty.new_empty((rows, prefix_values.shape[1], 0, prefix_values.shape[-1])), room)
            self.prefix = (prefix_keys, prefix_values)
            # The prefix tokens this layer stands for: all of them, also where a sliding-window layer kept only the
            # last window − 1 (their keys are all that later tokens can see).
            self.prefix_length = prefix_keys.shape[-2] if prefix_length is None else prefix_length

        def get_seq_length(self) -> int:
            return self.prefix_length + self.keys.shape[-2]

        def update(self, key_states, value_states, *args, **kwargs):
            keys, values = super().update(key_states, value_states)
            keys = keys[:]  # a fresh view, so the mark below never sticks to a tensor used elsewhere
            keys.v2l_prefix = self.prefix
            return keys, values

        def crop(self, tokens_to_remove: int) -> None:
            raise NotImplementedError("SharedPrefixLayer is for greedy generation only; it cannot be cropped.")

    return GrowingLayer, SharedPrefixLayer


def _buffer(like: torch.Tensor, length: int) -> torch.Tensor:
    return like.new_empty((like.shape[0], like.shape[1], length, like.shape[-1]))


def _full_attention_layer(layer) -> bool:
    from transformers.cache_utils import DynamicLayer

    return type(layer) is DynamicLayer and layer.is_initialized and layer.keys is not None and bool(layer.keys.numel())


def _sliding_layer(layer) -> bool:
    from transformers.cache_utils import DynamicSlidingWindowLayer

    return (
        type(layer) is DynamicSlidingWindowLayer
        and layer.is_initialized
        and layer.keys is not None
        and bool(layer.keys.numel())
    )


def reserve_cache(cache, room: int):
    """A cache equal to `cache` whose full-attention layers are `GrowingLayer`s with `room` more tokens of space.
    `cache` itself is not changed (new buffers)."""
    grow = layer_classes()[0]
    layers = getattr(cache, "layers", None)
    if not layers:
        return cache
    new = copy.copy(cache)
    new.layers = [grow(layer.keys, layer.values, room) if _full_attention_layer(layer) else layer for layer in layers]
    return new


def share_prefix(cache, rows: int, room: int, fork, sliding: bool = False, prefix_length: int | None = None):
    """A cache for `rows` rows continuing the one-row prefix `cache`: full-attention layers become
    `SharedPrefixLayer`s (the prefix kept once, `room` tokens per row after it); the others are forked by
    `fork(cache, rows)` (views of the prefix). `sliding=True` turns sliding-window layers into `SharedPrefixLayer`s
    too (they then keep everything, and the caller's per-row masks apply the window; `prefix_length` is the whole
    prefix's length). None if `cache` is not of that kind."""
    shared = layer_classes()[1]
    layers = getattr(cache, "layers", None)
    convert = [_full_attention_layer(layer) or (sliding and _sliding_layer(layer)) for layer in (layers or [])]
    if not layers or any(c and layer.keys.shape[0] != 1 for c, layer in zip(convert, layers, strict=True)):
        return None
    forked = fork(cache, rows)
    new = copy.copy(forked)
    new.layers = [
        shared(layer.keys, layer.values, rows, room, prefix_length) if c else twin
        for c, layer, twin in zip(convert, layers, forked.layers, strict=True)
    ]
    return new


def shared_prefix_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """Attention for `SharedPrefixLayer` keys (marked with the prefix); transformers' SDPA for all others.

    query: (rows, heads, q, d); key/value: the rows' own part (rows, kv_heads, s, d); the prefix (1, kv_heads, p, d)
    is seen in full by every query (it has no padding), the rows' part under `attention_mask`'s last s columns (or
    causally when transformers passes no mask). Returns (rows, q, heads, d) like transformers' attention functions.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    shared = getattr(key, "v2l_prefix", None)
    if shared is None or dropout or kwargs.get("softcap") is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    pk, pv = shared
    if query.shape[2] > 1:
        # Several queries per row (the prompts' own tokens, once per batch): a fused kernel over the prefix repeated
        # per row beats the two-part product, whose score tensors grow with queries × keys × rows (measured: 0.65×
        # the one-prompt loop on 800-token prompts). The repeat is temporary; the cache keeps one copy.
        n = query.shape[0]
        full_k = torch.cat([pk.expand(n, -1, -1, -1), key], 2)
        full_v = torch.cat([pv.expand(n, -1, -1, -1), value], 2)
        if attention_mask is None:  # transformers passes none when nothing is padded: causal after the prefix
            q, s, p = query.shape[2], key.shape[2], pk.shape[2]
            attention_mask = torch.ones((q, p + s), dtype=torch.bool, device=query.device).tril(p + s - q)[None, None]
        return sdpa_attention_forward(
            module, query, full_k, full_v, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    n, heads, q, d = query.shape
    kv_heads, s = key.shape[1], key.shape[2]
    g, m = heads // kv_heads, n * (heads // kv_heads) * q
    scale = scaling if scaling is not None else d**-0.5
    dtype = query.dtype
    work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    qf = query.to(work).reshape(n, kv_heads, g * q, d)
    # Prefix: all rows' queries of one key/value head against its single copy.
    sp = torch.matmul(qf.transpose(0, 1).reshape(kv_heads, m, d), pk[0].to(work).transpose(-1, -2)) * scale
    p = pk.shape[2]
    if attention_mask is not None and attention_mask.shape[-1] == p + s:  # per-row prefix columns (sliding windows)
        seen = attention_mask[..., :p]
        seen = seen if seen.dtype == torch.bool else seen == 0
        if not bool(seen.all()):
            seen = seen.expand(n, 1, q, p).reshape(n, q, p)
            sp = sp.view(kv_heads, n, g, q, p).masked_fill(~seen[None, :, None], float("-inf"))
            sp = sp.view(kv_heads, m, p)
    # The rows' own part, masked per row.
    ss = torch.matmul(qf, key.to(work).transpose(-1, -2)).mul_(scale).view(n, kv_heads, g, q, s)
    if attention_mask is not None:
        allowed = attention_mask[..., -s:]
        allowed = allowed if allowed.dtype == torch.bool else allowed == 0
        ss = ss.masked_fill(~allowed.unsqueeze(2), float("-inf"))
    elif q > 1:
        causal = torch.ones((q, s), dtype=torch.bool, device=query.device).tril(s - q)
        ss = ss.masked_fill(~causal, float("-inf"))
    ss = ss.transpose(0, 1).reshape(kv_heads, m, s)
    top = torch.maximum(sp.amax(-1, keepdim=True), ss.amax(-1, keepdim=True))
    ep, es = (sp - top).exp_(), (ss - top).exp_()
    out = torch.matmul(ep, pv[0].to(work))
    out += torch.matmul(es.view(kv_heads, n, g * q, s), value.to(work).transpose(0, 1)).view(kv_heads, m, d)
    out /= ep.sum(-1, keepdim=True) + es.sum(-1, keepdim=True)
    return out.view(kv_heads, n, g, q, d).permute(1, 3, 0, 2, 4).reshape(n, q, heads, d).to(dtype), None


def enable_shared_prefix_attention(model) -> bool:
    """Switch `model` from transformers' "sdpa" attention to `shared_prefix_attention` (which is SDPA for every
    ordinary layer). Returns whether it did: models on another attention implementation are left alone and generate
    with `GrowingLayer`s only."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    configs = [model.config] + [c for c in (getattr(model.config, "text_config", None),) if c is not None]
    if any(getattr(c, "_attn_implementation", None) not in ("sdpa", ATTENTION) for c in configs):
        return False
    AttentionInterface.register(ATTENTION, shared_prefix_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    for c in configs:
        c._attn_implementation = ATTENTION
    return True
