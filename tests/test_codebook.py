import hashlib
import json

import pytest
import torch

from v2l.codebooks import (
    Codebook,
    CodebookConfig,
    build_codebook,
    candidate_subwords,
    check_manifest,
    extend_greedy,
    extend_once,
    filter_candidates,
    word_mask,
)
from v2l.codebooks.screening import confirm_screened
from v2l.errors import ManifestMismatchError, V2LError


def _cfg(image_folder, **kw):
    base = dict(
        llm="tiny",
        vl="hf-clip",
        filter_data=str(image_folder),
        filter_split=None,
        filter_classes="all",
        filter_per_class=0,
        templates="single",
        chunk_size=64,
        batch_size=32,
    )
    return CodebookConfig(**{**base, **kw})


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_expansion_by_ids_matches_a_manual_loop(tiny_lm):
    prefix = tiny_lm.encode("a photo of")
    entries = [[t] for t in tiny_lm.vocab.ids_of_kind("word")[:30]]
    got = extend_once(tiny_lm, entries, prefix, top_m=2, batch_size=8)
    assert len(got) == 60
    for e, (a, b) in zip(entries, zip(got[::2], got[1::2], strict=True), strict=True):
        logits = tiny_lm.model(torch.tensor([prefix + e])).logits[0, -1]
        assert [a[-1], b[-1]] == logits.topk(2).indices.tolist() and a[:-1] == e


def test_expansion_levels_and_word_only_continuations(tiny_lm):
    prefix = tiny_lm.encode("a photo of", add_special_tokens=True)
    cache, allowed = tiny_lm.prefix_cache(prefix), word_mask(tiny_lm)
    levels = {"subword": [[t] for t in candidate_subwords(tiny_lm)]}
    levels["bigram"] = extend_once(tiny_lm, levels["subword"], prefix, allowed=allowed, prefix_cache=cache)
    levels["trigram"] = extend_once(tiny_lm, levels["bigram"], prefix, allowed=allowed, prefix_cache=cache)
    n = len(levels["subword"])
    assert len(levels["bigram"]) == n and len(levels["trigram"]) == n
    assert all(len(b) == 2 and len(t) == 3 for b, t in zip(levels["bigram"], levels["trigram"], strict=True))
    assert all(tiny_lm.vocab.kinds[row[-1]] == "word" for row in levels["trigram"])
    assert [t[:2] for t in levels["trigram"]] == levels["bigram"]
    # M = 1: both levels in one greedy pass that reuses the bigram's KV cache, the same entries
    assert extend_greedy(tiny_lm, levels["subword"], 2, allowed, batch_size=7, prefix_cache=cache) == levels["trigram"]


def test_greedy_expansion_refuses_an_allowed_set_that_can_end_a_row(tiny_lm):
    allowed = torch.zeros(tiny_lm.vocab_size, dtype=torch.bool)
    allowed[sorted(tiny_lm.eos_ids)] = True  # only end-of-sequence ids: every row would end at once
    with pytest.raises(V2LError, match="end-of-sequence"):
        extend_greedy(tiny_lm, [[5], [6]], 2, allowed)


def _unit(x):
    return torch.nn.functional.normalize(x, dim=-1)


def test_the_bfloat16_screen_chooses_exactly_what_float32_chooses():
    """Screened rows within the bound of their exact values: filtering on the confirmed matrix keeps exactly the
    entries (and counts) of filtering on the exact one, and rows that cannot be chosen are never re-embedded."""
    g = torch.Generator().manual_seed(0)
    images, exact = _unit(torch.randn(300, 16, generator=g)), _unit(torch.randn(2000, 16, generator=g))
    noise = _unit(torch.randn(2000, 16, generator=g)) * 0.004
    screened_rows = torch.arange(500, 2000)  # the first 500 play the subwords (exact), the rest the expanded entries
    emb = exact.clone()
    emb[screened_rows] += noise[screened_rows]
    screened = torch.zeros(2000, dtype=torch.bool)
    screened[screened_rows] = True
    asked = []

    def fp32(rows):
        asked.append(rows)
        return exact[rows]

    groups = [torch.arange(1200), torch.arange(2000)]  # a "bigram" variant and the full build
    cfg = CodebookConfig(filter_top_k=5)
    got, info = confirm_screened(emb, screened, images, groups, 5, fp32, bound=0.01)
    texts, kinds, ids = [str(i) for i in range(2000)], ["subword"] * 2000, [[i] for i in range(2000)]
    for rows in groups:
        want = filter_candidates(cfg, images, exact[rows], texts[: len(rows)], kinds[: len(rows)], ids[: len(rows)])
        have = filter_candidates(cfg, images, got[rows], texts[: len(rows)], kinds[: len(rows)], ids[: len(rows)])
        assert have[0] == want[0]  # the same entries with the same counts
        assert torch.equal(have[1], want[1])  # chosen rows hold their exact embeddings
    redone = torch.cat(asked)
    assert info["re_embedded_float32"] == len(redone) < 1500 and info["bound"] == 0.01
    assert not (redone < 500).any()  # exact rows are never re-embedded
    assert torch.equal(got[~screened], exact[~screened])


