import pytest
import torch

from v2l.backbones import LanguageModel
from v2l.backbones.vocabulary import Vocabulary
from v2l.errors import ModelNotFoundError


def test_vocabulary_kinds_and_display(tiny_lm):
    v = tiny_lm.vocab
    assert len(v) == tiny_lm.vocab_size == tiny_lm.model.get_input_embeddings().weight.shape[0]
    assert v.scheme == "byte-level"
    eos = tiny_lm.tokenizer.eos_token_id
    assert v.kinds[eos] == "special"
    cat = tiny_lm.encode(" cat")
    assert len(cat) == 1 and v.display[cat[0]] == " cat" and v.kinds[cat[0]] == "word"
    space = tiny_lm.encode(" ")
    assert v.kinds[space[0]] == "whitespace"
    assert "Ġ" not in "".join(v.display[i] for i in v.ids_of_kind("word"))


def test_sentencepiece_display_and_bytes():
    class FakeSP:
        all_special_ids = [0]
        added_tokens_decoder = {}

        def __len__(self):
            return 5

        def convert_ids_to_tokens(self, ids):
            return ["<s>", "▁cat", "<0x0A>", "▁", ","][: len(ids)]

    v = Vocabulary.from_tokenizer(FakeSP())
    assert v.scheme == "sentencepiece"
    assert v.display == ["<s>", " cat", "<0x0A>", " ", ","]
    assert v.kinds == ["special", "word", "byte", "whitespace", "punctuation"]


def test_prefix_cache_gives_the_same_topk(tiny_lm):
    prefix = tiny_lm.encode("a photo of")
    seqs = [[i] for i in range(20, 60)] + [[5, 6], [7, 8, 9]]
    v_full, i_full = tiny_lm.next_token_topk([prefix + s for s in seqs], k=3, batch_size=7)
    v_pre, i_pre = tiny_lm.next_token_topk(seqs, k=3, prefix=tiny_lm.prefix_cache(prefix), batch_size=7)
    assert torch.equal(i_full, i_pre)
    assert torch.allclose(v_full, v_pre, atol=1e-4)


def test_batched_topk_equals_one_by_one(tiny_lm):
    seqs = [[3], [4, 5, 6, 7], [8, 9]]
    _, batched = tiny_lm.next_token_topk(seqs, k=2, batch_size=3)
    for s, row in zip(seqs, batched, strict=True):
        logits = tiny_lm.model(torch.tensor([s])).logits[0, -1]
        assert torch.equal(logits.topk(2).indices, row)


def test_score_matches_a_full_forward(tiny_lm):
    prompt = tiny_lm.encode("the cat sat on")
    conts = [tiny_lm.encode(" the mat"), tiny_lm.encode(" a dog in the sky")]
    got = tiny_lm.score(prompt, conts, batch_size=1)
    for c, g in zip(conts, got, strict=True):
        logp = torch.log_softmax(tiny_lm.model(torch.tensor([prompt + c])).logits[0].float(), -1)
        want = sum(logp[len(prompt) - 1 + j, t] for j, t in enumerate(c))
        assert abs(float(want) - float(g)) < 1e-3


def test_generate_batched_equals_single_and_stops(tiny_lm):
    prompts = ["a photo of", "the quick brown fox jumps over"]
    singles = [tiny_lm.generate([p], max_new_tokens=8)[0] for p in prompts]
    batched = tiny_lm.generate(prompts, max_new_tokens=8, batch_size=2)
    assert batched == singles
    # greedy reference from transformers itself
    ids = tiny_lm.encode(prompts[0], add_special_tokens=True)
    ref = tiny_lm.model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, min_new_tokens=8)
    assert singles[0] == tiny_lm.decode(ref[0, len(ids) :].tolist())[: len(singles[0])]
    stop = singles[0][2:4]
    if stop.strip():
        cut = tiny_lm.generate([prompts[0]], max_new_tokens=8, stop=[stop])[0]
        assert stop not in cut and singles[0].startswith(cut)


def test_generate_with_prefix_cache(tiny_lm):
    prefix = tiny_lm.encode("a photo of")
    plain = tiny_lm.generate([prefix + tiny_lm.encode(" the")], max_new_tokens=5)
    cached = tiny_lm.generate([tiny_lm.encode(" the")], max_new_tokens=5, prefix=tiny_lm.prefix_cache(prefix))
    assert plain == cached


def test_bad_paths_and_offline_hub(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        LanguageModel.load(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        LanguageModel.load(str(tmp_path / "model.gguf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="hub did not provide it"):
        LanguageModel.load("nobody-v2l/not-a-model")


@pytest.mark.slow
def test_real_smollm2(real_lm):
    assert real_lm.vocab_size == 49152 and real_lm.vocab.scheme == "byte-level"
    assert real_lm.generate(["The capital of France is"], max_new_tokens=3)[0].strip().startswith("Paris")
    s = real_lm.score("The capital of France is", [" Paris", " a banana"])
    assert s[0] > s[1] + 5
    assert real_lm.source_hash and len(real_lm.source_hash) == 64


@pytest.mark.slow
def test_gguf_cache_is_reused(real_lm):
    import time

    t0 = time.perf_counter()
    again = LanguageModel.load("smollm2-135m", progress=False)
    assert time.perf_counter() - t0 < 15  # de-quantisation (~20 s) is not repeated
    w0 = real_lm.model.get_input_embeddings().weight
    assert torch.equal(w0, again.model.get_input_embeddings().weight)


def test_multipart_gguf_preset_is_assembled_once(tmp_path, monkeypatch):
    """A preset whose package ships the GGUF in parts (gemma3-270m) is assembled into the cache once."""
    import sys

    from v2l.backbones import language_model as lmod
    from v2l.errors import MissingPackageError

    pkg = tmp_path / "fake_parts_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from pathlib import Path\n"
        "CALLS = []\n"
        "def assemble(path):\n"
        "    CALLS.append(path)\n"
        "    if Path(__file__).with_name('MISSING').exists():\n"
        "        raise FileNotFoundError('Missing chunk files: part03')\n"
        "    Path(path).write_bytes(b'GGUF' + bytes(8))\n"
        "    return Path(path)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("V2L_CACHE", str(tmp_path / "cache"))
    preset = lmod.LLMPreset(
        package="fake_parts_pkg", gguf_file="model.gguf", install="pip install fake", assemble="fake_parts_pkg"
    )
    monkeypatch.setitem(lmod.LLM_PRESETS, "fake", preset)
    path = lmod.resolve_gguf("fake")
    assert path.read_bytes().startswith(b"GGUF") and path.parent == tmp_path / "cache" / "gguf"
    assert lmod.resolve_gguf("fake") == path and len(sys.modules["fake_parts_pkg"].CALLS) == 1
    path.unlink()
    (pkg / "MISSING").write_text("")
    with pytest.raises(MissingPackageError, match="pip install fake"):
        lmod.resolve_gguf("fake")
    assert not path.exists()


def test_missing_model_package_names_the_install_line(monkeypatch):
    from v2l.backbones import language_model as lmod
    from v2l.errors import MissingPackageError

    preset = lmod.LLMPreset(package="no_such_pkg_v2l", gguf_file="x.gguf", install="pip install no-such-pkg")
    monkeypatch.setitem(lmod.LLM_PRESETS, "nope", preset)
    with pytest.raises(MissingPackageError, match="not installed: run `pip install no-such-pkg`"):
        LanguageModel.load("nope")
