import json

import pytest
import torch

from v2l.codebooks import Codebook
from v2l.data import ImageFolder
from v2l.tokenizer import V2LTokenizer, get_config
from v2l.tokenizer.quantizers import GlobalQuantizer, LocalQuantizer, nearest_codes, nearest_codes_naive, nearest_k
from v2l.training import TokenizerTrainData, TrainConfig, train


@pytest.fixture(scope="module")
def codebook(tiny_codebook_dir):
    return Codebook.load(tiny_codebook_dir)


@pytest.fixture(scope="module")
def train_data(image_folder, tiny_vl, codebook):
    ds = ImageFolder(image_folder)
    idx = list(range(len(ds)))
    emb = tiny_vl.encode_image([ds[i].image for i in idx])
    return TokenizerTrainData(ds, idx, nearest_k(emb, codebook.global_embeddings, 3), resolution=16)


def _tiny_model(codebook, **kw):
    torch.manual_seed(0)
    return V2LTokenizer(get_config("tiny", **kw), codebook.local_embeddings, codebook.global_embeddings)


def test_nearest_codes_chunked_equals_cdist():
    g = torch.Generator().manual_seed(0)
    x, cb = torch.randn(300, 16, generator=g), torch.randn(1000, 16, generator=g)
    want = nearest_codes_naive(x, cb)
    for chunk in (7, 128, 5000):
        assert torch.equal(nearest_codes(x, cb, chunk=chunk), want)


def test_chunked_bf16_search_equals_the_whole_bf16_formula():
    """The chunked bf16 search (argmax of x·e − ‖e‖²/2 per chunk) picks exactly what argmin(‖e‖² − 2 x·e) over the
    whole codebook picks with the same bf16 products (no rounding added by the chunking or the rewriting)."""
    torch.manual_seed(5)
    cb = torch.nn.functional.normalize(torch.randn(3000, 24), dim=-1)
    x = torch.randn(500, 24) * 0.3
    whole = ((cb * cb).sum(-1).unsqueeze(0) - 2.0 * (x.bfloat16() @ cb.bfloat16().T).float()).argmin(-1)
    for chunk in (256, 1000, 4096):
        assert torch.equal(nearest_codes(x, cb, chunk=chunk, dtype=torch.bfloat16), whole), chunk


def test_a_frozen_codebook_is_prepared_once_and_never_served_stale():
    from v2l.tokenizer import quantizers

    g = torch.Generator().manual_seed(2)
    cb, x = torch.randn(2000, 32, generator=g), torch.randn(100, 32, generator=g)
    for dtype in (torch.float32, torch.bfloat16):
        quantizers._PREPARED.clear()
        first = nearest_codes(x, cb, chunk=512, dtype=dtype)
        assert quantizers._PREPARED["ref"]() is cb  # kept: a frozen codebook
        assert torch.equal(nearest_codes(x, cb, chunk=512, dtype=dtype), first)
        cb[first[0]] += 100.0  # an in-place change: the kept operands are stale and must not be used
        moved = nearest_codes(x, cb, chunk=512, dtype=dtype)
        quantizers._PREPARED.clear()
        assert torch.equal(moved, nearest_codes(x, cb, chunk=512, dtype=dtype)) and moved[0] != first[0]
        cb[first[0]] -= 100.0
    trained = torch.randn(500, 32, requires_grad=True)
    quantizers._PREPARED.clear()
    with torch.no_grad():
        nearest_codes(x, trained, chunk=128)
    assert "ref" not in quantizers._PREPARED  # a codebook with a gradient is a new tensor every step: never kept


def test_bf16_search_mostly_agrees_with_fp32():
    g = torch.Generator().manual_seed(1)
    cb = torch.nn.functional.normalize(torch.randn(4000, 64, generator=g), dim=-1)
    x = torch.nn.functional.normalize(torch.randn(500, 64, generator=g), dim=-1)
    agree = (nearest_codes(x, cb, dtype=torch.bfloat16) == nearest_codes(x, cb)).float().mean()
    assert agree > 0.9
    # where they differ, bf16's choice is a near-tie: within 1 % of the best squared distance
    a, b = nearest_codes(x, cb, dtype=torch.bfloat16), nearest_codes(x, cb)
    da, db = ((x - cb[a]) ** 2).sum(-1), ((x - cb[b]) ** 2).sum(-1)
    assert torch.all(da <= db * 1.01 + 1e-6)


