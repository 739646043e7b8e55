"""What the in-context tasks need from the frozen LLM: ids out of generation, constraints, per-token scores, exact
prefix reuse, and batched output equal to one-at-a-time output (also with a sliding window, past the window)."""

from __future__ import annotations

import pytest
import torch

from v2l.backbones import LanguageModel, TokenSetConstraint, Trie, TrieConstraint
from v2l.backbones.language_model import deepcopy_cache, fork_cache
from v2l.errors import ContextLengthError


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory, tiny_tokenizer):
    """A random 2-layer Gemma 3 text model with a 4-token sliding window on its first layer (Gemma 3 270M: 512)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(1)
    cfg = Gemma3TextConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=256,
        eos_token_id=tiny_tokenizer.eos_token_id,
        pad_token_id=tiny_tokenizer.pad_token_id,
        bos_token_id=tiny_tokenizer.bos_token_id,
        final_logit_softcapping=30.0,
    )
    out = tmp_path_factory.mktemp("tiny-gemma3")
    Gemma3ForCausalLM(cfg).save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    return LanguageModel.load(str(out))


PROMPTS = ["a photo of a cat", "the", "the quick brown fox jumps over the lazy", "Paris is the capital of"]


def _hf_greedy(lm, ids, n):
    out = lm.model.generate(
        torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=lm.pad_id
    )
    return out[0, len(ids) :].tolist()


@pytest.mark.parametrize("which", ["tiny_lm", "tiny_gemma"])
def test_batched_with_prefix_and_left_padding_equals_one_at_a_time(which, request):
    lm = request.getfixturevalue(which)
    prefix_ids = lm.encode("a bird in the sky. the cat sat on the mat.")  # longer than the 4-token window
    prefix = lm.prefix_cache(prefix_ids)
    suffixes = [lm.encode(" " + p) for p in PROMPTS]
    batched = lm.generate_ids(suffixes, max_new_tokens=6, prefix=prefix, batch_size=4)
    for s, b in zip(suffixes, batched, strict=True):
        alone = lm.generate_ids([s], max_new_tokens=6, prefix=prefix)[0]
        full = lm.generate_ids([prefix_ids + s], max_new_tokens=6)[0]
        assert b.ids == alone.ids == full.ids
        assert b.ids == _hf_greedy(lm, prefix_ids + s, len(b.ids))  # transformers' own greedy search agrees
        assert b.text == lm.decode(b.ids) and len(b.logprobs) == len(b.ids)
    # the prefix is never written to: reusing it gives the same again
    again = lm.generate_ids(suffixes, max_new_tokens=6, prefix=prefix, batch_size=4)
    assert [g.ids for g in again] == [g.ids for g in batched]


@pytest.mark.parametrize("which", ["tiny_lm", "tiny_gemma"])
def test_batched_without_prefix_equals_one_at_a_time(which, request):
    lm = request.getfixturevalue(which)
    seqs = [lm.encode(p) for p in PROMPTS]
    batched = lm.generate_ids(seqs, max_new_tokens=10, batch_size=4)
    for s, b in zip(seqs, batched, strict=True):
        assert b.ids == lm.generate_ids([s], max_new_tokens=10)[0].ids == _hf_greedy(lm, s, len(b.ids))


@pytest.mark.parametrize("which", ["tiny_lm", "tiny_gemma"])
def test_empty_sequence_after_a_prefix_predicts_after_its_last_token(which, request):
    lm = request.getfixturevalue(which)
    ids = lm.encode("the quick brown fox jumps over")
    prefix = lm.prefix_cache(ids)
    logits = lm.model(torch.tensor([ids])).logits[0, -1].float()
    _, top = lm.next_token_topk([[]], k=3, prefix=prefix)
    assert top[0].tolist() == logits.topk(3).indices.tolist()
    assert lm.generate_ids([[]], max_new_tokens=5, prefix=prefix)[0].ids == lm.generate_ids([ids], 5)[0].ids
    # and a whole prompt as the prefix scores its continuation from that same position
    s = lm.score(ids, [[5, 6]], prefix=prefix)
    want = torch.log_softmax(lm.model(torch.tensor([ids + [5, 6]])).logits[0].float(), -1)
    assert abs(float(s[0]) - float(want[len(ids) - 1, 5] + want[len(ids), 6])) < 1e-3


def test_per_token_scores_and_greedy(tiny_lm):
    prompt = tiny_lm.encode("the cat sat on")
    conts = [tiny_lm.encode(" the mat"), tiny_lm.encode(" a dog in the sky"), [7]]
    scored = tiny_lm.score_tokens(prompt, conts, batch_size=2)
    for c, sc in zip(conts, scored, strict=True):
        logp = torch.log_softmax(tiny_lm.model(torch.tensor([prompt + c])).logits[0].float(), -1)
        rows = logp[len(prompt) - 1 : len(prompt) - 1 + len(c)]
        assert torch.allclose(sc.logprobs, rows[torch.arange(len(c)), torch.tensor(c)], atol=1e-4)
        assert sc.greedy == rows.argmax(-1).tolist()
    mean = tiny_lm.score(prompt, conts, reduction="mean")
    assert torch.allclose(mean, torch.tensor([float(s.logprobs.mean()) for s in scored]), atol=1e-5)


def test_a_prefix_of_another_prompt_is_refused(tiny_lm):
    other = tiny_lm.prefix_cache(tiny_lm.encode("a red car"))
    with pytest.raises(ValueError, match="not the start of the prompt"):
        tiny_lm.score(tiny_lm.encode("the cat sat on"), [[5]], prefix=other)
    part = tiny_lm.encode("the cat sat on")
    ok = tiny_lm.score(part, [[5]], prefix=tiny_lm.prefix_cache(part[:2]))
    assert torch.allclose(ok, tiny_lm.score(part, [[5]]), atol=1e-4)


def test_trie_constraint_picks_the_best_path_among_names_sharing_first_tokens(tiny_lm):
    prompt = tiny_lm.encode("a photo of a")
    names = [tiny_lm.encode(n) for n in (" cat", " cat sat", " car", " dog in the sky")]
    end = tiny_lm.tokenizer.eos_token_id
    names = [n + [end] for n in names]  # a terminator: " cat" is a prefix of " cat sat"
    trie = Trie(names)
    assert names[0] in trie and names[0][:-1] not in trie and trie.count == 4
    got = tiny_lm.generate_ids([prompt], max_new_tokens=10, constraint=TrieConstraint(names))[0]
    # the same walk done by hand from teacher-forced scores: at each node, the best child
    scored = tiny_lm.score_tokens(prompt, names)
    path, cands = [], list(range(len(names)))
    while cands:
        depth = len(path)
        best = max(
            {names[i][depth] for i in cands},
            key=lambda t: (float(next(scored[i].logprobs[depth] for i in cands if names[i][depth] == t)), -t),
        )
        path.append(best)
        cands = [i for i in cands if names[i][depth] == best and len(names[i]) > depth + 1]
    # generation stops at eos (the terminator) without keeping it
    assert got.ids == path[:-1] and got.finish_reason == "eos"


def test_token_set_constraint_gives_exactly_m_allowed_tokens(tiny_lm):
    allowed = list(range(100, 140))
    gens = tiny_lm.generate_ids(
        [tiny_lm.encode("the"), tiny_lm.encode("a red car on")],
        max_new_tokens=10,
        constraint=[TokenSetConstraint(allowed, 2), TokenSetConstraint(allowed, 5)],
    )
    assert [len(g.ids) for g in gens] == [2, 5]
    assert all(t in allowed for g in gens for t in g.ids)
    with pytest.raises(ValueError):
        TokenSetConstraint([], 2)


def test_finished_rows_leave_the_batch(tiny_lm):
    widths = []
    hook = tiny_lm.model.get_decoder().register_forward_pre_hook(
        lambda mod, args, kwargs: widths.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        tiny_lm.generate_ids(
            [tiny_lm.encode("the"), tiny_lm.encode("a cat")],
            max_new_tokens=6,
            constraint=[TokenSetConstraint([100, 101], 1), TokenSetConstraint([100, 101], 6)],
        )
    finally:
        hook.remove()
    assert widths[0] == 2 and widths[1:] == [1] * 5  # after the first token, one row is left


def test_stop_check_decodes_a_window_not_every_row_each_step(tiny_lm, monkeypatch):
    decoded = []
    real = tiny_lm.decode
    monkeypatch.setattr(tiny_lm, "decode", lambda ids: decoded.append(len(ids)) or real(ids))
    gen = tiny_lm.generate_ids([tiny_lm.encode("the")], max_new_tokens=40, stop=["\x07"])[0]
    steps = len(gen.ids)
    assert steps == 40
    assert sum(decoded) <= steps * (2 * 1 + 4) + steps  # windows of 6 tokens + one final decode, not 40*41/2


def test_prefix_reuse_shares_tensors_instead_of_deep_copies(tiny_lm):
    prefix = tiny_lm.prefix_cache(tiny_lm.encode("the cat sat on the mat"))
    forked = fork_cache(prefix.cache, 8)
    k0, f0 = prefix.cache.layers[0].keys, forked.layers[0].keys
    assert f0.shape[0] == 8 and f0.data_ptr() == k0.data_ptr()  # a view: nothing copied
    copied = deepcopy_cache(prefix.cache, 8)
    assert copied.layers[0].keys.data_ptr() != k0.data_ptr() and torch.equal(copied.layers[0].keys, f0)


def test_prompts_longer_than_the_context_are_refused(tiny_lm):
    long = [5] * 300  # the tiny model's context is 256 tokens
    with pytest.raises(ContextLengthError, match="300 tokens.*256 tokens"):
        tiny_lm.generate_ids([long], max_new_tokens=2)
    with pytest.raises(ContextLengthError, match="256 tokens"):
        tiny_lm.score(long, [[5]])
    # the prompt fits, the generation would not
    with pytest.raises(ContextLengthError, match="255 tokens plus 2 to generate.*256 tokens"):
        tiny_lm.generate_ids([[5] * 255], max_new_tokens=2)


@pytest.mark.parametrize("which", ["tiny_lm", "tiny_gemma"])
def test_tree_attention_scoring_equals_one_row_per_continuation(which, request, monkeypatch):
    tiny_lm = request.getfixturevalue(which)  # Gemma 3: a 4-token window, shorter than the prompt and a continuation
    prompt = tiny_lm.encode("a photo of a cat. a photo of")
    prefix = tiny_lm.prefix_cache(prompt)
    conts = [tiny_lm.encode(" a dog"), tiny_lm.encode(" the sea in the sky"), [7], tiny_lm.encode(" a car")]
    rows = []
    hook = tiny_lm.model.get_decoder().register_forward_pre_hook(
        lambda mod, args, kwargs: rows.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        tree = tiny_lm.score_tokens(prompt, conts, prefix=prefix)
        assert rows == [(1, sum(len(c) for c in conts))]  # one row holds every continuation
        monkeypatch.setattr(tiny_lm, "_tree_ok", False)
        plain = tiny_lm.score_tokens(prompt, conts, prefix=prefix)
        assert rows[1][0] == len(conts)  # one row per continuation
    finally:
        hook.remove()
    for a, b in zip(tree, plain, strict=True):
        assert torch.allclose(a.logprobs, b.logprobs, atol=1e-4) and a.greedy == b.greedy


def test_sliding_window_batches_mix_lengths_after_a_prefix(tiny_gemma, monkeypatch):
    """Gemma 3 after a prefix longer than its window: prompts of different lengths share one batch (per-row window
    masks by real position) and still equal one-at-a-time generation (the test above)."""
    assert tiny_gemma._windowed_sharing()
    sizes = []
    real = tiny_gemma._generate_batch
    monkeypatch.setattr(tiny_gemma, "_generate_batch", lambda batch, *a: sizes.append(len(batch)) or real(batch, *a))
    prefix = tiny_gemma.prefix_cache(tiny_gemma.encode("a bird in the sky. the cat sat on the mat."))
    suffixes = [tiny_gemma.encode(" " + p) for p in PROMPTS]
    assert len({len(s) for s in suffixes}) > 1
    batched = tiny_gemma.generate_ids(suffixes, max_new_tokens=8, prefix=prefix, batch_size=4)
    assert sizes == [4]
    for s, b in zip(suffixes, batched, strict=True):
        alone = tiny_gemma.generate_ids([list(prefix.ids) + s], max_new_tokens=8, batch_size=1)[0]
        assert b.ids == alone.ids
        assert b.logprobs == pytest.approx(alone.logprobs, abs=1e-4)


@pytest.mark.parametrize("which", ["tiny_lm", "tiny_gemma"])
def test_next_token_ids_equal_the_topk_of_the_log_softmax(which, request):
    """The lean path (head on the allowed rows, no softmax) picks what `next_token_topk` picks, for any allowed set,
    with and without a prefix (Gemma: through its final soft-cap), and a new set is not answered from the old one."""
    lm = request.getfixturevalue(which)
    prefix = lm.encode("a photo of")
    seqs = [[i] for i in range(20, 60)] + [[5, 6], [7, 8, 9]]
    cache = lm.prefix_cache(prefix)
    g = torch.Generator().manual_seed(0)
    for allowed in (None, torch.rand(lm.vocab_size, generator=g) < 0.5, torch.rand(lm.vocab_size, generator=g) < 0.1):
        for k in (1, 3):
            _, ref = lm.next_token_topk(seqs, k=k, prefix=cache, batch_size=7, allowed=allowed)
            got = lm.next_token_ids(seqs, k=k, prefix=cache, batch_size=7, allowed=allowed)
            assert torch.equal(ref, got)
            if allowed is not None:
                assert bool(allowed[got].all())
        _, ref = lm.next_token_topk([prefix + s for s in seqs], k=2, batch_size=5, allowed=allowed)
        assert torch.equal(ref, lm.next_token_ids([prefix + s for s in seqs], k=2, batch_size=5, allowed=allowed))


def test_a_head_with_a_bias_falls_back_to_the_full_logits(tiny_lm, monkeypatch):
    head = tiny_lm.model.get_output_embeddings()
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[200] = 1e4  # token 200 wins wherever it is allowed
    monkeypatch.setattr(tiny_lm.model, "get_output_embeddings", lambda: biased)
    allowed = torch.zeros(tiny_lm.vocab_size, dtype=torch.bool)
    allowed[[150, 200, 250]] = True
    assert tiny_lm.next_token_ids([[5], [6, 7]], allowed=allowed).flatten().tolist() == [200, 200]
    allowed[200] = False
    assert 200 not in tiny_lm.next_token_ids([[5], [6, 7]], allowed=allowed).flatten().tolist()


@pytest.mark.parametrize("which", ["tiny_lm", "tiny_gemma"])
def test_generation_without_logprobs_gives_the_same_ids(which, request):
    lm = request.getfixturevalue(which)
    prefix = lm.prefix_cache(lm.encode("a photo of"))
    allowed = list(range(100, 180))
    rows = [[i] for i in range(20, 50)] + [[5, 6]]
    for cons in (TokenSetConstraint(allowed, 3), None):
        ref = lm.generate_ids(rows, max_new_tokens=3, prefix=prefix, batch_size=8, constraint=cons)
        lean = lm.generate_ids(rows, max_new_tokens=3, prefix=prefix, batch_size=8, constraint=cons, logprobs=False)
        assert [g.ids for g in lean] == [g.ids for g in ref]
        assert all(g.logprobs == [] for g in lean) and all(len(g.logprobs) == len(g.ids) for g in ref)
    # rows with different allowed sets in one batch take the full path and still choose within their own set
    mixed = [TokenSetConstraint(allowed, 2), TokenSetConstraint([300, 301], 2)]
    gens = lm.generate_ids([[20], [21]], max_new_tokens=2, constraint=mixed, logprobs=False)
    assert all(t in allowed for t in gens[0].ids) and set(gens[1].ids) <= {300, 301}
