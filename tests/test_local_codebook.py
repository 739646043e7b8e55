"""The local codebook: computed from distinct, length-sorted encoder inputs (equal to the plain computation), and
the shipped packed form (float16, exact identity match only)."""

import json

import torch

from v2l.codebooks import Codebook, ensure_local_embeddings
from v2l.codebooks.local import (
    embed_local_codebook,
    local_identity,
    local_texts,
    pack_local_codebook,
    unpack_local_codebook,
)
from v2l.codebooks.templates import embed_entries


def test_distinct_sorted_computation_equals_the_plain_one(tiny_lm, tiny_vl, tmp_path):
    templates = ("a photo of a {}.", "itap of a {}.")
    plain = embed_entries(tiny_vl, local_texts(tiny_lm.vocab), templates)
    fast = embed_local_codebook(tiny_vl, tiny_lm.vocab, templates, chunk_size=50, work=tmp_path / "work")
    assert fast.shape == plain.shape and torch.allclose(fast, plain, atol=1e-5)
    again = embed_local_codebook(tiny_vl, tiny_lm.vocab, templates, chunk_size=50, work=tmp_path / "work")
    assert torch.equal(again, fast)  # resumed from the finished chunks


def test_embed_texts_once_per_encoder_input_and_named_by_its_texts(tiny_lm, tiny_vl, tmp_path):
    from v2l.codebooks.local import embed_texts
    from v2l.data import Chunks

    texts = ["cat", "a red car", "cat", "dog", "a red car", "x"]
    calls = []
    plain = embed_entries(tiny_vl, texts, ("a photo of a {}.",))
    chunks = Chunks(tmp_path / "parts", lambda stage, c: calls.append(stage))
    got = embed_texts(tiny_vl, texts, ("a photo of a {}.",), chunk_size=2, chunks=chunks, stage="t")
    assert torch.allclose(got, plain, atol=1e-5) and torch.equal(got[0], got[2])
    assert len(calls) == 2  # 4 distinct inputs in chunks of 2
    other = embed_texts(tiny_vl, ["dog", "x"], ("a photo of a {}.",), chunk_size=2, chunks=chunks, stage="t")
    assert len(calls) == 3 and len(set(calls)) == 2  # another text list: its own chunk names, not the first one's
    assert torch.allclose(other, plain[[3, 5]], atol=1e-5)


def test_pack_round_trip_is_float16_exact_and_small():
    g = torch.Generator().manual_seed(0)
    rows = torch.nn.functional.normalize(torch.randn(300, 64, generator=g), dim=-1)
    emb = rows[torch.randint(0, 300, (1000,), generator=g)]  # duplicated rows, as tokens share encoder inputs
    data = pack_local_codebook(emb, {"k": 1}, [f"t{i}" for i in range(1000)], ["word"] * 1000)
    header, back = unpack_local_codebook(data)
    assert header["identity"] == {"k": 1} and header["rows"][0] <= 300 and header["display"][7] == "t7"
    assert torch.equal(back, emb.half().float())
    assert len(data) < 300 * 64 * 2 + 1000 * 4 + 20000  # distinct rows once, not 1000


def test_shipped_pack_is_used_only_for_its_exact_identity(tiny_codebook_dir, tiny_vl, tiny_lm, tmp_path, monkeypatch):
    import shutil

    from v2l.codebooks import artefact

    folder = tmp_path / "global-only"
    shutil.copytree(tiny_codebook_dir, folder)
    full = Codebook.load(folder)
    (folder / "local_embeddings.safetensors").unlink()
    (folder / "local_vocab.json").unlink()
    fake = 0.5 * full.local_embeddings  # recognisable: a shipped pack, not a computation
    res = tmp_path / "resources"
    (res / "tiny__hf-clip").mkdir(parents=True)
    (res / "tiny__hf-clip" / "manifest.json").write_text(json.dumps(full.manifest))
    (res / "tiny__hf-clip" / artefact.LOCAL_PACK).write_bytes(
        pack_local_codebook(fake, local_identity(full.manifest), ["d"] * len(fake), ["word"] * len(fake))
    )
    identity = local_identity(full.manifest)
    monkeypatch.setattr(artefact, "RESOURCES", res)
    (res / "tiny__hf-clip" / artefact.LOCAL_PACK_IDENTITY).write_text(json.dumps({**identity, "templates": ["x {}"]}))
    got = ensure_local_embeddings(Codebook.load(folder), tiny_vl, lm=tiny_lm, progress=False)
    assert torch.allclose(got.local_embeddings, full.local_embeddings, atol=1e-5)  # identity differs: computed
    (folder / "local_embeddings.safetensors").unlink()
    (folder / "local_vocab.json").unlink()
    (res / "tiny__hf-clip" / artefact.LOCAL_PACK_IDENTITY).write_text(json.dumps(identity))
    got = ensure_local_embeddings(Codebook.load(folder), tiny_vl, progress=False)  # no LLM needed
    assert torch.equal(got.local_embeddings, fake.half().float()) and got.local_display[0] == "d"


def test_the_shipped_pack_serves_every_conse_top_t_but_not_another_text_tower():
    from v2l.codebooks import shipped_vocab
    from v2l.codebooks.artefact import shipped_local_codebook

    manifest = json.loads((shipped_vocab("smollm2-135m", "conse") / "manifest.json").read_text())
    assert manifest["vl"]["top_t"] == 10 and shipped_local_codebook(manifest) is not None
    # ConSE's top-T changes image embeddings only; the local codebook (text embeddings of every token) is the same
    assert shipped_local_codebook({**manifest, "vl": {**manifest["vl"], "top_t": 3}}) is not None
    assert shipped_local_codebook({**manifest, "vl": {**manifest["vl"], "text_tower": "other"}}) is None
    assert shipped_local_codebook({**manifest, "templates": ["x {}"]}) is None