def test_quantizer_contract_and_straight_through(codebook):
    lq = LocalQuantizer(codebook.local_embeddings, projector=True, beta=0.3, chunk=50)
    z = torch.randn(2, codebook.local_embeddings.shape[1], 4, 4, requires_grad=True)
    q, idx, loss = lq(z)
    assert q.shape == z.shape and idx.shape == (2, 4, 4) and loss.ndim == 0
    # forward value = the chosen (projected) codebook rows
    assert torch.allclose(q.permute(0, 2, 3, 1), lq.embeddings()[idx], atol=1e-6)
    # straight-through: d(sum q)/dz is the identity
    (g,) = torch.autograd.grad(q.sum(), z)
    assert torch.allclose(g, torch.ones_like(z))
    # the codebook term trains the projector; the frozen codebook has no gradient
    loss.backward()
    assert lq.projector.weight.grad is not None and lq.projector.weight.grad.abs().sum() > 0
    assert not lq.codebook.requires_grad
    gq = GlobalQuantizer(codebook.global_embeddings, k=3)
    emb, gidx, gloss = gq(codebook.global_embeddings[:2])
    assert gidx[:, 0].tolist() == [0, 1] and emb.shape == (2, 3, codebook.global_embeddings.shape[1])
    assert float(gloss) == 0.0


