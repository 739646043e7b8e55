"""The paper's baselines in v2l's framework (V2L Tables 1–4): VQ-GAN with the LLM's codebook and LQAE. Their configs
fix what makes them what they are; LQAE searches by cosine, masks only while training, reads its tokens through a
frozen LM that is neither trained nor saved; each trains, saves and loads like the V2L tokenizer."""

from __future__ import annotations

import json

import pytest
import torch

from v2l.baselines import (
    LQAE,
    SPAE,
    candidate_pools,
    dilation_positions,
    dynamic_semantic_term,
    pyramid_sides,
    semantic_loss,
    streaming_average_quantize,
)
from v2l.codebooks import Codebook
from v2l.config import ConfigError
from v2l.data import ImageFolder
from v2l.errors import V2LError
from v2l.models import build_network
from v2l.tokenizer import (
    ImageTokenizer,
    TokenizerConfig,
    V2LTokenizer,
    get_config,
    local_codebook_for,
    local_tokens_for,
)
from v2l.tokenizer.image_tokenizer import save_tokenizer_folder
from v2l.tokenizer.quantizers import LocalQuantizer, nearest_k
from v2l.training import TokenizerTrainData, TrainConfig, train


@pytest.fixture(scope="module")
def codebook(tiny_codebook_dir):
    return Codebook.load(tiny_codebook_dir)


