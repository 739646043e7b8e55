"""First use: the README's `v2l tokenize` right after set-up, on an empty cache, for this tree and (optionally) an
older v2l, in the same run on the same machine.

    python benchmarks/bench_first_use.py --data-root ../shared/data [--before REV]

`--before REV` checks REV out into a temporary git worktree and times it first (its first `tokenize` embedded the
whole 49,152-token local codebook: minutes); then this tree. Each run gets a fresh `V2L_CACHE`. Writes
benchmarks/results/first_use.json (key "first_tokenize").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, update_results

IMAGE = "samples/n01440764_tench.jpg"


def timed_tokenize(src: Path, work: Path, data_root: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "V2L_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-c", "from v2l.cli import main; main()"]
    subprocess.run(
        [
            *cli,
            "data",
            "export",
            "imagenet-1k-sample",
            "--every",
            "125",
            "--limit",
            "8",
            "-o",
            "samples",
            "--data-root",
            data_root,
        ],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
    )
    code, seconds, rss_mb, stdout, stderr = run_measured([*cli, "tokenize", IMAGE], cwd=work, env=env)
    if code != 0:
        raise SystemExit(f"tokenize failed under {src}: {stderr[-2000:]}")
    return {"seconds": round(seconds, 1), "peak_rss_mb": rss_mb, "global": stdout.splitlines()[1].strip()}


def run_measured(cmd: list[str], **kw) -> tuple[int, float, int, str, str]:
    """(exit code, wall seconds, peak RSS in MB of that process, stdout, stderr)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, **kw)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return proc.returncode, seconds, round(usage.ru_maxrss / 1024), out.read(), err.read()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--before", help="a git revision to time first (e.g. the commit before the shipped local codebook)")
    args = ap.parse_args()
    out: dict = {"command": f"v2l tokenize {IMAGE} (empty V2L_CACHE, right after set-up)"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.before:
            tree = tmp / "before-src"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(tree), args.before],
                cwd=REPO,
                check=True,
                capture_output=True,
            )
            try:
                (tmp / "before").mkdir()
                out["before"] = {
                    "revision": args.before,
                    **timed_tokenize(tree / "src", tmp / "before", args.data_root),
                }
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
        (tmp / "after").mkdir()
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        out["after"] = {"revision": head.stdout.strip(), **timed_tokenize(REPO / "src", tmp / "after", args.data_root)}
    if "before" in out:
        out["speed-up"] = round(out["before"]["seconds"] / out["after"]["seconds"], 1)
        out["same_global_words"] = out["before"]["global"] == out["after"]["global"]
    update_results("first_use", {"first_tokenize": out})
    print(out)


if __name__ == "__main__":
    main()
