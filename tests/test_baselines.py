"""The paper's baselines in v2l's framework (V2L Tables 1–4): VQ-GAN with the LLM's codebook and LQAE. Their configs
fix what makes them what they are; LQAE searches by cosine, masks only while training, reads its tokens through a
frozen LM that is neither trained nor saved; each trains, saves and loads like the V2L tokenizer."""

from __future__ import annotations

import json

import pytest
import torch

from v2l.baselines import LQAE, build_network
from v2l.codebooks import Codebook
from v2l.config import ConfigError
from v2l.data import ImageFolder
from v2l.errors import V2LError
from v2l.tokenizer import ImageTokenizer, TokenizerConfig, V2LTokenizer, get_config, local_codebook_for
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
    cfg = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    return BertModel(cfg).eval(), 4


def _lqae(codebook, tiny_bert, **kw):
    lm, mask_id = tiny_bert
    torch.manual_seed(0)
    cfg = get_config("tiny", model="lqae", **kw)
    return LQAE(cfg, lm.get_input_embeddings().weight.detach().clone(), codebook.global_embeddings, lm=lm,
                mask_id=mask_id)


def test_each_baseline_fixes_its_settings():
    vq = get_config("tiny", model="vqgan-llm")
    assert (vq.codebook_source, vq.projector, vq.cross_attention) == ("llm", False, "none")
    lq = get_config("tiny", model="lqae")
    assert (lq.codebook_source, lq.projector, lq.cross_attention, lq.beta, lq.mask_ratio) == (
        "mlm", False, "none", 0.005, 0.5)
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
    out1, ids, loss = net(x)
    out2, _, _ = net(x)
    assert out1.shape == x.shape and ids.shape == (2, 8, 8)
    assert not torch.equal(out1, out2)  # another random half masked
    (out1.square().mean() + loss).backward()
    assert net.encoder.conv_in.weight.grad.abs().sum() > 0  # straight through the LM to the encoder
    assert all(p.grad is None and not p.requires_grad for p in net.lm.parameters())
    assert not any(k.startswith(("lm.", "_lm")) for k in net.state_dict())
    net.eval()
    assert not net.mask((2, 64), "cpu").any()
    with torch.no_grad():
        assert torch.equal(net(x)[0], net(x)[0])


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
    return TokenizerTrainData(ds, idx, nearest_k(emb, codebook.global_embeddings, 3), resolution=16)


def _train_cfg(**kw):
    base = dict(preset="tiny", steps=6, batch_size=4, lr=2e-3, warmup_steps=1, disc_start=10**9,
                perceptual_weight=0.0, checkpoint_every=3, log_every=3)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("model", ["vqgan-llm", "lqae"])
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
    tok = ImageTokenizer.from_pretrained(tmp_path / "run" / "final", codebook=codebook, vl=tiny_vl, lm=tiny_lm,
                                         progress=False)
    assert type(tok.net) is (LQAE if model == "lqae" else V2LTokenizer)
    # Saved and loaded again: identical outputs.
    save_tokenizer_folder(tmp_path / "again", tok.net, codebook.manifest)
    again = ImageTokenizer.from_pretrained(tmp_path / "again", codebook=codebook, vl=tiny_vl, lm=tiny_lm,
                                           progress=False)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(tok.net(x, None)[0], again.net(x, None)[0])
    images = [train_data.images[i].image for i in range(2)]
    assert [im.size for im in tok.reconstruct(images)] == [(16, 16)] * 2
    # Resuming the run as another model is one clear sentence, before any weights load.
    other = "lqae" if model == "vqgan-llm" else "vqgan-llm"
    with pytest.raises(V2LError, match=f"holds a '{model}' run"):
        train(_train_cfg(steps=9), get_config("tiny", model=other), codebook, train_data, tmp_path / "run",
              resume=True, progress=False, local_codebook=local)


def test_a_checkpoint_that_does_not_fit_its_config_is_a_clear_error(codebook, tiny_vl, tiny_lm, tmp_path):
    net = build_network(get_config("tiny"), codebook.local_embeddings, codebook.global_embeddings)
    folder = save_tokenizer_folder(tmp_path / "tok", net, codebook.manifest)
    meta = json.loads((folder / "config.json").read_text())
    meta["model_config"]["cross_attention"] = "none"  # the saved weights hold a cross-attention layer
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(V2LError, match="does not hold a 'v2l' model of its config.json"):
        ImageTokenizer.from_pretrained(folder, codebook=codebook, vl=tiny_vl, progress=False)