def test_the_screen_raises_its_bound_when_the_errors_are_larger_than_assumed():
    g = torch.Generator().manual_seed(1)
    images, exact = _unit(torch.randn(200, 16, generator=g)), _unit(torch.randn(1000, 16, generator=g))
    emb = exact + _unit(torch.randn(1000, 16, generator=g)) * 0.05  # 5× the assumed bound
    screened = torch.ones(1000, dtype=torch.bool)
    got, info = confirm_screened(emb, screened, images, [torch.arange(1000)], 5, lambda rows: exact[rows], bound=0.01)
    assert info["bound"] >= 0.1 and len(info["largest_error_per_round"]) >= 2
    cfg = CodebookConfig(filter_top_k=5)
    names, kinds, ids = [str(i) for i in range(1000)], ["subword"] * 1000, [[i] for i in range(1000)]
    assert (
        filter_candidates(cfg, images, got, names, kinds, ids)[0]
        == filter_candidates(cfg, images, exact, names, kinds, ids)[0]
    )


def test_tiny_build_end_to_end(tiny_lm, tiny_vl, image_folder, tmp_path):
    out = build_codebook(_cfg(image_folder), lm=tiny_lm, vl=tiny_vl, out=tmp_path / "cb")
    cb = Codebook.load(out, lm=tiny_lm, vl=tiny_vl)
    m = cb.manifest
    assert cb.local_embeddings.shape == (tiny_lm.vocab_size, tiny_vl.dim)
    assert torch.allclose(cb.local_embeddings.norm(dim=-1), torch.ones(tiny_lm.vocab_size), atol=1e-5)
    assert cb.global_embeddings.shape == (len(cb.entries), tiny_vl.dim) and len(cb.entries) >= 5
    assert sum(e["count"] for e in cb.entries) == 12 * 5  # 12 images x top-5
    assert m["counts"]["global"] == len(cb.entries) and m["counts"]["filter_images"] == 12
    assert set(m["counts"]["candidates_by_kind"]) == {"subword", "bigram", "trigram"}
    for e in cb.entries:  # each entry's ids decode to its text; each global row is that text's embedding
        assert tiny_lm.decode(e["ids"]).strip() == e["text"]
    row = cb.entries[0]
    want = tiny_vl.encode_text([f"a photo of a {row['text']}."])[0]
    assert torch.allclose(cb.global_embeddings[0], want, atol=1e-5)
    # local row i = token i's text
    tid = tiny_lm.encode(" cat")[0]
    assert torch.allclose(cb.local_embeddings[tid], tiny_vl.encode_text(["a photo of a cat."])[0], atol=1e-5)
    assert not (out.parent / "cb.partial").exists()


def test_a_screened_build_equals_a_float32_build(tiny_lm, tiny_vl, image_folder, tmp_path):
    screened = build_codebook(_cfg(image_folder), lm=tiny_lm, vl=tiny_vl, out=tmp_path / "s", variants=True)
    plain = build_codebook(_cfg(image_folder, screen="off"), lm=tiny_lm, vl=tiny_vl, out=tmp_path / "f", variants=True)
    assert CodebookConfig(screen="off").key() == CodebookConfig().key()  # the same codebook, the same key
    for a, b in [(screened, plain)] + [(tmp_path / f"s-max-ngram-{n}", tmp_path / f"f-max-ngram-{n}") for n in (1, 2)]:
        a, b = Codebook.load(a), Codebook.load(b)
        assert a.entries == b.entries
        assert torch.allclose(a.global_embeddings, b.global_embeddings, atol=1e-6)
    info = Codebook.load(screened).manifest["screen"]
    assert 0 < info["re_embedded_float32"] <= info["screened"] and "screen" not in Codebook.load(plain).manifest


