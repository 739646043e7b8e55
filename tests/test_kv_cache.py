"""The generation caches of `v2l.backbones.kv_cache`: a shared prefix kept once, attention over it in two parts equal
to plain attention over the whole, buffers that grow in place, and the prefix never written to."""

from __future__ import annotations

import pytest
import torch

from v2l.backbones.kv_cache import layer_classes, reserve_cache, share_prefix, shared_prefix_attention
from v2l.backbones.language_model import fork_cache


class _Module:  # what transformers' SDPA function reads from an attention module
    num_key_value_groups = 2
    is_causal = True


def _plain(query, pk, pv, key, value, allowed):
    """Softmax attention over [prefix repeated per row, the rows' own keys] with grouped heads expanded."""
    n, heads = query.shape[:2]
    g = heads // key.shape[1]
    k = torch.cat([pk.expand(n, -1, -1, -1), key], 2).repeat_interleave(g, 1)
    v = torch.cat([pv.expand(n, -1, -1, -1), value], 2).repeat_interleave(g, 1)
    out = torch.nn.functional.scaled_dot_product_attention(query, k, v, attn_mask=allowed)
    return out.transpose(1, 2)


@pytest.mark.parametrize("q,masked", [(1, True), (5, True), (1, False), (5, False)])
def test_shared_prefix_attention_equals_plain_attention(q, masked):
    torch.manual_seed(0)
    n, heads, kv_heads, p, s, d = 3, 4, 2, 7, 6, 8
    query = torch.randn(n, heads, q, d)
    pk, pv = torch.randn(1, kv_heads, p, d), torch.randn(1, kv_heads, p, d)
    key, value = torch.randn(n, kv_heads, s, d), torch.randn(n, kv_heads, s, d)
    causal = torch.ones(q, p + s, dtype=torch.bool).tril(p + s - q)
    allowed = causal.expand(n, 1, q, p + s).clone()
    if masked:  # left padding of the rows' own part: row 1 starts 2 tokens late, row 2 one token late
        allowed[1, :, :, p : p + 2] = False
        allowed[2, :, :, p : p + 1] = False
    key.v2l_prefix = (pk, pv)
    got, _ = shared_prefix_attention(_Module(), query, key, value, allowed if masked else None, scaling=d**-0.5)
    want = _plain(query, pk, pv, key, value, allowed)
    assert got.shape == (n, q, heads, d)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_unmarked_keys_go_to_transformers_sdpa():
    torch.manual_seed(0)
    query, key, value = torch.randn(2, 4, 3, 8), torch.randn(2, 2, 3, 8), torch.randn(2, 2, 3, 8)
    got, _ = shared_prefix_attention(_Module(), query, key, value, None, scaling=8**-0.5)
    want = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(2, 1), value.repeat_interleave(2, 1), is_causal=True
    ).transpose(1, 2)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_growing_layer_grows_past_its_room_and_selects_rows():
    from transformers.cache_utils import DynamicLayer

    grow = layer_classes()[0]
    torch.manual_seed(0)
    k0, v0 = torch.randn(3, 2, 4, 8), torch.randn(3, 2, 4, 8)
    plain, layer = DynamicLayer(), grow(k0, v0, room=1)
    plain.update(k0, v0)
    for length in (1, 3, 2):  # 6 tokens more than the 1 it has room for
        k, v = torch.randn(3, 2, length, 8), torch.randn(3, 2, length, 8)
        want, got = plain.update(k, v), layer.update(k, v)
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)
        torch.testing.assert_close(got[1], want[1], rtol=0, atol=0)
    assert layer.get_seq_length() == 10
    keep = torch.tensor([2, 0])
    plain.batch_select_indices(keep)
    layer.batch_select_indices(keep)
    k, v = torch.randn(2, 2, 1, 8), torch.randn(2, 2, 1, 8)
    torch.testing.assert_close(layer.update(k, v)[0], plain.update(k, v)[0], rtol=0, atol=0)


def test_the_llm_generates_after_a_prefix_through_one_shared_copy(tiny_lm):
    grow, shared = layer_classes()
    assert tiny_lm._shared_attention
    prefix = tiny_lm.prefix_cache(tiny_lm.encode("the quick brown fox jumps over the lazy dog and"))
    before = [(layer.keys.clone(), layer.values.clone()) for layer in prefix.cache.layers]
    cache = share_prefix(prefix.cache, 4, 10, fork_cache)
    assert all(type(layer) is shared for layer in cache.layers)
    assert all(
        layer.prefix[0].data_ptr() == old.keys.data_ptr()  # the prefix is referenced, not copied
        for layer, old in zip(cache.layers, prefix.cache.layers, strict=True)
    )
    assert cache.get_seq_length() == prefix.length
    prompts = [tiny_lm.encode(t) for t in ("a cat", "the", "a photo of a red", "")]
    fast = tiny_lm.generate_ids(prompts, max_new_tokens=6, prefix=prefix, batch_size=4)
    tiny_lm._shared_attention = False  # the plain way: views of the prefix, copied into each row's cache
    try:
        plain = tiny_lm.generate_ids(prompts, max_new_tokens=6, prefix=prefix, batch_size=4)
    finally:
        tiny_lm._shared_attention = True
    alone = [tiny_lm.generate_ids([list(prefix.ids) + p], max_new_tokens=6, batch_size=1)[0] for p in prompts]
    assert [g.ids for g in fast] == [g.ids for g in plain] == [g.ids for g in alone]
    for a, b in zip(fast, alone, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
    same = [tiny_lm.encode("a cat"), tiny_lm.encode("a dog")]  # equal lengths: no padding, no mask from transformers
    assert len(same[0]) == len(same[1])
    batched = tiny_lm.generate_ids(same, max_new_tokens=6, prefix=prefix, batch_size=2)
    assert [g.ids for g in batched] == [
        tiny_lm.generate_ids([list(prefix.ids) + p], max_new_tokens=6, batch_size=1)[0].ids for p in same
    ]
    for layer, (k, v) in zip(prefix.cache.layers, before, strict=True):  # generation never wrote into the prefix
        assert torch.equal(layer.keys, k) and torch.equal(layer.values, v)


def test_reserve_cache_keeps_the_original(tiny_lm):
    grow = layer_classes()[0]
    prefix = tiny_lm.prefix_cache(tiny_lm.encode("a photo of a cat"))
    reserved = reserve_cache(prefix.cache, 5)
    assert all(type(layer) is grow for layer in reserved.layers)
    assert all(type(layer) is not grow for layer in prefix.cache.layers)
    reserved.layers[0].update(
        torch.zeros_like(prefix.cache.layers[0].keys[:, :, :1]),
        torch.zeros_like(prefix.cache.layers[0].values[:, :, :1]),
    )
    assert prefix.cache.get_seq_length() == prefix.length
    assert reserved.get_seq_length() == prefix.length + 1
