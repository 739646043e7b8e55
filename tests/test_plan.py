"""The cost model (`v2l plan`): model sizes against the real classes, FLOPs against torch's FlopCounterMode, the
verb, and its predictions for this CPU against measured runs of other shapes than the calibration's."""

from __future__ import annotations

import json

import pytest
import torch

from v2l.plan import GPUS, llm_config, llm_spec, plan_table, vl_spec
from v2l.plan.costs import TokenStats, codebook_job, table1_job, table4_job


def _count(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as c:
        fn()
    return float(c.get_total_flops())


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m", "llama2-7b", "llama2-70b"])
def test_parameter_counts_equal_the_real_class_on_the_meta_device(name):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(llm_config(name))
    real = sum(p.numel() for p in model.parameters())  # tied embeddings counted once by parameters()
    assert llm_spec(name).params == pytest.approx(real, rel=0.002), name  # norms are left out (< 0.2 %)
    assert type(model).__name__ in ("LlamaForCausalLM", "Gemma3ForCausalLM")


def test_the_preset_numbers_are_the_real_smollm2s(real_lm):
    spec, cfg = llm_spec("smollm2-135m"), real_lm.model.config
    assert (spec.layers, spec.hidden, spec.heads, spec.kv_heads, spec.intermediate, spec.vocab) == (
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.intermediate_size,
        real_lm.vocab_size,
    )


def test_forward_flops_equal_the_flop_counter(tiny_tokenizer):
    from transformers import LlamaForCausalLM

    from conftest import tiny_llama_config

    cfg = tiny_llama_config(tiny_tokenizer, attn_implementation="eager")
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (3, 40))
    with torch.inference_mode():
        counted = _count(lambda: model(input_ids=ids))
    from v2l.plan import Transformer

    spec = Transformer.from_config("tiny", cfg)
    assert spec.forward_flops(3 * 40, 40, 3 * 40) == pytest.approx(counted, rel=0.01)


def test_conse_image_flops_are_the_counted_ones(conse):
    img = torch.zeros(1, 3, 224, 224)
    with torch.inference_mode():
        counted = _count(lambda: conse.classifier(img))
    assert vl_spec("conse").image_flops == pytest.approx(counted, rel=0.03)


def test_costs_grow_with_size_and_vocabulary():
    stats = TokenStats(per_word=1.67, per_label=2.3, per_caption=12, word_fraction=0.6)
    clip = vl_spec("clip-vit-l14")
    seven, seventy = llm_spec("llama2-7b"), llm_spec("llama2-70b")
    t1 = [table1_job(m, stats, 100, "bfloat16") for m in (seven, seventy)]
    assert 9 < t1[1].flops / t1[0].flops < 11  # ~10× the parameters
    assert t1[0].fits(GPUS["H100"]) == 1 and t1[1].fits(GPUS["H100"]) == 2  # 70B in bf16 needs two H100s
    books = {n: codebook_job(llm_spec(n), clip, stats, 80, 1000, "bfloat16") for n in ("llama2-7b", "gemma3-270m")}
    assert books["gemma3-270m"].counts["texts"] > 8 * books["llama2-7b"].counts["texts"]  # 262,144 vs 32,000 tokens
    h100, v100 = GPUS["H100"], GPUS["V100"]
    job = table4_job(seven, 50, "bfloat16")
    assert job.seconds(h100, "bfloat16") < job.seconds(v100, "bfloat16")


def test_plan_verb_prints_a_table_and_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("V2L_CACHE", str(tmp_path / "cache"))
    from v2l.cli import main

    fake = {
        "threads": torch.get_num_threads(),
        "llm": {
            "prefill_flops": 1e11,
            "prefill_s": 1.0,
            "step_s": 0.1,
            "decode_batch": 8,
            "step_s_one_row": 0.05,
            "context": 72,
        },
        "train": {"flops": 1e11, "seconds": 2.0, "batch": 8, "preset": "cpu"},
        "tokens": {"per_word": 1.67, "per_label": 2.3, "per_caption": 12, "word_fraction": 0.6},
    }
    from v2l.paths import cache_root, write_json_atomic

    write_json_atomic(cache_root() / "plan" / "calibration.json", fake)  # no minute of measuring in a unit test
    out = tmp_path / "plan.json"
    with pytest.raises(SystemExit) as e:
        main(["plan", "--llm", "llama2-7b", "--vl", "clip-vit-l14", "--suite", "cpu", "--json", "-o", str(out)])
    assert e.value.code in (0, None)
    got = json.loads(capsys.readouterr().out)
    assert got == json.loads(out.read_text())
    assert [j["job"] for j in got["jobs"]] == [
        "codebook build",
        "tokenizer training",
        "Table 1 grid",
        "Table 4 restorations",
        "captioning",
    ]
    assert set(got["jobs"][0]["hardware"]) == {"H100", "A100", "V100", "CPU"} and got["llm"]["vocab"] == 32000
    text = plan_table(got)
    assert text.count("\n") == 6 and "| H100 |" in text
    with pytest.raises(SystemExit) as e:
        main(["plan", "--llm", "gpt-9"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--llm 'gpt-9'" in err[0]


@pytest.mark.slow
def test_cpu_predictions_fall_within_the_stated_error_of_measured_runs(real_lm, monkeypatch, tmp_path):
    """Calibrated here (a prefill, decode steps, a `cpu`-preset step at 64 px), checked on other shapes: SmolLM2's
    real weights generating through the verbs' engine, and a `paper`-preset training step at 128 px."""
    from v2l.plan import calibrate
    from v2l.plan.check import CPU_ERROR, check_llm, check_training

    monkeypatch.setenv("V2L_CACHE", str(tmp_path))
    cal = calibrate(force=True)
    for row in (check_llm(real_lm, cal), check_training(cal)):
        assert 1 - CPU_ERROR <= row["ratio"] <= 1 + CPU_ERROR, row
