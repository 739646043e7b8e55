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
