"""The LM head's bfloat16 screen (`v2l.backbones.lm_head`): its bound holds, its top-k is float32's, near-ties fall
back to float32, and without the bound the same near-ties would change the answer."""

from __future__ import annotations

import torch

from v2l.backbones import lm_head
from v2l.backbones.lm_head import OUTPUT_C, ScreenedHead


def _rows(m: int = 3000, d: int = 96, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand(m, 1, generator=g) * 4 + 0.2  # row norms vary ~20x, as an LLM head's do
    return torch.randn(m, d, generator=g) * scale


def _hidden(n: int, d: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * (torch.rand(n, 1, generator=g) * 50 + 1)


def _near_ties(d: int = 96, m: int = 400, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """60 rows that differ by 10⁻³ of a shared direction: each hidden state has its own winner among them by ~0.3
    logits, below bfloat16's resolution at logits ~100 (0.5), so only the proof can tell them apart."""
    g = torch.Generator().manual_seed(seed)
    base, dirs = torch.randn(1, d, generator=g), torch.randn(60, d, generator=g)
    rows = torch.cat([base + 1e-3 * dirs, torch.randn(m - 60, d, generator=g) * 0.3])
    rows = rows[torch.randperm(m, generator=g)]
    return rows, base + 3 * dirs[torch.arange(64) % 60]


def test_the_bound_holds_for_every_logit():
    rows, h = _rows(), _hidden(256, 96)
    scr = ScreenedHead(rows)
    bound_col = lm_head.BOUND_C * h.norm(dim=-1, keepdim=True)
    upper = (torch.cat([h, bound_col], 1).to(torch.bfloat16) @ scr.augmented.T).float()
    exact = h.double() @ rows.double().T
    assert bool((upper + OUTPUT_C * upper.abs() >= exact).all())
    plain = (h.to(torch.bfloat16) @ rows.to(torch.bfloat16).T).double()  # bfloat16 alone misses both ways
    assert bool((plain < exact).any()) and bool((plain > exact).any())


def test_screened_topk_is_the_float32_topk():
    rows, h = _rows(), _hidden(300, 96)
    scr = ScreenedHead(rows)
    ref = h @ rows.T
    for k in (1, 3):
        got = scr.topk(h, k)
        assert torch.equal(got, ref.topk(k, dim=-1).indices)
    assert scr.fallback_rows < 0.2 * 2 * len(h)  # most rows are proven without the float32 fallback


def test_near_ties_fall_back_to_float32():
    rows, h = _near_ties()
    scr = ScreenedHead(rows)
    got = scr.topk(h, 1)
    assert torch.equal(got, (h @ rows.T).topk(1, dim=-1).indices)
    assert scr.fallback_rows > len(h) // 2


def test_without_the_bound_near_ties_change_the_answer(monkeypatch):
    """The test above would catch a screen that trusts bfloat16: with the error terms set to 0 it chooses wrongly."""
    monkeypatch.setattr(lm_head, "BOUND_C", 0.0)
    monkeypatch.setattr(lm_head, "OUTPUT_C", 0.0)
    rows, h = _near_ties()
    got = ScreenedHead(rows).topk(h, 1)
    assert int((got != (h @ rows.T).topk(1, dim=-1).indices).sum()) > 0


def test_the_language_model_uses_the_screen_with_the_same_ids(tiny_lm, monkeypatch):
    """Forced on (this CPU may lack native bfloat16): `next_token_ids` and lean generation keep their ids."""
    from v2l.backbones import TokenSetConstraint
    from v2l.backbones import llm_scoring as lm_mod  # the scoring room decides on the screen

    monkeypatch.setattr(lm_mod, "bf16_matmul_is_fast", lambda device: True)
    prefix = tiny_lm.prefix_cache(tiny_lm.encode("a photo of"))
    allowed = torch.zeros(tiny_lm.vocab_size, dtype=torch.bool)
    allowed[20:300] = True
    seqs = [[i] for i in range(20, 80)]
    out = {}
    for screen in (True, False):
        tiny_lm.screen_head, tiny_lm._head_rows = screen, None
        try:
            ids = tiny_lm.next_token_ids(seqs, k=2, prefix=prefix, batch_size=16, allowed=allowed)
            assert isinstance(tiny_lm._head_rows[2], ScreenedHead) == screen
            gens = tiny_lm.generate_ids(
                seqs,
                max_new_tokens=3,
                prefix=prefix,
                batch_size=16,
                logprobs=False,
                constraint=TokenSetConstraint(allowed.nonzero().flatten().tolist(), 3),
            )
            out[screen] = (ids, [g.ids for g in gens])
        finally:
            tiny_lm.screen_head, tiny_lm._head_rows = True, None
    assert torch.equal(out[True][0], out[False][0]) and out[True][1] == out[False][1]
