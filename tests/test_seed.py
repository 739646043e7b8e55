"""SEED in v2l (`v2l.seed`): the causal Q-Former, the contrastive loss, VQ, the new tokens, LoRA, every stage end to
end on tiny models, exact resumption, and bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from v2l.seed import SEED_PRESETS, SeedConfig, SeedLLMConfig, SeedTrainConfig
from v2l.seed.network import CausalQFormer, SeedQuantizer, contrastive_loss, straight_through

TINY = SEED_PRESETS.get("tiny")


def _tree(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_query_never_attends_to_a_later_one():
    torch.manual_seed(0)
    qf = CausalQFormer(SeedConfig(queries=6, width=16, depth=2, heads=2), feature_dim=8, text_dim=4).eval()
    feats = torch.randn(2, 5, 8)
    before = qf(feats)
    with torch.no_grad():
        qf.queries[4] += 1.0  # change query 4's input
    after = qf(feats)
    assert torch.equal(before[:, :4], after[:, :4])  # queries 0..3 are bit-identical
    assert not torch.allclose(before[:, 4:], after[:, 4:])  # 4 and 5 see it


def test_the_contrastive_loss_equals_a_hand_computed_3x3_case():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    txt = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    s = [[sum(a * b for a, b in zip(i, t, strict=True)) * 2.0 for t in txt.tolist()] for i in img.tolist()]

    def ce(rows):
        return sum(math.log(sum(math.exp(x) for x in r)) - r[k] for k, r in enumerate(rows)) / 3

    cols = [[s[i][j] for i in range(3)] for j in range(3)]
    want = 0.5 * (ce(s) + ce(cols))
    assert abs(float(contrastive_loss(img, txt, 2.0)) - want) < 1e-6
    # a pair marked as not-a-negative leaves the denominators
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[0, 1] = mask[1, 0] = True
    assert float(contrastive_loss(img, txt, 2.0, mask)) < want


def test_the_straight_through_gradient_passes_unchanged_and_vq_trains_the_codebook():
    z = torch.randn(4, 3, requires_grad=True)
    q = torch.randn(4, 3)
    w = torch.randn(4, 3)
    out = straight_through(z, q)
    assert torch.allclose(out, q)
    (out * w).sum().backward()
    assert torch.equal(z.grad, w)
    quant = SeedQuantizer(SeedConfig(width=8, heads=2, codebook_size=5, code_dim=3))
    causal = torch.randn(2, 4, 8, requires_grad=True)
    emb, codes, loss = quant(causal)
    (emb.sum() + loss).backward()
    assert codes.shape == (2, 4) and codes.max() < 5
    assert quant.codebook.grad.abs().sum() > 0 and causal.grad.abs().sum() > 0


def test_dead_codes_restart_from_encoder_outputs():
    quant = SeedQuantizer(SeedConfig(width=8, heads=2, codebook_size=50, code_dim=3, dead_after=1)).train()
    book = quant.codebook.detach().clone()
    for _ in range(3):
        quant(torch.randn(1, 2, 8))
    changed = (quant.codebook.detach() != book).any(1)
    assert changed.sum() >= 40  # at most 2 codes per step were used; the rest restarted


def test_code_ids_round_trip_and_never_collide_with_text(tiny_tokenizer):
    from v2l.errors import V2LError
    from v2l.seed.llm import SeedVocabulary

    v = SeedVocabulary(len(tiny_tokenizer), 16)
    ids = v.wrap([0, 15, 7])
    assert ids[0] == v.start == len(tiny_tokenizer) and ids[-1] == v.end
    assert v.codes_of(ids) == [0, 15, 7]
    assert [v.text(i) for i in ids] == ["<img>", "<img_00000>", "<img_00015>", "<img_00007>", "</img>"]
    for text in ("<img_00001> <img> </img>", "a photo of a cat", "<|endoftext|>"):
        assert max(tiny_tokenizer(text, add_special_tokens=False)["input_ids"]) < v.base
    with pytest.raises(V2LError, match="out of range"):
        v.wrap([16])
    with pytest.raises(V2LError, match="not a SEED code"):
        v.codes_of([v.start, 5, v.end])


def _images(image_folder):
    from PIL import Image

    from v2l.seed.data import SeedImages

    files = sorted(image_folder.rglob("*.png"))
    return SeedImages(
        "tiny-test",
        [str(p) for p in files],
        [[f"a photo of a {p.parent.name}.", f"{p.parent.name} colours"] for p in files],
        lambda i: Image.open(files[i]).convert("RGB"),
        [p.parent.name for p in files],
    )


def _recipe(tiny_llama_dir, tiny_tokenizer_dir, **llm):
    from v2l.seed.recipe import SeedRecipe

    model = dataclasses.replace(TINY, tokenizer=str(tiny_tokenizer_dir))
    tcfg = SeedTrainConfig(
        batch_size=4, qformer_steps=4, codebook_steps=4, warmup_steps=1, log_every=1, checkpoint_every=1
    )
    lcfg = SeedLLMConfig(
        llm=str(tiny_llama_dir), batch_size=4, epochs=1, log_every=1, checkpoint_every=1, mixed_precision="no", **llm
    )
    return SeedRecipe("tiny", "", "", 1, model, tcfg, lcfg, Path("tiny.toml"), "0")


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory, tiny_llama_dir, tiny_tokenizer_dir, image_folder):
    from v2l.seed.recipe import run_seed

    before = _tree(tiny_llama_dir)
    out = tmp_path_factory.mktemp("seed") / "run"
    records = run_seed(
        _recipe(tiny_llama_dir, tiny_tokenizer_dir),
        out,
        progress=False,
        images=_images(image_folder),
        say=lambda m: None,
    )
    return out, records, before


def test_tiny_models_train_every_stage_and_the_checkpoint_captions_draws_and_reconstructs(seed_run, image_folder):
    from PIL import Image

    from v2l.seed import SeedModel

    out, records, _ = seed_run
    assert {"qformer", "codebook", "llm", "code_usage_train"} <= set(records)
    assert records["llm"]["new_token_rows"] == TINY.codebook_size + 2
    model = SeedModel.from_pretrained(out / "final")
    imgs = [Image.open(p).convert("RGB") for p in sorted(image_folder.rglob("*.png"))[:3]]
    codes = model.encode(imgs)
    assert codes.shape == (3, TINY.queries) and int(codes.max()) < TINY.codebook_size
    caps = model.caption(imgs)
    assert len(caps) == 3 and all(isinstance(c, str) and c.startswith("A photo of") for c in caps)
    drawn = model.generate(["a photo of a class0.", "class1"], samples=1)
    assert len(drawn) == 2 and drawn[0][0][0].size == (model.tok.config.resolution,) * 2
    assert all(0 <= c < TINY.codebook_size for c in drawn[0][0][1]) and len(drawn[0][0][1]) == TINY.queries
    assert len(model.reconstruct(imgs)) == 3
    a = model.generate(["class2"], samples=3, temperature=1.0, top_k=5, seed=1)[0]
    b = model.generate(["class2"], samples=3, temperature=1.0, top_k=5, seed=1)[0]
    assert [x[1] for x in a] == [x[1] for x in b]  # seeded sampling repeats
    assert len({tuple(x[1]) for x in a}) > 1  # and differs between samples
    meta = json.loads((out / "final" / "seed_config.json").read_text())
    assert meta["kind"] == "seed" and meta["code_usage"]["codebook_size"] == TINY.codebook_size


def test_lora_leaves_the_base_bit_identical_and_a_saved_seed_llm_reloads_to_identical_logits(seed_run, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    from v2l.seed.tune_llm import load_seed_llm

    out, _, before = seed_run
    assert _tree(tiny_llama_dir) == before  # the base model's files
    a = load_seed_llm(out / "final" / "llm", TINY.queries)
    b = load_seed_llm(out / "final" / "llm", TINY.queries)
    ids = torch.tensor([a.vocab.wrap([1, 2, 3, 4]) + [5, 6]])
    la, lb = a.model(input_ids=ids).logits, b.model(input_ids=ids).logits
    assert torch.equal(la, lb) and la.shape[-1] == a.vocab.size
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    emb = a.model.get_input_embeddings().weight
    assert torch.equal(emb[: a.vocab.base], base.get_input_embeddings().weight)  # old rows untouched
    assert not torch.allclose(emb[a.vocab.base + 2 :], emb[a.vocab.base + 2 :].mean(0))  # new rows trained apart


def test_batched_code_generation_equals_one_prompt_at_a_time(seed_run):
    from v2l.seed.tune_llm import load_seed_llm

    llm = load_seed_llm(seed_run[0] / "final" / "llm", TINY.queries)
    texts = ["a photo of a class0.", "class1 colours in a long prompt", "x"]
    batched = llm.generate_codes(texts, batch_size=8)
    one = torch.cat([llm.generate_codes([t], batch_size=1) for t in texts])
    assert torch.equal(batched, one)


def test_each_stage_resumes_exactly_after_a_kill(tmp_path, seed_run, tiny_llama_dir, tiny_tokenizer_dir, image_folder):
    from v2l.seed.recipe import run_seed

    rec, images = _recipe(tiny_llama_dir, tiny_tokenizer_dir), _images(image_folder)
    out = tmp_path / "run"
    quiet = lambda m: None  # noqa: E731
    assert run_seed(rec, out, stop_after=2, progress=False, images=images, say=quiet) == {"stopped": True}  # stage I
    assert run_seed(rec, out, stop_after=6, resume=True, progress=False, images=images, say=quiet) == {"stopped": True}
    run_seed(rec, out, stop_after=1, resume=True, progress=False, images=images, say=quiet)  # ends inside stage III
    assert not (out / "final").exists()
    run_seed(rec, out, resume=True, progress=False, images=images, say=quiet)
    ref = seed_run[0]
    assert (out / "tokenizer" / "seed.safetensors").read_bytes() == (
        ref / "tokenizer" / "seed.safetensors"
    ).read_bytes()
    a = (out / "final" / "llm" / "adapter_model.safetensors").read_bytes()
    assert a == (ref / "final" / "llm" / "adapter_model.safetensors").read_bytes()


def test_the_shipped_checkpoint_is_the_recipes_small_and_loads():
    from v2l.seed.model import SHIPPED
    from v2l.seed.recipe import load_seed_recipe

    folder = SHIPPED / "seed-cpu"
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= 30 * 2**20
    meta = json.loads((folder / "seed_config.json").read_text())
    rec = load_seed_recipe("seed-cpu")
    assert meta["recipe"]["sha256"] == rec.sha256 and meta["config"] == rec.model.to_dict()
    assert meta["code_usage"]["codes_used"] > 0


def _cli(args, capsys):
    from v2l.cli import main

    try:
        code = main(args)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr()


def test_a_seed_checkpoint_in_a_v2l_verb_and_the_reverse_are_one_sentence(
    seed_run, tiny_tokenizer_dir, image_folder, capsys, tmp_path
):
    img = str(sorted(image_folder.rglob("*.png"))[0])
    code, cap = _cli(["tokenize", "-t", str(seed_run[0] / "final"), img], capsys)
    assert code == 2 and "is a SEED checkpoint" in cap.err and "Traceback" not in cap.err
    code, cap = _cli(["seed", "caption", "--seed-model", str(tiny_tokenizer_dir), img], capsys)
    assert code == 2 and "is a V2L tokenizer checkpoint" in cap.err
    code, cap = _cli(["seed", "generate", "", "-o", str(tmp_path / "x.png")], capsys)
    assert code == 2 and "PROMPT is empty" in cap.err and not (tmp_path / "x.png").exists()


def test_a_prompt_longer_than_the_context_and_another_base_llm_are_refused(seed_run, tmp_path, tiny_tokenizer):
    from transformers import LlamaForCausalLM

    from conftest import tiny_llama_config
    from v2l.errors import V2LError
    from v2l.seed.tune_llm import load_seed_llm

    llm = load_seed_llm(seed_run[0] / "final" / "llm", TINY.queries)
    with pytest.raises(V2LError, match="beyond the LLM's context"):
        llm.generate_codes(["cat " * 400])
    other = tmp_path / "other-llama"
    torch.manual_seed(1)
    LlamaForCausalLM(tiny_llama_config(tiny_tokenizer)).save_pretrained(other)
    tiny_tokenizer.save_pretrained(other)
    with pytest.raises(V2LError, match="was trained for the LLM"):
        load_seed_llm(seed_run[0] / "final" / "llm", TINY.queries, llm=str(other))


def test_a_damaged_seed_checkpoint_is_one_sentence(seed_run, tmp_path):
    import shutil

    from v2l.errors import V2LError
    from v2l.seed import SeedModel

    bad = tmp_path / "bad"
    shutil.copytree(seed_run[0] / "final", bad)
    (bad / "seed.safetensors").write_bytes((bad / "seed.safetensors").read_bytes()[:100])
    with pytest.raises(V2LError, match="seed.safetensors"):
        SeedModel.from_pretrained(bad)
    (bad / "seed_config.json").write_text("[1, 2]")
    with pytest.raises(V2LError, match="seed_config.json"):
        SeedModel.from_pretrained(bad)


def test_the_recipe_is_checked(tmp_path):
    from v2l.errors import V2LError
    from v2l.seed.recipe import load_seed_recipe

    rec = load_seed_recipe("seed-cpu")
    assert rec.model.codebook_size == 1024 and rec.llm.llm == "smollm2-135m"
    bad = tmp_path / "r.toml"
    bad.write_text('format = 1\nkind = "seed"\n[tokenizer]\nqformer_steps = "many"\n')
    with pytest.raises(V2LError, match="qformer_steps"):
        load_seed_recipe(bad)
    bad.write_text('format = 1\nkind = "seed"\n[model]\ncodebooks = 3\n')
    with pytest.raises(V2LError, match="unknown fields"):
        load_seed_recipe(bad)


def test_the_seed_stage_scores_seed_beside_v2l_on_the_same_images(seed_run, long_lm, data_root, tmp_path):
    import v2l.eval.bench as B
    from v2l.seed import SeedModel

    seed = SeedModel.from_pretrained(seed_run[0] / "final")
    suite = B.Suite(
        images=0,
        episodes=0,
        stages=("seed",),
        seed_retrieval=4,
        seed_captions=2,
        seed_class_images=3,
        seed_pool_per_class=1,
        seed_prompts=2,
        seed_recon_images=2,
    )
    models = {"tokenizer": seed.tok, "lm": long_lm, "seed": seed}
    ctx = B.BenchContext(
        suite, data_root=str(data_root), tokenizer_name="tiny", llm_name="tiny", progress=False, models=models
    )
    res = B.run_bench(suite, tmp_path / "bench", ctx, say=lambda m: None)
    d = res["stages"]["seed"]
    r = d["retrieval"]
    assert r["images"] == 4 and r["texts"] >= 4 * 5
    for row in ("seed_causal_embedding", "seed_causal_codes", "vl_image_embedding"):
        assert r[row]["t2i_r10"] == 100.0  # 4 images: every text's image is in its top 10
        assert 0 <= r[row]["i2t_r1"] <= r[row]["i2t_r5"] <= r[row]["i2t_r10"] <= 100
    assert set(d["captioning"]) >= {"seed_llm", "v2l_in_context"} and d["captioning"]["images"] == 2
    assert 0 <= d["classification"]["seed_llm_accuracy"] <= 1 and d["classification"]["images"] == 3
    assert d["reconstruction"]["images"] == 2 and d["reconstruction"]["seed_psnr"] > 0
    report = (tmp_path / "bench" / "report.md").read_text()
    assert "SEED beside V2L" in report and "causal codes" in report


def test_recall_at_k_on_a_hand_made_case():
    from v2l.seed.evaluate import class_hit, recall_at

    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])  # text 2 belongs to image 1 but looks like image 0
    r = recall_at(img, txt, [0, 1, 1], ks=(1, 2))
    assert r["i2t_r1"] == 100.0 and r["t2i_r1"] == round(100 * 2 / 3, 2) and r["t2i_r2"] == 100.0
    assert class_hit("A photo of a goldfish.", "goldfish") and not class_hit("a gold fish", "goldfish")
    assert class_hit("a photo of a school bus", "school bus") and not class_hit("a bus", "school bus")


def test_seed_train_dry_run_and_a_started_run_needs_resume(tmp_path, capsys):
    code, cap = _cli(["seed", "train", "--recipe", "seed-cpu", "--dry-run", "--json"], capsys)
    assert code in (0, None)
    got = json.loads(cap.out)
    assert got["model"]["codebook_size"] == 1024 and got["model"]["queries"] == 32 and got["llm"]["r"] == 8
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.json").write_text(json.dumps({"sha256": "another"}))
    code, cap = _cli(["seed", "train", "-o", str(run)], capsys)
    assert code == 2 and "--resume" in cap.err
    code, cap = _cli(["seed", "train", "-o", str(run), "--resume"], capsys)
    assert code == 2 and "another version of the recipe" in cap.err
