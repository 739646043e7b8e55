"""The bad-input corpus (tests/corpus.py) before/after, and the peak memory of `v2l words` on extreme strips.

    python benchmarks/bench_bad_input.py --before 6842ad9 --data-root ../shared/data

Runs tests/test_bad_input.py in report mode twice — every case as a real `v2l` process, first under REV's source
(checked out into a temporary git worktree), then under this tree — and counts the verdicts (`clear`: one sentence,
exit 2, nothing written or removed; `correct`: handled as documented; `bad`: anything else). Then times `v2l words`
on a 1×10,000 and a 1×30,000 image under both, with the process's peak RSS. Writes benchmarks/results/bad_input.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_first_use import run_measured
from common import REPO, update_results

# the corpus's case names start with what they test: these prefixes name a kind, every other (a verb's name) is an
# argument of that verb
_KINDS = {
    "image": "image",
    "hostile": "hostile data",
    "artefact": "artefact",
    "tokens": "artefact",
    "template": "artefact",
    "recipe": "artefact",
    "text": "text",
    "numbers": "argument",
    "options": "argument",
    "out": "argument",
}


def case_kind(name: str) -> str:
    return _KINDS.get(name.split("/")[0], "argument")


def corpus_verdicts(src: Path, report: Path) -> dict:
    env = {
        **os.environ,
        "V2L_CORPUS_REPORT": str(report),
        "V2L_CORPUS_PYTHONPATH": str(src),
        "V2L_CORPUS_TIMEOUT": "90",
    }  # an input refused only after minutes of work counts as bad
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_bad_input.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    counts = collections.Counter(r["verdict"] for r in rows)
    by_kind: dict = {}
    for r in rows:
        k = by_kind.setdefault(case_kind(r["case"]), {"cases": 0, "clear": 0, "correct": 0, "bad": 0})
        k["cases"] += 1
        k[r["verdict"]] += 1
    return {
        "cases": len(rows),
        "clear": counts["clear"],
        "correct": counts["correct"],
        "bad": counts["bad"],
        "by_kind": dict(sorted(by_kind.items())),
        "bad_cases": {r["case"]: r["why"][:160] for r in rows if r["verdict"] == "bad"},
    }


def words_memory(src: Path, work: Path, data_root: str) -> dict:
    from PIL import Image

    env = {**os.environ, "PYTHONPATH": str(src), "V2L_CACHE": str(work / "cache"), "V2L_DATA": data_root}
    cli = [sys.executable, "-c", "from v2l.cli import main; main()"]
    good = work / "photo.png"
    Image.new("RGB", (64, 64), (100, 150, 200)).save(good)
    run_measured([*cli, "words", str(good)], env=env)  # materialise the shipped vocabulary first (not measured)
    out = {}
    for w, h in ((1, 10000), (1, 30000), (204, 9996)):
        path = work / f"strip-{w}x{h}.png"
        Image.new("RGB", (w, h), (200, 50, 50)).save(path)
        code, seconds, rss, _, err = run_measured([*cli, "words", str(path)], env=env)
        out[f"{w}x{h}"] = {
            "exit": code,
            "seconds": round(seconds, 1),
            "peak_rss_mb": rss,
            "stderr": err.strip().splitlines()[-1][:160] if err.strip() else "",
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="git revision of the older v2l")
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    args = ap.parse_args()
    res: dict = {"corpus": "tests/corpus.py (every case as a `v2l` process)"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tree = tmp / "before-src"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), args.before], cwd=REPO, check=True, capture_output=True
        )
        try:
            for side, src in (("before", tree / "src"), ("after", REPO / "src")):
                (tmp / side).mkdir()
                res[side] = {
                    "revision": args.before if side == "before" else "HEAD",
                    **corpus_verdicts(src, tmp / side / "report.jsonl"),
                    "words_memory": words_memory(src, tmp / side, args.data_root),
                }
                print(side, json.dumps(res[side], indent=1), flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
    update_results("bad_input", res)


if __name__ == "__main__":
    main()
