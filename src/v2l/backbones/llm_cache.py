"""KV caches of computed prompt prefixes (a room of `LanguageModel`): `Prefix`, forking a cache over a batch, and
the cache argument of the installed transformers."""

from __future__ import annotations

import copy
import inspect

import torch


def kept_prefix(cache, plen: int) -> int:
    """How many of the prefix's keys its sliding-window layers kept (the last window − 1; all when it is shorter)."""
    from transformers.cache_utils import DynamicSlidingWindowLayer

    for layer in getattr(cache, "layers", []):
        if type(layer) is DynamicSlidingWindowLayer and layer.keys is not None:
            return int(layer.keys.shape[-2])
    return plen


def returned_cache(out):
    """The KV cache a forward returned: `cache` in transformers ≥ 5.2x, `past_key_values` before."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def cache_argument(module) -> str:
    """The name under which `module.forward` takes a KV cache: transformers renamed `past_key_values=` to `cache=`
    (the old name is removed in 5.40), so use whichever this installed version declares."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


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
