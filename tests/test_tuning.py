"""LoRA tuning (paper appendix A), masked restoration (§4.3, Fig. 8) and images from words, on tiny random models of
the real classes: a 2-layer LlamaForCausalLM, a random CLIP and the `tiny` V2L tokenizer (an 8×8 token map)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli
from v2l.errors import V2LError


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree_sha(folder: Path) -> dict:
    return {str(p.relative_to(folder)): _sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tok(tiny_tokenizer_dir, tiny_vl):
    from v2l.tokenizer import ImageTokenizer

    return ImageTokenizer.from_pretrained(tiny_tokenizer_dir, vl=tiny_vl, progress=False)


def _cfg(tiny_llama_dir, tiny_tokenizer_dir, image_folder, **kw):
    from v2l.tuning import TuneConfig

    base = dict(
        llm=str(tiny_llama_dir),
        tokenizer=str(tiny_tokenizer_dir),
        data=str(image_folder),
        split="",
        classes=2,
        per_class=3,
        epochs=2,
        batch_size=2,
        warmup_epochs=0.5,
        lr=1e-2,
        log_every=1,
        checkpoint_every=1,
    )
    return TuneConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llama_dir, tiny_tokenizer_dir, image_folder):
    """One finished tiny run (its folder) and the base model's files' hashes before it."""
    from v2l.tuning import tune

    before = _tree_sha(tiny_llama_dir)
    out = tmp_path_factory.mktemp("lora") / "run"
    summary = tune(_cfg(tiny_llama_dir, tiny_tokenizer_dir, image_folder), out, progress=False)
    return out, before, summary


# ---- sequences and the loss mask ---------------------------------------------------------------------------------
def test_sequence_labels_cover_exactly_the_local_ids():
    from v2l.tuning import IGNORE, collate, local_loss, sequence

    ids, labels = sequence([5, 6, 7], [10, 11, 12])
    assert ids == [5, 6, 7, 10, 11, 12]
    assert labels == [IGNORE, IGNORE, IGNORE, 10, 11, 12]
    batch = collate([sequence([5, 6, 7], [10, 11]), sequence([8], [12, 13])], pad_id=0)
    assert batch["labels"].tolist() == [[IGNORE, IGNORE, IGNORE, 10, 11], [IGNORE, 12, 13, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 20)
    # by hand: position t predicts t+1; only targets that are local ids count
    terms = []
    for b, pairs in ((0, [(2, 10), (3, 11)]), (1, [(0, 12), (1, 13)])):
        for t, y in pairs:
            terms.append(-torch.log_softmax(logits[b, t], -1)[y])
    assert torch.allclose(local_loss(logits, batch["labels"]), torch.stack(terms).mean())


def test_the_schedule_warms_up_linearly_then_decays_by_half_cosine():
    from v2l.tuning import lr_factor

    assert [round(lr_factor(s, 4, 12), 3) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 12) == pytest.approx(1.0)
    assert lr_factor(8, 4, 12) == pytest.approx(0.5)
    assert lr_factor(12, 4, 12) == pytest.approx(0.0)


def test_tuning_classes_are_a_fixed_sha256_choice_of_training_classes():
    from v2l.data import tiny_imagenet_split
    from v2l.tuning import tuning_classes

    chosen = tuning_classes(12)
    assert len(chosen) == 12 and set(chosen) <= set(tiny_imagenet_split()["train"])
    assert chosen == tuning_classes(12)
    with pytest.raises(V2LError, match="held-out"):
        tuning_classes(wnids=[tiny_imagenet_split()["heldout"][0]])


# ---- LoRA and adapters ---------------------------------------------------------------------------------------------
def test_lora_leaves_base_weights_bit_identical_and_a_saved_adapter_reloads_to_identical_logits(
    tmp_path, tiny_llama_dir
):
    from peft import PeftModel

    from v2l.backbones import LanguageModel
    from v2l.backbones.llm_loading import open_model
    from v2l.tuning import TuneConfig, attach_lora, save_adapter

    model = open_model(str(tiny_llama_dir), progress=False)[0]
    base = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = attach_lora(model, TuneConfig())
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and ("q_proj" in n or "k_proj" in n) for n in trainable)
    torch.manual_seed(1)
    for n, p in peft_model.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.5)  # a trained-looking adapter (B starts at 0)
    ids = torch.tensor([[1, 5, 9, 30, 2, 7]])
    with torch.no_grad():
        want = peft_model(input_ids=ids).logits
    base_now = peft_model.get_base_model().state_dict()
    for k, v in base.items():
        key = next(n for n in base_now if n.replace(".base_layer", "") == k)
        assert torch.equal(base_now[key], v), k
    save_adapter(peft_model, tmp_path / "ad", {"llm": {"name": "tiny"}})
    assert sorted(p.name for p in (tmp_path / "ad").iterdir() if p.suffix in (".json", ".safetensors")) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "v2l_adapter.json",
    ]
    assert all(k.count("lora_") == 1 for k in load_file(tmp_path / "ad" / "adapter_model.safetensors"))
    fresh = PeftModel.from_pretrained(open_model(str(tiny_llama_dir), progress=False)[0], str(tmp_path / "ad"))
    with torch.no_grad():
        assert torch.equal(fresh(input_ids=ids).logits, want)
    merged = LanguageModel.load(str(tiny_llama_dir), adapter=str(tmp_path / "ad"), progress=False)
    with torch.no_grad():
        assert torch.allclose(merged.model(input_ids=ids).logits, want, atol=1e-5)
    frozen = LanguageModel.load(str(tiny_llama_dir), progress=False)
    with torch.no_grad():
        assert not torch.allclose(frozen.model(input_ids=ids).logits, want, atol=1e-3)


def test_training_never_writes_the_base_model_and_writes_a_peft_adapter(trained, tiny_llama_dir):
    out, before, summary = trained
    assert _tree_sha(tiny_llama_dir) == before
    final = out / "final"
    meta = json.loads((final / "v2l_adapter.json").read_text())
    assert meta["llm"]["architecture"] == "LlamaForCausalLM" and meta["config"]["r"] == 4
    assert json.loads((final / "adapter_config.json").read_text())["target_modules"] in (
        ["q_proj", "k_proj"],
        ["k_proj", "q_proj"],
    )
    assert (final / "adapter_model.safetensors").stat().st_size < 1_000_000
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,lr") and len(rows) == 1 + summary["steps"]
    assert summary["trainable_parameters"] > 0 and summary["steps"] == 2 * 3  # 6 images / 2 per step × 2 epochs


def test_kill_and_resume_gives_the_same_adapter(tmp_path, trained, tiny_llama_dir, tiny_tokenizer_dir, image_folder):
    from v2l.tuning import tune

    cfg = _cfg(tiny_llama_dir, tiny_tokenizer_dir, image_folder)
    tune(cfg, tmp_path / "run", progress=False, stop_after=3)  # ends after step 3 as a kill would
    assert not (tmp_path / "run" / "final").exists()
    tune(cfg, tmp_path / "run", resume=True, progress=False)
    a = load_file(trained[0] / "final" / "adapter_model.safetensors")
    b = load_file(tmp_path / "run" / "final" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(V2LError, match="lr"):
        tune(_cfg(tiny_llama_dir, tiny_tokenizer_dir, image_folder, lr=1e-3), tmp_path / "run", resume=True)


def test_an_adapter_for_another_base_model_is_refused(tmp_path, trained, tiny_llama_dir):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from v2l.backbones import LanguageModel

    torch.manual_seed(7)  # the same architecture and sizes, other weights
    LlamaForCausalLM(LlamaConfig.from_pretrained(tiny_llama_dir)).save_pretrained(tmp_path / "other")
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(tmp_path / "other")
    with pytest.raises(V2LError, match="was trained for the LLM .*embedding_sha256"):
        LanguageModel.load(str(tmp_path / "other"), adapter=str(trained[0] / "final"), progress=False)
    with pytest.raises(V2LError, match="no such folder or shipped adapter"):
        LanguageModel.load(str(tiny_llama_dir), adapter=str(tmp_path / "missing"), progress=False)


# ---- restoration ---------------------------------------------------------------------------------------------------
def test_random_mask_is_seeded_and_exact():
    from v2l.tuning.restore import random_mask

    m = random_mask(256, 0.3, seed=4)
    assert int(m.sum()) == round(0.3 * 256) and torch.equal(m, random_mask(256, 0.3, seed=4))
    assert not torch.equal(m, random_mask(256, 0.3, seed=5))
    for bad in (0, 1, 1.5, -0.2):
        with pytest.raises(V2LError, match="--mask"):
            random_mask(256, bad)


def test_teacher_forcing_feeds_the_true_unmasked_ids(tok, tiny_lm):
    from v2l.tuning.restore import TunedLLM

    reader = TunedLLM(tok, tiny_lm, batch_size=1)
    local = torch.tensor([[40, 41, 42, 43, 44, 45, 46, 47]])
    mask = torch.tensor([False, False, True, False, False, True, False, False])
    fed: list[list[int]] = []
    real = tiny_lm.model.forward

    def spy(*a, **kw):
        fed.append(kw["input_ids"][0].tolist())
        return real(*a, **kw)

    tiny_lm.model.forward = spy
    try:
        out = reader.fill([[7, 8]], local, mask)
    finally:
        tiny_lm.model.forward = real
    seq = [t for chunk in fed for t in chunk]
    # the prefix, the true ids 40 41, the prediction at 2, the true 43 44, the prediction at 5 (nothing after it is fed)
    assert seq == [7, 8, 40, 41, int(out[0, 2]), 43, 44]
    assert out[0, [0, 1, 3, 4, 6, 7]].tolist() == [40, 41, 43, 44, 46, 47]
    assert int(out[0, 2]) in reader.allowed.tolist() and int(out[0, 5]) in reader.allowed.tolist()


def test_batched_restoration_equals_one_position_at_a_time(tok, tiny_lm):
    from v2l.tuning.restore import TunedLLM, random_mask

    reader = TunedLLM(tok, tiny_lm, batch_size=3)
    torch.manual_seed(0)
    local = reader.allowed[torch.randint(len(reader.allowed), (3, 64))]
    prefixes = [[5, 6, 7, 8, 9], [11], [12, 13, 14]]  # different lengths: left padding in the batch
    mask = random_mask(64, 0.3, seed=2)
    batched = reader.fill(prefixes, local, mask)
    assert torch.equal(batched, reader.fill_reference(prefixes, local, mask))
    assert torch.equal(batched[:, ~mask], local[:, ~mask])


def test_tiny_models_tune_restore_and_draw_end_to_end(trained, tok, tiny_llama_dir, long_lm):
    from v2l.backbones import LanguageModel
    from v2l.tuning.restore import generate_images, restore_images

    lm = LanguageModel.load(str(tiny_llama_dir), adapter=str(trained[0] / "final"), progress=False)
    from PIL import Image

    imgs = [Image.new("RGB", (24, 24), c) for c in ("red", "blue")]
    res = restore_images(tok, lm, imgs, ratio=0.3, seed=0)
    assert len(res) == 2 and res[0].restored.size == (16, 16) and res[0].masked.size == (16, 16)
    mask = torch.tensor(res[0].mask)
    assert int(mask.sum()) == round(0.3 * 64)
    frozen = restore_images(tok, long_lm, imgs, 0.3, 0, frozen=True)  # in context: 10 examples need a long context
    assert torch.equal(torch.tensor(frozen[0].tokens)[~mask], torch.tensor(res[0].tokens)[~mask])
    drawn = generate_images(tok, lm, ["a red car", "the sea"], samples=2, temperature=1.0, top_k=5, seed=0)
    assert [len(g) for g in drawn] == [2, 2] and drawn[0][0][0].size == (16, 16)
    again = generate_images(tok, lm, ["a red car", "the sea"], samples=2, temperature=1.0, top_k=5, seed=0)
    assert drawn[1][1][2] == again[1][1][2]  # seeded
    with pytest.raises(V2LError, match="empty"):
        generate_images(tok, lm, ["  "])


KILLER = """
import os, signal, sys
import safetensors.torch as st
from v2l.tuning import TuneConfig, tune
import v2l.tuning.trainer as trainer

