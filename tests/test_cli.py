import json

from typer.testing import CliRunner

from v2l.cli import app

runner = CliRunner()


def test_info_without_loading(data_root):
    res = runner.invoke(app, ["info", "--no-load", "--json", "--data-root", str(data_root)])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert "tiny-imagenet-200" in rep["data_sets"] and rep["cache_root"]


def test_info_with_tiny_models(tiny_llama_dir, tiny_clip_dir):
    res = runner.invoke(app, ["info", "--json", "--llm", str(tiny_llama_dir), "--vl", f"hf-clip:{tiny_clip_dir}"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["llm"]["class"] == "LlamaForCausalLM" and rep["vl"]["dim"] == 16


def test_bad_llm_path_is_one_clear_error(tmp_path):
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-c", "from v2l.cli import main; main()", "info", "--llm", str(tmp_path / "missing.gguf")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error:") and "missing.gguf" in res.stderr
    assert "Traceback" not in res.stderr


def test_codebook_build_with_variants_and_show(tiny_llama_dir, tiny_clip_dir, image_folder, tmp_path):
    out = tmp_path / "cb"
    args = [
        "codebook",
        "build",
        "--llm",
        str(tiny_llama_dir),
        "--vl",
        f"hf-clip:{tiny_clip_dir}",
        "--filter-data",
        str(image_folder),
        "--filter-split",
        "",
        "--filter-classes",
        "all",
        "--filter-per-class",
        "0",
        "--templates",
        "single",
        "--out",
        str(out),
        "--variants",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    for f in (out, tmp_path / "cb-max-ngram-2", tmp_path / "cb-max-ngram-1"):
        assert f"codebook: {f}" in res.stdout and (f / "manifest.json").is_file()
    assert res.stdout.count("global: ") == 3
    show = runner.invoke(app, ["codebook", "show", str(tmp_path / "cb-max-ngram-1"), "--top", "3", "--json"])
    assert show.exit_code == 0, show.output
    shown = json.loads(show.stdout)  # only JSON on stdout
    assert shown["counts"]["candidates_by_kind"]["bigram"] == 0 and len(shown["top"]) == 3
    assert {e["kind"] for e in shown["top"]} == {"subword"}
    text = runner.invoke(app, ["codebook", "show", str(tmp_path / "cb-max-ngram-1"), "--top", "3"])
    assert text.exit_code == 0 and "subword" in text.stdout and "bigram  " not in text.stdout
