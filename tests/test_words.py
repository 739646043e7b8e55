"""`v2l words` with the real default models and the shipped global vocabulary (embedded once on first use)."""

import json
import subprocess
import sys

import pytest

from v2l.backbones import DEFAULT_VL
from v2l.codebooks import check_manifest, shipped_vocab


def test_shipped_vocabulary_is_consistent():
    folder = shipped_vocab("smollm2-135m", DEFAULT_VL)
    assert folder is not None
    manifest = json.loads((folder / "manifest.json").read_text())
    entries = json.loads((folder / "global_vocab.json").read_text())
    assert len(entries) == manifest["counts"]["global"] > 1000
    assert {e["kind"] for e in entries} == {"subword", "bigram", "trigram"}
    assert all(len(e["ids"]) == {"subword": 1, "bigram": 2, "trigram": 3}[e["kind"]] for e in entries)
    assert sum(e["count"] for e in entries) == 5 * manifest["counts"]["filter_images"]


@pytest.mark.slow
def test_shipped_vocabulary_matches_the_real_llm(real_lm):
    folder = shipped_vocab("smollm2-135m", DEFAULT_VL)
    manifest = json.loads((folder / "manifest.json").read_text())
    check_manifest(manifest, lm=real_lm)  # same vocabulary hash
    for e in json.loads((folder / "global_vocab.json").read_text())[:200]:
        assert real_lm.decode(e["ids"]).strip() == e["text"]


@pytest.mark.slow
def test_words_on_real_photos(data_root, tmp_path):
    from v2l.data import WebDatasetShards

    ds = WebDatasetShards("imagenet-1k-sample", root=data_root)
    picks = {3: ("tiger", "shark"), 503: ("cocktail", "shaker")}  # a word of the class name (class-word hit)
    paths = []
    for i in picks:
        p = tmp_path / f"{ds[i].key}.jpg"
        ds[i].image.save(p)
        paths.append(p)
    res = subprocess.run(
        [sys.executable, "-c", "from v2l.cli import main; main()", "words", *map(str, paths), "--top", "4", "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(res.stdout)
    for row, want in zip(rows, picks.values(), strict=True):
        assert len(row["words"]) == 4 and row["scores"] == sorted(row["scores"], reverse=True)
        assert any(name in w.lower() for w in row["words"] for name in want), row


def test_words_rejects_a_bad_image_before_loading_models(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    res = subprocess.run(
        [sys.executable, "-c", "from v2l.cli import main; main()", "words", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "x.png" in res.stderr and "Traceback" not in res.stderr


def test_distinct_words_collapse_identical_embeddings(tmp_path):
    import torch

    from v2l.codebooks import Codebook
    from v2l.tokenizer import image_words

    e = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), dim=-1)
    entries = [
        {"text": t, "kind": "subword", "ids": [i], "count": 1} for i, t in enumerate(["snake", "Snake", "viper", "sky"])
    ]
    cb = Codebook(tmp_path, {}, entries, e)

    class OneVector:  # a VL model whose every image embeds to (1, 0)
        def encode_image(self, images, batch_size=32):
            return torch.tensor([[1.0, 0.0]] * len(images))

    (row,) = image_words(["x.png"], top=3, codebook=cb, vl=OneVector())
    assert row.words == ["snake", "viper", "sky"] and row.scores == sorted(row.scores, reverse=True)
    (raw,) = image_words(["x.png"], top=3, codebook=cb, vl=OneVector(), distinct=False)
    assert raw.words == ["snake", "Snake", "viper"]