def test_excluded_tokens_are_never_chosen(codebook):
    n = codebook.local_embeddings.shape[0]
    exclude = torch.zeros(n, dtype=torch.bool)
    exclude[: n // 2] = True
    lq = LocalQuantizer(codebook.local_embeddings, projector=False, exclude=exclude)
    _, idx, _ = lq(codebook.local_embeddings[: n // 2].T.reshape(1, -1, 1, n // 2))
    assert idx.min() >= n // 2


def test_shapes_and_gradients(codebook):
    model = _tiny_model(codebook)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    gids = torch.tensor([[0, 1, 2], [2, 1, 0]])
    out = model(x, gids)
    x_hat, lids = out.reconstruction, out.local_ids
    assert x_hat.shape == x.shape and lids.shape == (2, 8, 8)
    assert lids.max() < codebook.local_embeddings.shape[0]
    torch.nn.functional.mse_loss(x_hat, x).backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0  # reached the encoder through the quantizer
    assert model.decoder.cross.kv.weight.grad.abs().sum() > 0  # the global tokens are used
    # decode_tokens(encode(x)) is the forward pass
    with torch.no_grad():
        again = model.decode_tokens(lids, gids)
    assert torch.allclose(again, x_hat.detach(), atol=1e-5)


def _cfg(**kw):
    base = dict(
        preset="tiny",
        steps=150,
        batch_size=4,
        lr=2e-3,
        warmup_steps=5,
        disc_start=10**9,
        perceptual_weight=0.0,
        checkpoint_every=50,
        log_every=10,
    )
    return TrainConfig(**{**base, **kw})


def test_tiny_model_overfits_four_images(codebook, train_data, tmp_path):
    four = TokenizerTrainData(train_data.images, train_data.indices[:4], train_data.global_ids[:4], 16)
    rows = train(_cfg(), get_config("tiny"), codebook, four, tmp_path / "run", progress=False)
    first, last = rows[0]["rec"], rows[-1]["rec"]
    assert last < first / 4, (first, last)  # the reconstruction loss falls by at least 4×
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,loss") and len(log) == 1 + 15


def test_kill_and_resume_reproduces_the_losses(codebook, train_data, tmp_path):
    cfg = _cfg(steps=40, checkpoint_every=10, disc_start=20, perceptual_weight=0.0, gan_weight=0.1, log_every=5)
    full = train(cfg, get_config("tiny"), codebook, train_data, tmp_path / "full", progress=False)
    train(cfg, get_config("tiny"), codebook, train_data, tmp_path / "killed", progress=False, stop_after=25)
    assert json.loads((tmp_path / "killed" / "latest.json").read_text())["step"] == 20
    resumed = train(cfg, get_config("tiny"), codebook, train_data, tmp_path / "killed", resume=True, progress=False)
    assert [r["step"] for r in resumed] == [25, 30, 35, 40]
    for a, b in zip(full[-4:], resumed, strict=True):
        for k in ("loss", "rec", "vq", "g", "d"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), (k, a, b)
    csv_steps = [int(line.split(",")[0]) for line in (tmp_path / "killed" / "log.csv").read_text().splitlines()[1:]]
    assert csv_steps == list(range(5, 45, 5))  # rows after the checkpoint were dropped and logged again once


def test_refuses_to_overwrite_a_run(codebook, train_data, tmp_path):
    from v2l.errors import V2LError

    train(_cfg(steps=10, checkpoint_every=5), get_config("tiny"), codebook, train_data, tmp_path / "r", progress=False)
    with pytest.raises(V2LError, match="--resume"):
        train(_cfg(steps=10), get_config("tiny"), codebook, train_data, tmp_path / "r", progress=False)


def test_resume_keeps_the_runs_own_codebook(codebook, train_data, tmp_path):
    """A run resumes with the codebook it started with (config.json names it), not today's default, and a resume
    handed another codebook is refused: the global embeddings would change under the trained decoder."""
    import dataclasses

    from v2l.backbones.vision_language import vl_spec
    from v2l.codebooks import CodebookConfig
    from v2l.errors import V2LError
    from v2l.training.trainer import run_codebook

    run = tmp_path / "r"
    train(
        _cfg(steps=10, checkpoint_every=5), get_config("tiny"), codebook, train_data, run, progress=False, stop_after=5
    )
    llm, spec, key = run_codebook(run)
    assert (llm, spec) == (codebook.manifest["llm"]["name"], vl_spec(codebook.manifest["vl"]))
    assert key == CodebookConfig(**codebook.manifest["config"]).key()
    other = dataclasses.replace(
        codebook, manifest={**codebook.manifest, "config": {**codebook.manifest["config"], "filter_top_k": 4}}
    )
    with pytest.raises(V2LError, match="trains with codebook"):
        train(
            _cfg(steps=10, checkpoint_every=5), get_config("tiny"), other, train_data, run, resume=True, progress=False
        )
    rows = train(
        _cfg(steps=10, checkpoint_every=5), get_config("tiny"), codebook, train_data, run, resume=True, progress=False
    )
    assert rows[-1]["step"] == 10
    assert run_codebook(tmp_path / "no-run") is None


def test_bf16_mixed_precision_runs_under_autocast(codebook, train_data, tmp_path):
    """`--mixed-precision bf16` goes through Accelerate's autocast (on CPU here, CUDA on a GPU): the losses differ
    from the fp32 run's but stay close and finite, and the weights (and the checkpoint) stay fp32. Only the first
    step is compared closely: two training trajectories drift apart step by step (by 13 % after 20 steps on some
    CPUs), which says nothing about bf16."""
    cfg = _cfg(steps=8, log_every=1)
    fp32 = train(cfg, get_config("tiny"), codebook, train_data, tmp_path / "fp32", progress=False)
    bf16 = train(
        _cfg(steps=8, log_every=1, mixed_precision="bf16"),
        get_config("tiny"),
        codebook,
        train_data,
        tmp_path / "bf16",
        progress=False,
    )
    assert [r["rec"] for r in fp32] != [r["rec"] for r in bf16]  # autocast really ran
    assert bf16[0]["rec"] == pytest.approx(fp32[0]["rec"], rel=0.02)
    assert all(torch.isfinite(torch.tensor(b["loss"])) for b in bf16)
    assert bf16[-1]["rec"] < bf16[0]["rec"]  # and it trains
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "bf16" / "final" / "model.safetensors")
    assert {v.dtype for v in weights.values()} == {torch.float32}


def test_hnsw_search_finds_the_exact_nearest_codes_and_refuses_a_stale_index():
    from v2l.errors import V2LError

    torch.manual_seed(0)
    codebook = torch.nn.functional.normalize(torch.randn(4000, 16), dim=-1)
    q = LocalQuantizer(codebook, exclude=torch.arange(4000) < 10).eval()
    z = codebook[torch.randint(10, 4000, (2, 8, 8))].permute(0, 3, 1, 2) + 0.02 * torch.randn(2, 16, 8, 8)
    exact = q(z)[1]
    q.use_search("hnsw", ef_search=128)
    approx = q(z)[1]
    assert (approx == exact).float().mean() >= 0.95  # recall@1 on near-code queries
    assert not (approx < 10).any()  # excluded rows stay unreachable
    q.train()
    assert torch.equal(q(z)[1], exact)  # training always searches exactly
    q.eval()
    with torch.no_grad():
        q.projector.weight.mul_(1.01)  # an optimiser step
    with pytest.raises(RuntimeError, match="use_search"):
        q(z)
    with pytest.raises(V2LError, match="exact, hnsw"):
        q.use_search("kd-tree")


def test_resume_with_more_steps_extends_the_schedule(codebook, train_data, tmp_path, capfd):
    """A finished run resumed with a larger --steps continues from its last step on the longer schedule (the learning
    rate follows the new length), says so, and exports the new final model; fewer steps than done is refused."""
    from v2l.errors import V2LError
    from v2l.training.schedule import lr_lambda

    run = tmp_path / "r"
    train(
        _cfg(steps=10, checkpoint_every=5, log_every=1), get_config("tiny"), codebook, train_data, run, progress=False
    )
    longer = _cfg(steps=16, checkpoint_every=1, log_every=1)
    first = train(longer, get_config("tiny"), codebook, train_data, run, resume=True, progress=False, stop_after=12)
    assert "planned for 10 steps; it continues on a schedule of 16" in capfd.readouterr().err
    # the old schedule ended at rate 0: the first step after the extension must already move the weights
    from safetensors.torch import load_file

    before, after = (load_file(run / f"checkpoint-{s:07d}" / "model.safetensors") for s in (10, 11))
    assert any(not torch.equal(before[k], after[k]) for k in before)
    rows = train(longer, get_config("tiny"), codebook, train_data, run, resume=True, progress=False)
    assert [r["step"] for r in first] == [11, 12] and [r["step"] for r in rows] == list(range(12, 17))
    for r in rows:  # the rate set for the next step: the new schedule's
        assert r["lr"] == pytest.approx(longer.lr * lr_lambda(longer)(r["step"]), rel=1e-6)
    assert json.loads((run / "final" / "config.json").read_text())["trained_steps"] == 16
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 16
    with pytest.raises(V2LError, match="already at step 16"):
        train(
            _cfg(steps=12, checkpoint_every=5),
            get_config("tiny"),
            codebook,
            train_data,
            run,
            resume=True,
            progress=False,
        )


def test_a_wider_network_is_recorded_and_its_resume_checked(codebook, train_data, tmp_path):
    """`--ch` / `--num-res-blocks` (`get_config` overrides) build a bigger network, which the run and its final folder
    record; resuming it at another width is refused in one sentence naming the width."""
    from v2l.errors import V2LError

    base, wide = get_config("tiny"), get_config("tiny", ch=24, num_res_blocks=2)
    count = [
        sum(p.numel() for p in V2LTokenizer(c, codebook.local_embeddings, codebook.global_embeddings).parameters())
        for c in (base, wide)
    ]
    assert count[1] > 1.5 * count[0]
    run = tmp_path / "r"
    train(_cfg(steps=2, checkpoint_every=1, log_every=1), wide, codebook, train_data, run, progress=False)
    saved = json.loads((run / "final" / "config.json").read_text())["model_config"]
    assert (saved["ch"], saved["num_res_blocks"]) == (24, 2)
    with pytest.raises(V2LError, match=r"ch 24 \(asked: 16\)"):
        train(_cfg(steps=4), base, codebook, train_data, run, resume=True, progress=False)


def test_train_only_decoder_keeps_the_encoder_and_decodes_the_frozen_encoders_codes(codebook, train_data, tmp_path):
    """`--init` starts from a trained folder's weights; `--train-only decoder` updates the decoder alone (the encoder
    and projector stay bit-identical), from each image's local token ids under the frozen encoder, computed once and
    kept in the run; a resume with another `--train-only` is refused."""
    from safetensors.torch import load_file

    from v2l.errors import ConfigError, V2LError
    from v2l.training.decoder_only import local_codes

    with pytest.raises(ConfigError, match="--init"):
        _cfg(train_only="decoder")
    train(_cfg(steps=3, checkpoint_every=3), get_config("tiny"), codebook, train_data, tmp_path / "a", progress=False)
    start = load_file(tmp_path / "a" / "final" / "model.safetensors")
    cfg = _cfg(steps=6, checkpoint_every=3, init=str(tmp_path / "a" / "final"), train_only="decoder")
    rows = train(cfg, get_config("tiny"), codebook, train_data, tmp_path / "b", progress=False)
    assert rows[-1]["vq"] == 0.0  # no encoder ran in the step
    end = load_file(tmp_path / "b" / "final" / "model.safetensors")
    assert start.keys() == end.keys()
    moved = {k for k in start if not torch.equal(start[k], end[k])}
    assert moved and all(k.startswith("decoder.") for k in moved)
    assert "local_quantizer.projector.weight" in start  # the projector is among what stayed
    net = _tiny_model(codebook)
    net.load_state_dict(start)
    with torch.no_grad():
        want = net.encode(torch.stack([train_data[i]["pixels"] for i in range(len(train_data))]))[1]
    parts = sorted((tmp_path / "b" / "local-codes").glob("part-*.safetensors"))
    assert len(parts) == 1 and torch.equal(load_file(parts[0])["ids"].long(), want)

    class Once:  # the parts are read back, not recomputed: an encoder that fails must not be called
        process_index, num_processes, device, is_main_process = 0, 1, torch.device("cpu"), True

        def wait_for_everyone(self):
            pass

    assert torch.equal(local_codes(None, train_data, tmp_path / "b", Once()).long(), want)
    with pytest.raises(V2LError, match="started with --train-only decoder"):
        train(
            _cfg(steps=8, init=str(tmp_path / "a" / "final")),
            get_config("tiny"),
            codebook,
            train_data,
            tmp_path / "b",
            resume=True,
            progress=False,
        )
    with pytest.raises(V2LError, match="ch 16 \\(run: 24\\)"):
        train(
            _cfg(steps=2, init=str(tmp_path / "a" / "final")),
            get_config("tiny", ch=24),
            codebook,
            train_data,
            tmp_path / "c",
            progress=False,
        )