def test_table5_variants(tiny_lm, tiny_vl, image_folder, tmp_path):
    sub = Codebook.load(build_codebook(_cfg(image_folder, max_ngram=1), lm=tiny_lm, vl=tiny_vl, out=tmp_path / "a"))
    assert {e["kind"] for e in sub.entries} == {"subword"}
    assert set(sub.manifest["counts"]["candidates_by_kind"].values()) - {0}
    assert sub.manifest["counts"]["candidates_by_kind"]["bigram"] == 0


def test_variants_from_one_build_equal_separate_builds(tiny_lm, tiny_vl, image_folder, tmp_path):
    full = build_codebook(_cfg(image_folder), lm=tiny_lm, vl=tiny_vl, out=tmp_path / "v", variants=True)
    assert Codebook.load(full).manifest["config"]["max_ngram"] == 3
    for n in (1, 2):
        derived = Codebook.load(tmp_path / f"v-max-ngram-{n}", lm=tiny_lm, vl=tiny_vl)
        alone = Codebook.load(
            build_codebook(_cfg(image_folder, max_ngram=n), lm=tiny_lm, vl=tiny_vl, out=tmp_path / f"alone{n}")
        )
        assert derived.manifest["config"] == alone.manifest["config"]
        assert derived.manifest["counts"] == alone.manifest["counts"]
        assert derived.entries == alone.entries  # texts, kinds, ids and counts
        assert {e["kind"] for e in derived.entries} <= set(("subword", "bigram")[:n])
        assert torch.allclose(derived.global_embeddings, alone.global_embeddings, atol=1e-6)
        assert "derived_from" in derived.manifest
    # a rerun finds all three and returns at once, without the models
    assert build_codebook(_cfg(image_folder), lm=object(), vl=object(), out=tmp_path / "v", variants=True) == full


def test_interrupted_build_resumes_byte_identical(tiny_lm, tiny_vl, image_folder, tmp_path):
    cfg = _cfg(image_folder)
    ref = build_codebook(cfg, lm=tiny_lm, vl=tiny_vl, out=tmp_path / "ref")
    calls = []

    def kill_after(n):
        def cb(stage, chunk):
            calls.append((stage, chunk))
            if len(calls) == n:
                raise KeyboardInterrupt

        return cb

    out, parts = tmp_path / "resumed", tmp_path / "parts"
    with pytest.raises(KeyboardInterrupt):
        build_codebook(cfg, lm=tiny_lm, vl=tiny_vl, out=out, callback=kill_after(3), parts=parts)
    assert not out.exists()
    done = sorted(p.name for p in parts.rglob("*") if p.is_file())
    assert len(done) == 3 and not any(n.endswith(".tmp") for n in done)
    recomputed = []
    build_codebook(cfg, lm=tiny_lm, vl=tiny_vl, out=out, callback=lambda s, c: recomputed.append((s, c)), parts=parts)
    assert recomputed and not set(recomputed) & set(calls[:3])  # nothing finished was recomputed
    assert _digest(out) == _digest(ref)


def test_a_build_that_differs_only_in_filtering_reuses_every_part(tiny_lm, tiny_vl, image_folder, tmp_path):
    calls = []
    record = lambda s, c: calls.append(s.split("-")[0])  # noqa: E731  (text stages carry a hash of their texts)
    build_codebook(
        _cfg(image_folder), lm=tiny_lm, vl=tiny_vl, out=tmp_path / "a", callback=record, parts=tmp_path / "parts"
    )
    assert {"local", "greedy", "candidates", "images"} <= set(calls)
    calls.clear()
    build_codebook(
        _cfg(image_folder, min_count=2),
        lm=tiny_lm,
        vl=tiny_vl,
        out=tmp_path / "b",
        callback=record,
        parts=tmp_path / "parts",
    )
    assert calls == []  # filtering only: nothing embedded or expanded again
    build_codebook(
        _cfg(image_folder, filter_per_class=0, filter_top_k=3, templates=2),
        lm=tiny_lm,
        vl=tiny_vl,
        out=tmp_path / "c",
        callback=record,
        parts=tmp_path / "parts",
    )
    assert {"local", "candidates"} <= set(calls) and "greedy" not in calls  # other templates: texts again only