real = st.save_file
def save_file(tensors, path, *a, **kw):
    if "checkpoint-0000004" in str(path) and path.endswith("optimizer.safetensors"):
        os.kill(os.getpid(), signal.SIGKILL)  # killed while checkpoint 4 is half written
    return real(tensors, path, *a, **kw)
st.save_file = save_file
settings = __import__("json").loads(sys.argv[2])
cfg = TuneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
tune(cfg, sys.argv[1], resume=len(sys.argv) > 3, progress=False)
"""


def test_sigkill_while_a_checkpoint_is_written_then_resume_gives_the_same_adapter(
    tmp_path, trained, tiny_llama_dir, tiny_tokenizer_dir, image_folder
):
    import os
    import subprocess
    import sys

    cfg = _cfg(tiny_llama_dir, tiny_tokenizer_dir, image_folder).to_dict()
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run([sys.executable, str(script), str(run), json.dumps(cfg)], env=env, capture_output=True)
    assert first.returncode == -9, first.stderr.decode()[-2000:]
    assert json.loads((run / "latest.json").read_text())["step"] == 3 and not (run / "final").exists()
    resumed = subprocess.run(  # `--resume` alone: the run's own settings
        [sys.executable, "-m", "v2l", "tune", "-o", str(run), "--resume"], env=env, capture_output=True
    )
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert "resuming from" in resumed.stderr.decode()
    a = load_file(trained[0] / "final" / "adapter_model.safetensors")
    b = load_file(run / "final" / "adapter_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_restoration_stage_scores_every_row_on_the_same_mask(trained, tok, long_lm, data_root, tmp_path):
    import dataclasses

    from v2l.backbones import LanguageModel
    from v2l.eval import bench as B

    suite = dataclasses.replace(
        B.Suite(images=2, episodes=2, kg=(3,)),
        stages=("restoration",),
        restore_images=2,
        restore_tuned_images=3,
        denoise_n=4,
        denoise_m=2,
        restore_adapter=str(trained[0] / "final"),
        generate_classes=2,
        generate_samples=2,
    )
    tuned = LanguageModel.load(str(Path(long_lm.source)), adapter=str(trained[0] / "final"), progress=False)
    ctx = B.BenchContext(
        suite,
        data_root=str(data_root),
        tokenizer_name="tiny",
        llm_name="tiny",
        progress=False,
        models={"tokenizer": tok, "lm": long_lm, "tuned_lm": tuned},
    )
    res = B.run_bench(suite, tmp_path / "b", ctx)["stages"]["restoration"]
    rows = res["tuning_classes"]
    assert set(rows) - {"seconds"} == {"tuned", "frozen", "nearest", "frequent", "input", "ceiling"}
    assert rows["tuned"]["images"] == 3 and res["heldout_classes"]["ceiling"]["images"] == 2
    assert rows["ceiling"]["psnr"] > rows["input"]["psnr"]  # nothing masked beats the masked ids set to 0
    assert 0 <= rows["tuned"]["masked_tokens_exact"] <= 1 and "masked_tokens_exact" not in rows["ceiling"]
    report = (tmp_path / "b" / "report.md").read_text()
    assert "masked restoration" in report and "LoRA-tuned LLM" in report
    assert (tmp_path / "b" / res["figure"]).is_file()
    gen = res["generation"]
    assert len(gen["prompts"]) == 2 and (tmp_path / "b" / gen["figure"]).is_file() and "Images from words" in report


def test_restoration_maps_fill_only_masked_positions(tok, tiny_lm):
    from PIL import Image

    from v2l.tuning.evaluate import fill_frequent, restoration_maps

    local = torch.tensor([[5, 5, 7, 9], [1, 2, 2, 3]])
    mask = torch.tensor([False, True, False, True])
    assert fill_frequent(local, mask).tolist() == [[5, 5, 7, 5], [1, 1, 2, 1]]  # ties: the smallest id
    imgs = [Image.new("RGB", (16, 16), c) for c in ("red", "green")]
    maps, gids, true, m = restoration_maps(tok, imgs, 0.25, 3, tuned_lm=tiny_lm)
    for k, v in maps.items():
        assert torch.equal(v[:, ~m], true[:, ~m]), k
    assert (maps["input"][:, m] == 0).all() and torch.equal(maps["ceiling"], true)


def _cli(args: list[str]) -> int:
    return run_cli(args)


def test_restore_generate_and_tune_verbs_on_tiny_models(tmp_path, trained, tiny_llama_dir, tiny_tokenizer_dir):
    from PIL import Image

    Image.new("RGB", (20, 20), "orange").save(tmp_path / "a.png")
    Image.new("RGB", (20, 20), "navy").save(tmp_path / "b.png")
    common = ["--llm", str(tiny_llama_dir), "-t", str(tiny_tokenizer_dir), "--adapter", str(trained[0] / "final")]
    assert (
        _cli(
            [
                "restore",
                str(tmp_path / "a.png"),
                "-o",
                str(tmp_path / "r.png"),
                "--save-masked",
                str(tmp_path / "m.png"),
                *common,
            ]
        )
        == 0
    )
    assert Image.open(tmp_path / "r.png").size == (16, 16) and (tmp_path / "m.png").is_file()
    assert (
        _cli(["restore", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "many"), *common]) == 0
    )
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["a.png", "b.png"]
    assert _cli(["generate", "a red car", "the sea", "--samples", "2", "-o", str(tmp_path / "drawn"), *common]) == 0
    assert len(list((tmp_path / "drawn").glob("*.png"))) == 4
    run = tmp_path / "run"
    assert _cli(["tune", "-o", str(run), "--llm", str(tiny_llama_dir), "--r", "8", "--dry-run", "--json"]) == 0
    assert not run.exists()


def test_an_adapter_for_another_llm_is_one_sentence_and_no_file(
    tmp_path, capsys, trained, tiny_tokenizer_dir, tiny_llama_dir
):
    from PIL import Image
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src = Path(trained[0] / "final")
    base = json.loads((src / "v2l_adapter.json").read_text())["llm"]
    torch.manual_seed(9)
    other = tmp_path / "other"
    cfg = LlamaConfig(
        vocab_size=base["vocab_size"],
        hidden_size=base["hidden_size"],
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    LlamaForCausalLM(cfg).save_pretrained(other)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(other)
    Image.new("RGB", (20, 20), "orange").save(tmp_path / "a.png")
    code = _cli(
        [
            "restore",
            str(tmp_path / "a.png"),
            "-o",
            str(tmp_path / "r.png"),
            "--llm",
            str(other),
            "-t",
            str(tiny_tokenizer_dir),
            "--adapter",
            str(src),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "was trained for the LLM" in err and err.count("\n") == 1
    assert not (tmp_path / "r.png").exists()


# ---- the shipped adapter -------------------------------------------------------------------------------------------
def test_the_shipped_adapter_is_the_recipes_and_small():
    from v2l.backbones.adapters import DEFAULT_ADAPTER, adapter_folder, read_adapter_meta
    from v2l.tuning import load_tune_recipe

    folder = adapter_folder(DEFAULT_ADAPTER)
    meta = read_adapter_meta(folder)
    recipe = load_tune_recipe("lora-cpu")
    assert meta["recipe"]["name"] == "lora-cpu" and meta["recipe"]["sha256"] == recipe.sha256
    assert meta["config"] == json.loads(json.dumps(recipe.config.to_dict()))
    assert meta["llm"]["name"] == "smollm2-135m" and meta["llm"]["source_sha256"]
    assert (folder / "adapter_model.safetensors").stat().st_size < 1_000_000
    assert meta["training"]["steps"] == 300 and meta["training"]["trainable_parameters"] == 230_400
    tensors = load_file(folder / "adapter_model.safetensors")
    assert len(tensors) == 2 * 2 * 30  # A and B for q and k in each of SmolLM2's 30 layers
    assert all(t.abs().sum() > 0 for k, t in tensors.items() if "lora_B" in k)  # trained (B starts at zero)


@pytest.mark.slow
def test_restore_with_the_shipped_adapter_beats_the_masked_input_on_held_out_images(tmp_path, data_root, capsys):
    """The issue's bar, on 8 seeded held-out images (docs/results.md: +0.9 dB on 40; single images vary)."""
    from v2l.eval.bench.stages.reconstruction import heldout_eval_images

    paths = []
    for k, img in enumerate(heldout_eval_images(8, 64, str(data_root), seed=0)):
        img.save(tmp_path / f"held{k}.png")
        paths.append(str(tmp_path / f"held{k}.png"))
    code = _cli(["restore", *paths, "-o", str(tmp_path / "out"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and len(list((tmp_path / "out").glob("*.png"))) == 8 and out["adapter"] == "v2l-cpu"
    rows = out["images"]
    restored = sum(r["psnr_restored"] for r in rows) / len(rows)
    assert restored > sum(r["psnr_masked_input"] for r in rows) / len(rows)
