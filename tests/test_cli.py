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

    res = subprocess.run([sys.executable, "-c", "from v2l.cli import main; main()", "info", "--llm",
                          str(tmp_path / "missing.gguf")], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error:") and "missing.gguf" in res.stderr
    assert "Traceback" not in res.stderr