def test_max_share_drops_exactly_the_hubs(tiny_lm, tiny_vl, image_folder, tmp_path):
    from v2l.errors import ConfigError

    parts = tmp_path / "parts"
    full = Codebook.load(build_codebook(_cfg(image_folder), lm=tiny_lm, vl=tiny_vl, out=tmp_path / "all", parts=parts))
    n_images = full.manifest["counts"]["filter_images"]
    counts = sorted({e["count"] for e in full.entries})
    assert len(counts) >= 2, "the tiny build needs entries chosen different numbers of times"
    share = counts[-2] / n_images  # keeps every entry but the most chosen ones
    cut = Codebook.load(
        build_codebook(_cfg(image_folder, max_share=share), lm=tiny_lm, vl=tiny_vl, out=tmp_path / "cut", parts=parts)
    )
    assert {e["text"] for e in cut.entries} == {e["text"] for e in full.entries if e["count"] <= counts[-2]}
    assert all(e["count"] == counts[-1] for e in full.entries if e["text"] not in {c["text"] for c in cut.entries})
    assert CodebookConfig(max_share=share).key() != CodebookConfig().key()
    with pytest.raises(ConfigError, match="--max-share"):
        CodebookConfig(max_share=0)


def test_manifest_mismatch_is_refused(tiny_lm, tiny_vl, image_folder, tmp_path, tiny_tokenizer):
    out = build_codebook(_cfg(image_folder, max_ngram=1), lm=tiny_lm, vl=tiny_vl, out=tmp_path / "cb")
    manifest = json.loads((out / "manifest.json").read_text())

    class OtherLM:
        name = "other"

        class vocab:
            sha256 = "0" * 64

    with pytest.raises(ManifestMismatchError, match="built for LLM '.*tiny-llama.*v2l codebook build --llm other"):
        Codebook.load(out, lm=OtherLM())

    class OtherVL:
        name = "conse"

        def fingerprint(self):
            return {"name": "conse", "dim": 384}

    with pytest.raises(ManifestMismatchError, match="built with VL model"):
        check_manifest(manifest, vl=OtherVL())
    manifest["format"] = 99
    with pytest.raises(ManifestMismatchError, match="rebuild"):
        check_manifest(manifest)


def test_shipped_list_is_materialised_once_and_matches_the_build(tiny_lm, tiny_vl, image_folder, tmp_path, monkeypatch):
    """The first-use path: a shipped vocabulary list (manifest + global_vocab.json, no embeddings) is embedded once."""
    import shutil

    from v2l.codebooks import ensure_local_embeddings, materialize_shipped

    monkeypatch.setenv("V2L_CACHE", str(tmp_path / "cache"))
    built = Codebook.load(build_codebook(_cfg(image_folder), lm=tiny_lm, vl=tiny_vl, out=tmp_path / "built"))
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for name in ("manifest.json", "global_vocab.json"):
        shutil.copy(built.folder / name, shipped / name)
    folder = materialize_shipped(shipped, tiny_vl, progress=False)
    assert materialize_shipped(shipped, tiny_vl, progress=False) == folder  # cached: found, not rebuilt
    cb = Codebook.load(folder, vl=tiny_vl)
    assert cb.local_embeddings is None and cb.texts == built.texts
    assert torch.allclose(cb.global_embeddings, built.global_embeddings, atol=1e-5)
    full = ensure_local_embeddings(cb, tiny_vl, lm=tiny_lm, progress=False)
    assert torch.allclose(full.local_embeddings, built.local_embeddings, atol=1e-5)
    assert full.local_display == tiny_lm.vocab.display and full.local_kinds == tiny_lm.vocab.kinds


DEFAULT_KEY = "smollm2-135m__conse-top_t-3__bf95a34a2748"  # the paper's filtering protocol, ConSE top-T 3
CONSE10_KEY = "smollm2-135m__conse__52668338bdd2"  # the same with ConSE top-T 10 (plain `conse`)
STRICT_KEY = "smollm2-135m__conse__140702e56e26"  # 160 training classes only: the first shipped checkpoint's codebook