@pytest.fixture(scope="module")
def tiny_bert():
    """A random 2-layer BERT (the class LQAE's default all-MiniLM-L6-v2 is) and its [MASK] id."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    return BertModel(cfg).eval(), 4


def _lqae(codebook, tiny_bert, **kw):
    lm, mask_id = tiny_bert
    torch.manual_seed(0)
    cfg = get_config("tiny", model="lqae", **kw)
    return LQAE(
        cfg, lm.get_input_embeddings().weight.detach().clone(), codebook.global_embeddings, lm=lm, mask_id=mask_id
    )


def test_each_baseline_fixes_its_settings():
    vq = get_config("tiny", model="vqgan-llm")
    assert (vq.codebook_source, vq.projector, vq.cross_attention) == ("llm", False, "none")
    lq = get_config("tiny", model="lqae")
    assert (lq.codebook_source, lq.projector, lq.cross_attention, lq.beta, lq.mask_ratio) == (
        "mlm",
        False,
        "none",
        0.005,
        0.5,
    )
    assert get_config("tiny", model="lqae", mask_ratio=0.25).mask_ratio == 0.25  # a default, not fixed
    with pytest.raises(ConfigError, match="contradicts model 'vqgan-llm'"):
        TokenizerConfig(model="vqgan-llm")  # still the V2L projector and cross-attention
    with pytest.raises(ConfigError, match="contradicts model 'lqae'"):
        get_config("tiny", model="lqae", projector=True)
    with pytest.raises(ConfigError, match="codebook_source"):
        get_config("tiny", codebook_source="mlm")
    with pytest.raises(ConfigError, match="--model"):
        get_config("tiny", model="spae-typo")


def test_cosine_search_hands_on_the_raw_row():
    rows = torch.tensor([[10.0, 0.0], [0.1, 0.1]])
    z = torch.tensor([[1.0, 0.2]]).reshape(1, 2, 1, 1)  # nearest by L2: row 1; by cosine: row 0
    l2 = LocalQuantizer(rows, projector=False)
    cos = LocalQuantizer(rows, projector=False, normalized_search=True)
    assert l2(z)[1].item() == 1
    q, idx, _ = cos(z)
    assert idx.item() == 0
    assert torch.equal(q.flatten(), rows[0])  # the raw row, not its normalised form


def test_lqae_masks_only_while_training_and_keeps_its_lm_frozen(codebook, tiny_bert):
    net = _lqae(codebook, tiny_bert)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    net.train()
    share = net.mask((64, 256), "cpu").float().mean().item()
    assert 0.45 < share < 0.55
    o1, o2 = net(x), net(x)
    out1, ids, loss, out2 = o1.reconstruction, o1.local_ids, o1.vq_loss, o2.reconstruction
    assert out1.shape == x.shape and ids.shape == (2, 8, 8)
    assert not torch.equal(out1, out2)  # another random half masked
    (out1.square().mean() + loss).backward()
    assert net.encoder.conv_in.weight.grad.abs().sum() > 0  # straight through the LM to the encoder
    assert all(p.grad is None and not p.requires_grad for p in net.lm.parameters())
    assert not any(k.startswith(("lm.", "_lm")) for k in net.state_dict())
    net.eval()
    assert not net.mask((2, 64), "cpu").any()
    with torch.no_grad():
        assert torch.equal(net(x).reconstruction, net(x).reconstruction)


def test_lqae_decoder_reads_the_lm_over_masked_tokens(codebook, tiny_bert):
    net = _lqae(codebook, tiny_bert, mask_ratio=1.0).train()
    a = net.local_quantizer.lookup(torch.randint(5, 60, (1, 8, 8)))
    b = net.local_quantizer.lookup(torch.randint(5, 60, (1, 8, 8)))
    with torch.no_grad():
        torch.testing.assert_close(net.read(a), net.read(b))  # all masked: the tokens no longer matter
        net.eval()
        assert not torch.allclose(net.read(a), net.read(b))  # unmasked they do


@pytest.fixture(scope="module")
def train_data(image_folder, tiny_vl, codebook):
    ds = ImageFolder(image_folder)
    idx = list(range(len(ds)))
    emb = tiny_vl.encode_image([ds[i].image for i in idx])
    return TokenizerTrainData(ds, idx, nearest_k(emb, codebook.global_embeddings, 3), resolution=16, embeddings=emb)


def _train_cfg(**kw):
    base = dict(
        preset="tiny",
        steps=6,
        batch_size=4,
        lr=2e-3,
        warmup_steps=1,
        disc_start=10**9,
        perceptual_weight=0.0,
        checkpoint_every=3,
        log_every=3,
    )
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("model", ["vqgan-llm", "lqae", "spae"])
def test_each_baseline_trains_saves_and_loads(model, codebook, train_data, tiny_lm, tiny_vl, tmp_path):
    cfg = get_config("tiny", model=model)
    local = local_codebook_for(cfg, codebook, lm=tiny_lm)
    if model == "vqgan-llm":  # the LLM's own (normalised) input embeddings are the codebook
        emb = torch.nn.functional.normalize(tiny_lm.model.get_input_embeddings().weight.float(), dim=-1)
        assert torch.equal(local, emb)
    rows = train(_train_cfg(), cfg, codebook, train_data, tmp_path / "run", progress=False, local_codebook=local)
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    saved = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    assert saved["model_config"]["model"] == model
    tok = ImageTokenizer.from_pretrained(
        tmp_path / "run" / "final", codebook=codebook, vl=tiny_vl, lm=tiny_lm, progress=False
    )
    assert type(tok.net) is {"lqae": LQAE, "spae": SPAE}.get(model, V2LTokenizer)
    if model == "spae":  # the semantic loss ran (the data carries the images' VL embeddings) and was logged
        assert all(r["semantic"] > 0 for r in rows)
    # Saved and loaded again: identical outputs.
    save_tokenizer_folder(tmp_path / "again", tok.net, codebook.manifest)
    again = ImageTokenizer.from_pretrained(
        tmp_path / "again", codebook=codebook, vl=tiny_vl, lm=tiny_lm, progress=False
    )
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(tok.net(x, None).reconstruction, again.net(x, None).reconstruction)
    images = [train_data.images[i].image for i in range(2)]
    assert [im.size for im in tok.reconstruct(images)] == [(16, 16)] * 2
    # Resuming the run as another model is one clear sentence, before any weights load.
    other = "lqae" if model != "lqae" else "vqgan-llm"
    with pytest.raises(V2LError, match=f"holds a '{model}' run"):
        train(
            _train_cfg(steps=9),
            get_config("tiny", model=other),
            codebook,
            train_data,
            tmp_path / "run",
            resume=True,
            progress=False,
            local_codebook=local,
        )


def test_a_checkpoint_that_does_not_fit_its_config_is_a_clear_error(codebook, tiny_vl, tiny_lm, tmp_path):
    net = build_network(get_config("tiny"), codebook.local_embeddings, codebook.global_embeddings)
    folder = save_tokenizer_folder(tmp_path / "tok", net, codebook.manifest)
    meta = json.loads((folder / "config.json").read_text())
    meta["model_config"]["cross_attention"] = "none"  # the saved weights hold a cross-attention layer
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(V2LError, match="does not hold a 'v2l' model of its config.json"):
        ImageTokenizer.from_pretrained(folder, codebook=codebook, vl=tiny_vl, progress=False)


# ---- SPAE (SPAE §3.1) ----------------------------------------------------------------------------------------------


def test_the_dilation_subsampler_selects_eq_1s_positions():
    for side in (1, 2, 4, 8, 16):
        step = 16 // side  # h' = h_D / h_l; eq. 1 in 1-based rows: h'·i − ⌈h'/2⌉ + 1
        assert dilation_positions(side, 16) == [step * i - -(-step // 2) + 1 - 1 for i in range(1, side + 1)]
    assert dilation_positions(1, 16) == [8]
    assert dilation_positions(2, 16) == [4, 12]
    assert dilation_positions(4, 16) == [2, 6, 10, 14]
    assert dilation_positions(16, 16) == list(range(16))
    assert pyramid_sides(get_config("cpu", model="spae")) == (1, 2, 4, 8, 16, 16)  # k = [0, 1, 2, 3, 4, 4]
    assert pyramid_sides(get_config("tiny", model="spae")) == (1, 2, 4, 8, 8)
    with pytest.raises(ValueError, match="does not divide"):
        dilation_positions(3, 16)


def test_streaming_average_quantization_equals_eqs_2_and_3():
    torch.manual_seed(0)
    codebook = torch.randn(50, 6)
    z = torch.randn(2, 6, 8, 8)
    sides = (1, 2, 4, 8, 8)
    zhat, ids, targets, means = streaming_average_quantize(z, codebook, sides)
    chosen = {}  # (b, row, col) -> embeddings chosen there so far, layer by layer
    for layer, side in enumerate(sides):
        pos = dilation_positions(side, 8)
        for b in range(2):
            for i, r in enumerate(pos):
                for j, c in enumerate(pos):
                    before = chosen.setdefault((b, r, c), [])
                    # eq. 2: z_l = z + Σ_{i<l} (z − e(k_i)) at this position; its token is the nearest code
                    z_l = z[b, :, r, c] + sum((z[b, :, r, c] - e for e in before), torch.zeros(6))
                    torch.testing.assert_close(targets[layer][b, :, i, j], z_l)
                    k = int(ids[layer][b, i, j])
                    assert k == int(((codebook - z_l) ** 2).sum(-1).argmin())
                    before.append(codebook[k])
                    # eq. 3: the running mean of the chosen embeddings, ẑ_{≤l}
                    torch.testing.assert_close(means[layer][b, :, i, j], torch.stack(before).mean(0))
    for (b, r, c), es in chosen.items():
        torch.testing.assert_close(zhat[b, :, r, c], torch.stack(es).mean(0))


def test_a_map_made_of_codes_is_quantized_to_itself():
    torch.manual_seed(1)
    codebook = torch.randn(30, 4)
    ids = torch.randint(0, 30, (1, 8, 8))
    z = codebook[ids].permute(0, 3, 1, 2)
    zhat, layer_ids, _, _ = streaming_average_quantize(z, codebook, (1, 2, 4, 8, 8))
    torch.testing.assert_close(zhat, z)
    assert torch.equal(layer_ids[-1], ids)


def test_candidate_pools_follow_the_relative_similarity():
    image = torch.tensor([[1.0, 0.0]])
    texts = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.5, 0.5], [2.0, 0.0]])
    exclude = torch.tensor([False, False, False, False, True])  # the most similar token is a special token
    pools = candidate_pools(image, texts, (0.95, 0.5, 0.0), exclude)
    # similarities 1, 0.9, 0, 0.5 (excluded: 2) → relative 1, 0.9, 0, 0.5
    assert pools[0].tolist() == [[True, False, False, False, False]]
    assert pools[1].tolist() == [[True, True, False, True, False]]
    assert pools[2].tolist() == [[True, True, True, True, False]]


def test_the_semantic_loss_prefers_codes_in_the_pool():
    codebook = torch.eye(6) * 3
    pool = torch.zeros(1, 6, dtype=torch.bool)
    pool[0, 2] = True
    at = lambda k: codebook[k].reshape(1, 6, 1, 1)  # noqa: E731 - a one-position layer embedding
    near, far = semantic_loss([at(2)], codebook, [pool]), semantic_loss([at(4)], codebook, [pool])
    assert near < far
    z = at(4).clone().requires_grad_(True)
    semantic_loss([z], codebook, [pool]).backward()
    assert z.grad[0, 2, 0, 0] < 0 < z.grad[0, 4, 0, 0]  # descent moves z toward code 2 and away from code 4


def test_the_dynamic_weight_is_stop_gradient():
    app = torch.tensor(2.0, requires_grad=True)
    sem = torch.tensor(4.0, requires_grad=True)
    term = dynamic_semantic_term(app, sem, alpha=1.5)
    assert term.item() == pytest.approx(1.5 * 2.0)  # its value is α · L_app
    term.backward()
    assert app.grad is None or app.grad.item() == 0.0  # w = sg(L_app / L_sem): no gradient through w
    assert sem.grad.item() == pytest.approx(1.5 * 2.0 / 4.0)


def test_spae_tokens_decode_like_its_forward(codebook):
    torch.manual_seed(0)
    llm_codebook = torch.nn.functional.normalize(torch.randn(40, 12), dim=-1)
    net = SPAE(
        get_config("tiny", model="spae"),
        llm_codebook,
        codebook.global_embeddings,
        token_text_embeddings=torch.randn(40, codebook.local_embeddings.shape[1]),
    ).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        o = net(x)
        x_hat, ids, commit, sem = o.reconstruction, o.local_ids, o.vq_loss, o.semantic_loss
        assert ids.shape == (2, 1 + 4 + 16 + 64 + 64) and sem is None and commit > 0
        torch.testing.assert_close(net.decode_tokens(ids), x_hat)
        # The first layers alone (the understanding tokens) are the full pyramid's first tokens.
        assert torch.equal(net.first_layers(x, 2), ids[:, :5]) and torch.equal(net.first_layers(x, 3), ids[:, :21])


# ---- the words each model gives an LLM ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["v2l", "vqgan-llm", "lqae", "spae"])
def test_token_words_for_every_model(model, codebook, tiny_lm, tiny_vl, image_folder, tmp_path):
    from v2l.baselines import token_words, with_token_words
    from v2l.tasks.grid import FeatureStore

    cfg = get_config("tiny", model=model)
    exclude, display = local_tokens_for(cfg, codebook)
    torch.manual_seed(0)
    net = build_network(
        cfg,
        local_codebook_for(cfg, codebook, lm=tiny_lm),
        codebook.global_embeddings,
        exclude=exclude,
        token_text=codebook.local_embeddings,
    )
    folder = save_tokenizer_folder(tmp_path / model, net, codebook.manifest)
    tok = ImageTokenizer.from_pretrained(folder, codebook=codebook, vl=tiny_vl, lm=tiny_lm, progress=False)
    images = [ImageFolder(image_folder)[i].image for i in range(3)]
    words = token_words(tok, images, 5 if model in ("spae", "v2l") else None)
    want = {"v2l": 5, "spae": 5, "vqgan-llm": 64, "lqae": 64}[model]  # tiny: an 8 × 8 map; SPAE layers 1–2
    assert [len(w) for w in words] == [want] * 3 and all(isinstance(t, str) and t for w in words for t in w)
    if model == "lqae":  # WordPieces of MiniLM's vocabulary, never its special tokens
        assert not any(t in ("[CLS]", "[SEP]", "[PAD]", "[MASK]") or t.startswith("[unused") for w in words for t in w)
    if model == "spae":
        with pytest.raises(V2LError, match="must be one of 1, 5, 21"):
            token_words(tok, images, 6)
    # The same tokens as ids, and their VL text embeddings (what the semantic measures compare with the image).
    from v2l.baselines import token_ids, token_text_embeddings, token_texts

    ids = token_ids(tok, images, 5 if model in ("spae", "v2l") else None)
    assert token_texts(tok, ids) == words
    emb = token_text_embeddings(tok, ids)
    d = codebook.global_embeddings.shape[1]
    assert [e.shape for e in emb] == [(want, d)] * 3
    torch.testing.assert_close(emb[0].norm(dim=-1), torch.ones(want))
    table = {"v2l": codebook.global_embeddings, "lqae": None}.get(model, codebook.local_embeddings)
    if table is not None:  # V2L's global rows; an LLM token's local (VL text) row
        assert torch.equal(emb[1], table[ids[1]].float())
    store = FeatureStore(["a", "b", "c"], ["x", "y", "x"], torch.zeros(3, 2), [["old"]] * 3)
    assert with_token_words(store, words).words == words and store.words == [["old"]] * 3
    with pytest.raises(V2LError, match="2 word lists for a pool of 3"):
        with_token_words(store, words[:2])


def test_heldout_images_follow_the_pool_order(data_root):
    from v2l.data import WebDatasetShards
    from v2l.tasks.grid import FeatureStore, heldout_images

    ds = WebDatasetShards("tiny-imagenet-200", "val", root=data_root)
    keys = [f"val/{ds.keys[5]}", f"val/{ds.keys[2]}"]
    store = FeatureStore(keys, ["a", "b"], torch.zeros(2, 2), [[], []])
    images = heldout_images(store, data_root)
    assert [im.tobytes() for im in images] == [ds[5].image.tobytes(), ds[2].image.tobytes()]
    with pytest.raises(V2LError, match="1 held-out images"):
        heldout_images(
            FeatureStore(keys + ["val/no-such-key"], ["a", "b", "c"], torch.zeros(3, 2), [[]] * 3), data_root
        )


# ---- LeCAM (SPAE §4.1's φ; Tseng et al. 2021) ------------------------------------------------------------------------


def test_lecam_follows_its_moving_averages():
    from v2l.training.discriminator import LeCAM

    reg = LeCAM(decay=0.5)
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0])
    r = reg(real, fake)  # averages first: α_R = 0.5 · 2 = 1, α_F = 0.5 · −1 = −0.5
    assert reg.ema.tolist() == [1.0, -0.5]
    want = ((1 + 0.5) ** 2 + (3 + 0.5) ** 2) / 2 + (3**2 + 1**2) / 2
    assert r.item() == pytest.approx(want)
    # Real outputs below α_F and fake above α_R cost nothing (the relu of the authors' code).
    reg2 = LeCAM(decay=0.0)
    assert reg2(torch.tensor([-1.0]), torch.tensor([1.0])).item() == 0.0


def test_lecam_trains_resumes_and_a_changed_setting_is_refused(codebook, train_data, tiny_lm, tmp_path):
    from safetensors.torch import load_file

    cfg = get_config("tiny", model="spae")
    local = local_codebook_for(cfg, codebook, lm=tiny_lm)
    run = tmp_path / "run"
    train(
        _train_cfg(steps=4, disc_start=1, lecam_weight=0.1, checkpoint_every=2),
        cfg,
        codebook,
        train_data,
        run,
        progress=False,
        local_codebook=local,
    )
    disc = load_file(next(run.glob("checkpoint-*")) / "discriminator.safetensors")
    assert "lecam.ema" in disc and disc["lecam.ema"].abs().sum() > 0  # the averages moved and were saved
    rows = train(
        _train_cfg(steps=6, disc_start=1, lecam_weight=0.1, checkpoint_every=2),
        cfg,
        codebook,
        train_data,
        run,
        resume=True,
        progress=False,
        local_codebook=local,
    )
    assert rows and all(torch.isfinite(torch.tensor(r["d"])) for r in rows)
    with pytest.raises(V2LError, match="was trained with LeCAM on: pass the run's --lecam-weight"):
        train(
            _train_cfg(steps=8, disc_start=1),
            cfg,
            codebook,
            train_data,
            run,
            resume=True,
            progress=False,
            local_codebook=local,
        )
