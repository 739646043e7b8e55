"""In-context classification: the paper's prompt, episodes that never leak the query, the three decision rules on
hand-made cases, the fast engine against the reference loop, and the grid and `classify` end to end on tiny models."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from v2l.errors import ConfigError, V2LError
from v2l.tasks import (
    PROMPT_TEMPLATES,
    TABLE1_CELLS,
    Cell,
    FeatureStore,
    FewShotTemplate,
    InContextClassifier,
    load_episodes,
    load_template,
    run_grid,
    sample_episodes,
    save_episodes,
    summarize,
)
from v2l.tasks.fewshot import _trie_walk
from v2l.tasks.reference import reference_decide

PAPER = (
    'For each of the following input-output pairs, output is one of ["French bulldog", "Rock beauty"]. '
    "Input: dog, puppy, output: French bulldog. Input: fish, reef, output: Rock beauty. Input: a, b, output:"
)


def test_prompts_start_with_the_tokens_the_tokenizer_puts_first(tiny_lm, tiny_tokenizer):
    """Gemma's tokenizer puts <bos> before every text; prompts built from pieces must start with it too."""
    import copy

    from tokenizers import processors

    from v2l.backbones import LanguageModel

    tok = copy.deepcopy(tiny_tokenizer)
    bos = tok.bos_token_id
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", bos)]
    )
    lm = LanguageModel(tiny_lm.model, tok, "tiny-bos", "test")
    assert lm.start_ids == (bos,) and tiny_lm.start_ids == ()
    samples = [(["dog", " puppy"], "French bulldog"), (["fish", "reef"], "Rock beauty")]
    pieces = InContextClassifier(lm, PROMPT_TEMPLATES["paper"]).pieces(
        ["French bulldog", "Rock beauty"], samples, ["a", "b"]
    )
    assert pieces[0] == (bos,) and lm.decode([i for p in pieces[1:] for i in p]) == PAPER
    assert [i for p in pieces for i in p] == lm.encode(PAPER, add_special_tokens=True)


def test_golden_prompt_is_the_papers_format(tiny_lm):
    t = PROMPT_TEMPLATES["paper"]
    samples = [(["dog", " puppy"], "French bulldog"), (["fish", "reef"], "Rock beauty")]
    assert t.render(["French bulldog", "Rock beauty"], samples, ["a", "b"]) == PAPER
    no_ind = t.render(["French bulldog", "Rock beauty"], samples, ["a", "b"], induction=False)
    assert no_ind == PAPER[PAPER.index("Input:") :]
    clf = InContextClassifier(tiny_lm, t)
    pieces = clf.pieces(["French bulldog", "Rock beauty"], samples, ["a", "b"])
    assert tiny_lm.decode([i for p in pieces for i in p]) == PAPER  # the LLM reads exactly this text
    # the label tokens in the examples are the candidates' tokens
    assert pieces[2] == clf.label_ids("French bulldog") and clf.candidates(["French bulldog"])[0][-1] == clf.end_token
    lines = PROMPT_TEMPLATES["lines"].render(["A", "B"], [(["x"], "A")], ["y"])
    assert (
        lines == 'For each of the following input-output pairs, output is one of ["A", "B"].\nInput: x, output: A.'
        "\nInput: y, output:"
    )


def test_templates_are_editable_and_checked(tmp_path):
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"separator": "\n", "query": "Q: {words} ->"}))
    t = load_template(str(f))
    assert t.separator == "\n" and t.query == "Q: {words} ->" and t.sample == FewShotTemplate().sample
    f.write_text(json.dumps({"query": "no words here"}))
    with pytest.raises(ConfigError, match="must contain"):
        load_template(str(f))
    f.write_text(json.dumps({"colour": "red"}))
    with pytest.raises(ConfigError, match="unknown fields"):
        load_template(str(f))
    f.write_text("{broken")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_template(str(f))
    with pytest.raises(V2LError, match="paper"):
        load_template("bogus")


