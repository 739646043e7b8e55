"""Helpers shared by the benchmark scripts: timing, machine description, atomic result files."""

from __future__ import annotations

import json
import time
from pathlib import Path

from v2l.machine import cpu_model, machine  # noqa: F401 - the one machine(), re-exported for the scripts

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parent.parent


def timed(fn, *args, repeat: int = 1, **kwargs):
    """(best seconds over `repeat` runs, last result)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best, out


def write_result(name: str, result: dict) -> Path:
    from v2l.paths import write_json_atomic

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    write_json_atomic(path, {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), **result})
    print(json.dumps(result, indent=2))
    return path


def update_results(name: str, result: dict) -> Path:
    """Merge `result` into RESULTS/name.json (other keys kept), atomically."""
    from v2l.paths import write_json_atomic

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    write_json_atomic(path, {**old, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), **result})
    return path
