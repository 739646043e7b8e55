"""Paper scale (device, precision, the paper's models by name, big-model loading): `--device` / `--dtype` on every
verb that runs a model, recorded in results; a LLaMA-architecture LLM and a CLIP model through every verb; CPU
float32 against CUDA float32 where a GPU exists."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from conftest import run_cli
from v2l.errors import ConfigError
from v2l.runtime import configure, current, resolve

# verbs that run no model (they take neither --device nor --dtype)
NO_MODEL = {"version", "data export", "codebook show", "recipe list", "recipe show", "recipe ship", "plan"}


@pytest.fixture(autouse=True)
def _reset_runtime():
    import v2l.runtime as rt

    yield
    rt._CURRENT = None  # every test starts from the library default


def _cli(args: list[str]) -> int:
    return run_cli(args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusals of a machine without CUDA")
def test_runtime_resolves_auto_and_refuses_what_cannot_run_here():
    rt = resolve("auto", "auto")
    assert (rt.device, rt.dtype, rt.device_map) == ("cpu", "float32", None)
    assert resolve("cpu", "bf16").dtype == "bfloat16" and resolve("CPU", "fp32").dtype == "float32"
    for device, dtype, says in (
        ("cuda", "auto", "--device cuda: torch sees no CUDA device"),
        ("cuda:1", "auto", "--device cuda:1: torch sees no CUDA device"),
        ("tpu", "auto", "--device 'tpu' is not one of auto, cpu, cuda, cuda:N"),
        ("cuda:x", "auto", "is not one of"),
        ("cpu", "int8", "--dtype 'int8' is not one of auto, float32, bfloat16, float16"),
        ("cpu", "float16", "--dtype float16 on the CPU"),
    ):
        with pytest.raises(ConfigError, match=says.replace("(", r"\(")):
            resolve(device, dtype)
    assert current().device == "cpu"  # the library's default before anything configures it
    configure("cpu", "bfloat16")
    from v2l.machine import machine

    assert machine()["runtime"]["dtype"] == "bfloat16" and machine()["runtime"]["requested"]["device"] == "cpu"


def test_every_verb_that_runs_a_model_takes_device_and_dtype():
    from test_cli_convention import _verbs

    verbs = _verbs()
    assert NO_MODEL < set(verbs)
    for name, cmd in verbs.items():
        opts = {o for p in cmd.params for o in p.opts}
        if name in NO_MODEL:
            assert "--device" not in opts, name
        else:
            assert {"--device", "--dtype"} <= opts, f"v2l {name} has no --device/--dtype"


def test_a_device_this_machine_lacks_is_one_sentence(tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32), "red").save(img)
    assert _cli(["tokenize", str(img), "-o", str(tmp_path / "t.json"), "--device", "tpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --device 'tpu'") and not (tmp_path / "t.json").exists()


def test_llm_dtype_and_accelerate_big_model_loading_with_disk_offload(tiny_llama_dir, tmp_path):
    """bfloat16 weights through the same LanguageModel; `device_map` with most layers offloaded to disk gives the
    same greedy text as the model held whole (the path an LLM larger than the GPU takes)."""
    from v2l.backbones import LanguageModel

    whole = LanguageModel.load(str(tiny_llama_dir), progress=False)
    half = LanguageModel.load(str(tiny_llama_dir), dtype="bfloat16", progress=False)
    assert whole.model.dtype == torch.float32 and half.model.dtype == torch.bfloat16
    offloaded = LanguageModel.load(
        str(tiny_llama_dir), progress=False, device_map="auto", max_memory={"cpu": 60_000}, offload_folder=tmp_path
    )
    placed = offloaded.model.hf_device_map
    assert "disk" in placed.values() and offloaded.device == torch.device("cpu")
    prompts = [whole.encode("a photo of a cat."), whole.encode("the quick brown fox")]
    want = [g.ids for g in whole.generate_ids(prompts, max_new_tokens=6)]
    assert [g.ids for g in offloaded.generate_ids(prompts, max_new_tokens=6)] == want
    got = half.generate_ids(prompts, max_new_tokens=6)
    assert len(got) == 2 and all(len(g.ids) == 6 for g in got)
    a, b = (lm.next_token_topk(prompts, 5) for lm in (whole, offloaded))  # the batched top-k path
    assert torch.equal(a[1], b[1]) and torch.allclose(a[0], b[0], atol=1e-5)


def test_clip_in_bfloat16_and_the_paper_presets_by_name(tiny_clip_dir, monkeypatch):
    from v2l.backbones import LanguageModel, load_vl
    from v2l.errors import ModelNotFoundError

    a = load_vl(f"hf-clip:{tiny_clip_dir}")
    b = load_vl(f"clip-vit-l14:{tiny_clip_dir}", dtype="bfloat16")  # the preset's class with other weights
    assert b.model.dtype == torch.bfloat16
    texts = ["a photo of a cat.", "a red car"]
    ea, eb = a.encode_text(texts), b.encode_text(texts)
    assert eb.dtype == torch.float32 and eb.device.type == "cpu"  # outputs: float32 on the CPU, wherever it ran
    assert torch.nn.functional.cosine_similarity(ea, eb).min() > 0.98
    img = Image.new("RGB", (40, 40), "blue")
    assert torch.nn.functional.cosine_similarity(a.encode_image([img]), b.encode_image([img])).item() > 0.98
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download openai/clip-vit-large-patch14"):
        load_vl("clip-vit-l14")
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download meta-llama/Llama-2-7b-hf") as e:
        LanguageModel.load("llama2-7b", progress=False)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run when a GPU is lent)")
def test_cuda_float32_equals_cpu_float32(tiny_llama_dir, tiny_clip_dir, tiny_tokenizer_dir):
    from v2l.backbones import LanguageModel, load_vl
    from v2l.tokenizer import ImageTokenizer

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    imgs = [Image.new("RGB", (24, 24), c) for c in ("red", "navy", "olive")]
    out = {}
    for device in ("cpu", "cuda"):
        lm = LanguageModel.load(str(tiny_llama_dir), device=device, dtype="float32", progress=False)
        vl = load_vl(f"hf-clip:{tiny_clip_dir}", device=device, dtype="float32")
        tok = ImageTokenizer.from_pretrained(tiny_tokenizer_dir, vl=vl, progress=False, device=device)
        prompts = [lm.encode("a photo of a cat."), lm.encode("the sea")]
        prefix = lm.prefix_cache(lm.encode("For each of the following pairs:"))  # the shared-prefix KV path
        shared = lm.next_token_topk(prompts, 5, prefix=prefix)
        out[device] = (
            [g.ids for g in lm.generate_ids(prompts, max_new_tokens=8)]
            + [g.ids for g in lm.generate_ids(prompts, max_new_tokens=8, prefix=prefix)]
            + shared[1].tolist(),
            [t.to_json() for t in tok.tokenize(imgs)],
            vl.encode_image(imgs),
        )
    assert out["cpu"][0] == out["cuda"][0]
    assert out["cpu"][1] == out["cuda"][1]
    assert torch.allclose(out["cpu"][2], out["cuda"][2], atol=1e-5)


@pytest.mark.slow
def test_every_verb_runs_with_a_llama_and_a_clip_in_bfloat16(
    tmp_path, data_root, long_lm, tiny_clip_dir, tiny_codebook_dir, tiny_tokenizer_dir, image_folder, capsys
):
    """The tiny random LlamaForCausalLM and CLIPModel (the paper's classes) through every verb that runs a model, with
    `--device cpu --dtype bfloat16`; the runtime is recorded in the results that are files."""
    img = tmp_path / "a.png"
    Image.new("RGB", (40, 40), "orange").save(img)
    llm, vl, cb, tok = long_lm.source, f"hf-clip:{tiny_clip_dir}", str(tiny_codebook_dir), str(tiny_tokenizer_dir)
    rt = ["--device", "cpu", "--dtype", "bfloat16"]
    models = ["--llm", llm, "--vl", vl, "--codebook", cb]
    pool = ["--data-root", str(data_root)]
    runs = {
        "info": ["info", "--load", "--llm", llm, "--vl", vl, "--json"],
        "words": ["words", str(img), *models, "--top", "3", "--json"],
        "tokenize": ["tokenize", str(img), "-t", tok, "-o", str(tmp_path / "t.json")],
        "reconstruct": ["reconstruct", str(img), "-t", tok, "-o", str(tmp_path / "r.png")],
        "decode": ["decode", str(tmp_path / "t.json"), "-t", tok, "-o", str(tmp_path / "d.png")],
        "classify": ["classify", str(img), "--support", str(image_folder), *models, "--kg", "2", "--json"],
        "fewshot": ["fewshot", "--ways", "2", "--kg", "2", "--episodes", "1", *models, *pool],
        "caption": ["caption", str(img), *models, "--kg", "3", "--shots", "2", *pool, "--json"],
        "vqa": ["vqa", str(img), "What is it?", *models, "--kg", "3", "--shots", "2", *pool, "--json"],
        "denoise": ["denoise", str(img), "--task", "inpaint", "--tokenizer", tok, "--llm", llm, "--n", "4"],
        "restore": ["restore", str(img), "--frozen", "-t", tok, "--llm", llm, "-o", str(tmp_path / "x.png")],
    }
    for verb, argv in runs.items():
        if verb == "fewshot":
            argv = [*argv, "-o", str(tmp_path / "grid.json")]
        if verb == "denoise":
            argv = [*argv, "-o", str(tmp_path / "n.png"), "--tokens", str(tmp_path / "n.json")]
        code = _cli([*argv, *rt])
        captured = capsys.readouterr()
        assert code == 0, f"v2l {verb}: {captured.err[-2000:]}"
    grid = json.loads((tmp_path / "grid.json").read_text())
    assert grid["meta"]["runtime"]["dtype"] == "bfloat16" and grid["meta"]["runtime"]["device"] == "cpu"
    assert json.loads((tmp_path / "n.json").read_text())["runtime"]["dtype"] == "bfloat16"
    assert Image.open(tmp_path / "d.png").size == Image.open(tmp_path / "r.png").size
    train = [
        "train",
        *("--preset", "tiny", "--steps", "2", "--batch-size", "2", "--disc-start", "1000000000"),
        *("--vl", vl, "--codebook", cb, "--data", str(image_folder), "--split", "", "--classes", "all"),
        *("--out", str(tmp_path / "run"), *rt),
    ]
    assert _cli(train) == 0, capsys.readouterr().err[-2000:]
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["machine"]["runtime"]["dtype"] == "bfloat16" and record["machine"]["accelerator"]["device"] == "cpu"
    tune = ["tune", "-o", str(tmp_path / "lora"), "--llm", llm, "--tokenizer", tok, "--data", str(image_folder)]
    tune += ["--classes", "3", "--per-class", "2", "--epochs", "1", "--batch-size", "2", *rt]
    assert _cli(tune) == 0, capsys.readouterr().err[-2000:]
    assert json.loads((tmp_path / "lora" / "config.json").read_text())["machine"]["runtime"]["dtype"] == "bfloat16"
    build = ["codebook", "build", "--llm", llm, "--vl", vl, "--filter-data", str(image_folder), "--filter-split", ""]
    build += ["--filter-per-class", "0", "--templates", "single", "-o", str(tmp_path / "cb"), "--json", *rt]
    capsys.readouterr()
    assert _cli(build) == 0, capsys.readouterr().err[-2000:]
    assert json.loads(capsys.readouterr().out)["runtime"]["dtype"] == "bfloat16"