def _pool(classes=6, per=8):
    return {f"class {c}": [f"c{c}/{i}" for i in range(per)] for c in range(classes)}


def test_episodes_never_leak_the_query_and_are_fixed_by_seed(tmp_path):
    eps = sample_episodes(_pool(), 5, 50, seed=3)
    assert [e.to_json() for e in eps] == [e.to_json() for e in sample_episodes(_pool(), 5, 50, seed=3)]
    assert [e.to_json() for e in eps] != [e.to_json() for e in sample_episodes(_pool(), 5, 50, seed=4)]
    for e in eps:
        assert e.ways == 5 and len(set(e.classes)) == 5
        for cell in TABLE1_CELLS:
            assert e.query[1] not in e.support_items(cell)
            shown = e.samples(cell)
            assert len(shown) == 5 * (cell.shots if not cell.repeats else 1 + cell.repeats)
            assert sorted(c for c, _ in shown) == sorted(list(range(5)) * (len(shown) // 5))  # balanced
        assert e.query[1].startswith(f"c{e.classes[e.query[0]].split()[1]}/")  # the query's label is its class
        # 3 shots extend 1 shot; repeats repeat round 1 in the same order
        assert e.samples(Cell(True, 3, 0))[:5] == e.samples(Cell(True, 1, 0)) == e.samples(Cell(True, 1, 3))[5:10]
    path = save_episodes(tmp_path / "eps.json", eps)
    assert [e.to_json() for e in load_episodes(path)] == [e.to_json() for e in eps]
    with pytest.raises(ConfigError, match="at least 2"):
        sample_episodes(_pool(), 1, 3)
    with pytest.raises(V2LError, match="only 6 qualify"):
        sample_episodes(_pool(), 7, 3)
    (tmp_path / "bad.json").write_text('{"episodes": [{"classes": 1}]}')
    with pytest.raises(V2LError, match="not a v2l episode list"):
        load_episodes(tmp_path / "bad.json")


def test_rules_on_hand_made_cases(tiny_lm):
    clf = InContextClassifier(tiny_lm, PROMPT_TEMPLATES["paper"])
    end = clf.end_token
    other = next(t for t in range(50, 400) if not clf.ends_answer(t))
    # two names sharing their first token: [7, 8] and [7, 9]; a third [10]
    cands = [[7, 8, end], [7, 9, end], [10, end]]
    # constrained: the first step prefers 7 (over 10), the second 9 (over 8) -> name 1; the ranking rule sums the
    # tokens and picks name 2
    logp = [[-1.0, -3.0, -0.1], [-1.0, -2.0, -0.1], [-1.5, -0.1]]
    assert _trie_walk(cands, logp) == 1
    assert max(range(3), key=lambda i: sum(logp[i])) == 2  # ranking disagrees with constrained decoding here
    # paper rule from the greedy path (row c, position d: the argmax after cands[c][:d]): 7, 9, then '.' -> name 1
    assert clf._greedy(cands, [[7, 9, other], [7, 9, end], [7, other]])[0] == 1
    # a generation that stops after a prefix of a name (7 then '.') is not a class name
    assert clf._greedy(cands, [[7, end, end], [7, end, end], [7, end]])[0] is None
    # a generation that runs on after a whole name (7 9 then another word) is not a class name either
    assert clf._greedy(cands, [[7, 9, other], [7, 9, other], [7, other]])[0] is None
    # and the same rule on real generated ids
    assert clf.paper_rule([*clf.label_ids("dog"), end], ["cat", "dog"]) == 1
    assert clf.paper_rule(list(clf.label_ids("dog")), ["cat", "dog"]) is None  # never ended
    assert clf.paper_rule([*clf.label_ids("dog"), other, end], ["cat", "dog"]) is None


WORDS = ["cat", "dog", "sea", "car", "bird", "sky", "fox", "mat", "road", "red"]


def _store(classes=5, per=7, words=5):
    g = torch.Generator().manual_seed(0)
    keys, labels, vw = [], [], []
    for c in range(classes):
        for i in range(per):
            keys.append(f"c{c}/{i}")
            labels.append(WORDS[c])
            vw.append([WORDS[(c + j * (i % 2)) % len(WORDS)] for j in range(words)])
    emb = torch.nn.functional.normalize(torch.randn(len(keys), 8, generator=g), dim=-1)
    return FeatureStore(keys, labels, emb, vw)


def test_fast_engine_equals_the_reference_loop(long_lm):
    store = _store()
    fast = InContextClassifier(long_lm, PROMPT_TEMPLATES["paper"], calibrate=False)
    eps = sample_episodes(store.pool(), 3, 3, seed=1)
    idx = store.index()
    records = run_grid(fast, store, eps, kg=3, progress=False)
    k = 0
    for ep in eps:
        q = store.words[idx[ep.query[1]]][:3]
        for cell in TABLE1_CELLS:
            samples = [(store.words[idx[i]][:3], ep.classes[c]) for c, i in ep.samples(cell)]
            ref = reference_decide(fast, fast.prompt(cell, ep.classes, samples, q, cell.induction))
            assert {r: records[k]["choice"][r] for r in ref} == ref
            k += 1


def test_grid_end_to_end_on_a_tiny_llm(long_lm):
    store = _store()
    clf = InContextClassifier(long_lm, replace(PROMPT_TEMPLATES["paper"], separator="\n"), calibrate=True)
    recs = []
    for ways in (2, 5):
        recs += run_grid(clf, store, sample_episodes(store.pool(), ways, 4, seed=0), kg=5, progress=False)
    rows = summarize(recs)
    assert len(rows) == 14 and {r["cell"] for r in rows} == {c.name for c in TABLE1_CELLS}
    for r in rows:
        assert r["episodes"] == 4 and r["chance"] == 1 / r["ways"]
        for rule in ("paper", "constrained", "rank", "calibrated", "nn_vl", "nn_words"):
            lo, hi = r[rule]["ci95"]
            assert 0 <= lo <= r[rule]["acc"] <= hi <= 1
    # words identical within a class at odd positions make the words-only reference better than chance overall
    assert sum(r["nn_words"]["acc"] for r in rows) / len(rows) > 0.5


def test_context_limit_refuses_long_prompts(tiny_lm):
    store = _store(words=5)
    clf = InContextClassifier(tiny_lm, PROMPT_TEMPLATES["paper"], calibrate=False)
    eps = sample_episodes(store.pool(), 5, 1, seed=0)
    with pytest.raises(V2LError, match=r"tokens, longer than the context .*\(256 tokens\)"):
        run_grid(clf, store, eps, kg=5, cells=[Cell(True, 1, 5)], progress=False)


def _support(root, classes=("cat", "dog"), per=2):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_classify_verb_end_to_end(tmp_path, tiny_llama_dir, tiny_clip_dir, tiny_codebook_dir, capsys):
    from v2l.cli import main

    sup = _support(tmp_path / "support")
    query = sup / "cat" / "0.png"
    argv = [
        "classify",
        str(query),
        str(sup / "dog" / "1.png"),
        "--support",
        str(sup),
        "--llm",
        str(tiny_llama_dir),
        "--vl",
        f"hf-clip:{tiny_clip_dir}",
        "--codebook",
        str(tiny_codebook_dir),
        "--kg",
        "3",
    ]

    def run(args):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code in (0, None)

    for rule in ("paper", "constrained", "rank", "calibrated"):
        run([*argv, "--json", "--rule", rule])
        rows = json.loads(capsys.readouterr().out)
        assert [r["image"] for r in rows] == [str(query), str(sup / "dog" / "1.png")]
        for r in rows:
            assert r["rule"] == rule and set(r["scores"]) == {"cat", "dog"} and len(r["words"]) == 3
            assert r["prediction"] in ("cat", "dog") or (rule == "paper" and r["prediction"] is None)
            if rule in ("rank", "calibrated"):
                assert r["prediction"] == max(r["scores"], key=r["scores"].get)
    run(argv)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(query) + "\t")


def test_classify_bad_support_folders(tmp_path):
    from v2l.tasks import load_support

    with pytest.raises(V2LError, match="does not exist"):
        load_support(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(V2LError, match="no class sub-folders"):
        load_support(tmp_path / "empty")
    with pytest.raises(V2LError, match="one class only"):
        load_support(_support(tmp_path / "one", classes=("cat",)))
    two = _support(tmp_path / "two")
    (two / "bird").mkdir()
    (two / "bird" / "notes.txt").write_text("no images")
    with pytest.raises(V2LError, match="bird has no images"):
        load_support(two)


def test_fewshot_verb_end_to_end(
    tmp_path, data_root, long_lm, tiny_clip_dir, tiny_codebook_dir, tiny_tokenizer_dir, capsys, monkeypatch
):
    """`v2l fewshot` on the real held-out pool (tiny random models): every cell, saved episodes, atomic JSON."""
    from v2l.cli import main

    out, eps = tmp_path / "grid.json", tmp_path / "episodes.json"
    argv = [
        "fewshot",
        "--ways",
        "2",
        "--kg",
        "2",
        "--episodes",
        "2",
        "--llm",
        long_lm.source,
        "--vl",
        f"hf-clip:{tiny_clip_dir}",
        "--codebook",
        str(tiny_codebook_dir),
        "--data-root",
        str(data_root),
    ]
    with pytest.raises(SystemExit) as e:
        main([*argv, "-o", str(out), "--save-episodes", str(eps)])
    assert e.value.code in (0, None)
    data = json.loads(out.read_text())
    assert len(data["summary"]) == 7 and len(data["records"]) == 14
    assert {r["cell"] for r in data["summary"]} == {c.name for c in TABLE1_CELLS}
    saved = load_episodes(eps)
    assert len(saved) == 2 and all(e.ways == 2 for e in saved)
    assert "K_g=2 2-way" in capsys.readouterr().out
    # the same episodes again from the file give the same decisions
    again = tmp_path / "again.json"
    with pytest.raises(SystemExit):
        main([*argv, "-o", str(again), "--episodes-file", str(eps)])
    assert [r["choice"] for r in json.loads(again.read_text())["records"]] == [r["choice"] for r in data["records"]]
    # one cell, the codebook restricted to one kind of entry (Table 5's question), then a tokenizer's own tokens
    from v2l.codebooks import Codebook

    kind = Codebook.load(tiny_codebook_dir).entries[0]["kind"]
    one = [*argv, "--episodes-file", str(eps), "--cells", "ind-1shot-r0"]
    with pytest.raises(SystemExit):
        main([*one, "--kinds", kind, "-o", str(tmp_path / "kinds.json")])
    kinds = json.loads((tmp_path / "kinds.json").read_text())
    assert [r["cell"] for r in kinds["summary"]] == ["ind-1shot-r0"] and kinds["meta"]["kinds"] == [kind]
    import v2l.baselines

    seen, real = [], v2l.baselines.with_token_words
    monkeypatch.setattr(v2l.baselines, "with_token_words", lambda store, w: seen.append(w) or real(store, w))
    with pytest.raises(SystemExit):
        main([*one, "--tokenizer", str(tiny_tokenizer_dir), "--tokens", "3", "-o", str(tmp_path / "tok.json")])
    tok = json.loads((tmp_path / "tok.json").read_text())
    assert tok["meta"]["tokens"] == 3 and len(tok["records"]) == 2
    assert len(seen) == 1 and {len(w) for w in seen[0]} == {3}  # every pool image read as its 3 tokens