def test_default_key_is_pinned_and_the_checkpoint_keeps_its_codebook():
    from v2l.backbones import DEFAULT_VL
    from v2l.codebooks import shipped_vocab
    from v2l.codebooks.artefact import shipped_by_key
    from v2l.tokenizer.image_tokenizer import SHIPPED

    assert CodebookConfig().key() == DEFAULT_KEY and CodebookConfig().filter_classes == "all"
    assert DEFAULT_VL == "conse:top_t=3"
    for key, vl in ((DEFAULT_KEY, DEFAULT_VL), (CONSE10_KEY, "conse")):
        shipped = json.loads((shipped_vocab("smollm2-135m", vl) / "manifest.json").read_text())
        assert CodebookConfig(**shipped["config"]).key() == key and shipped_by_key(key) == shipped_vocab(
            "smollm2-135m", vl
        )
        assert shipped["vl"]["top_t"] == {"conse": 10, DEFAULT_VL: 3}[vl]  # the list was built with what it says
    ckpt = json.loads((SHIPPED / "v2l-cpu" / "config.json").read_text())["codebook"]
    assert ckpt["key"] == DEFAULT_KEY  # the shipped checkpoint was trained on the default codebook
    from v2l.codebooks.artefact import global_list_sha256

    default_list = json.loads((shipped_by_key(DEFAULT_KEY) / "global_vocab.json").read_text())
    assert ckpt["global_sha256"] == global_list_sha256(default_list)  # ... and on exactly the shipped list
    assert STRICT_KEY == CodebookConfig(vl="conse", filter_classes="train").key()  # old keys are kept
    kept = shipped_by_key(STRICT_KEY)
    assert kept is not None and json.loads((kept / "manifest.json").read_text())["config"]["filter_classes"] == "train"
    for other in (CodebookConfig(dedupe="encoder"), CodebookConfig(max_share=0.5)):
        assert other.key() not in (DEFAULT_KEY, CONSE10_KEY, STRICT_KEY)
    with pytest.raises(V2LError, match="--dedupe .*'case'"):
        CodebookConfig(dedupe="case")


def test_encoder_dedupe_keeps_one_candidate_per_encoder_input(tiny_lm, tiny_vl, image_folder, tmp_path):
    class Uncased:  # the tiny CLIP, but its text tower reads lower-cased text (as MiniLM and CLIP do)
        def __init__(self, vl):
            self.vl, self.name = vl, vl.name

        def __getattr__(self, name):
            return getattr(self.vl, name)

        def text_keys(self, texts, templates=("{}",)):
            return [tuple(t.format(x.lower()) for t in templates) for x in texts]

    vl = Uncased(tiny_vl)
    by_text = Codebook.load(build_codebook(_cfg(image_folder), lm=tiny_lm, vl=vl, out=tmp_path / "t"))
    by_enc = Codebook.load(build_codebook(_cfg(image_folder, dedupe="encoder"), lm=tiny_lm, vl=vl, out=tmp_path / "e"))
    lowered = {e["text"].lower() for e in by_enc.entries}
    assert len(lowered) == len(by_enc.entries)  # no two entries differ by case only
    assert by_enc.manifest["counts"]["candidates"] < by_text.manifest["counts"]["candidates"]
    assert by_enc.manifest["config"]["dedupe"] == "encoder"


@pytest.mark.slow
def test_real_text_encoder_keys_match_what_it_can_tell_apart(conse):
    keys = conse.text_keys(["snake", "Snake", "SNAKE", "snakes", "snake "], ("a photo of a {}.", "itap of a {}."))
    assert keys[0] == keys[1] == keys[2] == keys[4] and keys[0] != keys[3]
    emb = conse.encode_text(["a photo of a snake.", "a photo of a Snake."])
    assert torch.allclose(emb[0], emb[1], atol=1e-6)  # equal keys really are equal embeddings


def test_of_kinds_keeps_only_those_entries_and_names_the_kinds_it_has(tiny_codebook_dir):
    """Table 5's question asked of one codebook (`v2l fewshot --kinds`): a copy with only those entries; an unknown
    kind is one sentence naming the kinds the codebook has."""
    from v2l.codebooks import Codebook
    from v2l.errors import ConfigError

    cb = Codebook.load(tiny_codebook_dir)
    kind = cb.entries[0]["kind"]
    only = cb.of_kinds([kind])
    assert only.entries and all(e["kind"] == kind for e in only.entries)
    assert only.global_embeddings.shape[0] == len(only.entries)
    keep = [i for i, e in enumerate(cb.entries) if e["kind"] == kind]
    assert torch.equal(only.global_embeddings, cb.global_embeddings[keep])
    assert len(Codebook.load(tiny_codebook_dir).entries) == len(cb.entries)  # the folder is untouched
    with pytest.raises(ConfigError, match=f"--kinds quadgram: .* of kinds .*{kind}"):
        cb.of_kinds(["quadgram"])
