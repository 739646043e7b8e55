"""Running a suite: every input checked first, then each stage in order, resumable stage by stage."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

from ...errors import ConfigError
from ...machine import machine
from ...paths import write_json_atomic
from .context import BenchContext, process_state
from .report import render_report
from .stages import STAGES
from .suites import DEFAULT_STAGES, STAGE_DATA, SUITES, Suite, suite_key


def finished_stage(path: Path, say: Callable[[str], None] | None = None) -> dict:
    """A finished stage's record, or {} when there is none or it is damaged (then it is measured again)."""
    from ...files import ArtefactError, read_json

    if not path.is_file():
        return {}
    try:
        return read_json(path, dict)
    except ArtefactError as e:
        if say is not None:
            say(f"v2l bench: {e} Measuring that stage again.")
        return {}


def stage_is_current(stage: str, result: dict, ctx: BenchContext) -> bool:
    """A finished stage is reused unless it measured other inputs: other suite settings, another tokenizer (by the
    sha256 of its weights) or another LLM. The tokenizers stage is rerun (for the rows that are new, or were "not
    built" and now exist) when `--tokenizers` names other folders than it measured."""
    if result.get("suite") != suite_key(ctx.suite):  # measured with other settings (e.g. the smoke suite)
        return False
    if result.get("inputs") != ctx.inputs():  # another checkpoint or LLM (or a result from before this was recorded)
        return False
    if stage == "comparison":  # redrawn when other folders are named, or a "not built" one now exists
        return result.get("others") == {k: str(v) for k, v in ctx.others.items()} and all(
            k in result.get("methods", []) for k, v in ctx.others.items() if Path(v).exists()
        )
    if stage != "tokenizers":
        return True
    rows = result.get("rows") or {}
    return set(rows) == set(ctx.others) and all(
        rows[k].get("folder") == v and (rows[k].get("status") == "ok" or not Path(v).exists())
        for k, v in ctx.others.items()
    )


def run_bench(
    suite: str | Suite,
    out: str | Path,
    ctx: BenchContext | None = None,
    say: Callable[[str], None] = print,
    only: list[str] | None = None,
) -> dict:
    """Run (or resume) a suite into `out`; returns the gathered results and writes results.json and report.md.
    `only`: run just these of the suite's stages; the report holds them and any other stage already finished."""
    if isinstance(suite, str):
        if suite not in SUITES:
            raise ConfigError(f"--suite {suite!r}: use one of {', '.join(SUITES)}.")
        name, suite = suite, SUITES[suite]
    else:
        name = "custom"
    ctx = ctx or BenchContext(suite)
    ctx.suite = suite  # the stages read their sizes from the context: the suite run is the one they measure
    run = suite if not only else dataclasses.replace(suite, stages=tuple(s for s in suite.stages if s in only))
    check_inputs(run, ctx)  # every data set and model file the suite reads, before any model loads
    out = Path(out)
    ctx.figures = out / "figures"
    ctx.rows_dir = out / "stages" / "rows"
    state = process_state()
    main = state.is_main_process
    if main:
        (out / "stages").mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    t_all = time.perf_counter()
    stages = {}
    for stage in suite.stages:
        path = out / "stages" / f"{stage}.json"
        ctx.previous = finished_stage(path, say if main else None)
        if stage not in run.stages:  # not asked for (--stage): in the report only if already done and current
            if ctx.previous and stage_is_current(stage, ctx.previous, ctx):
                stages[stage] = ctx.previous
            continue
        if ctx.previous and stage_is_current(stage, ctx.previous, ctx):
            stages[stage] = ctx.previous
            if main:
                say(f"v2l bench: {stage} already done ({path}); skipped")
            continue
        if main:
            again = ""
            if ctx.previous:
                again = (
                    " (again: other --tokenizers; finished rows are kept)"
                    if ctx.previous.get("suite") == suite_key(suite)
                    else " (again: measured with other settings)"
                )
            say(f"v2l bench: {stage} …{again}")
        t0 = time.perf_counter()
        result = STAGES[stage](ctx)
        result["seconds"] = time.perf_counter() - t0 + result.pop("seconds_reused", 0.0)  # a reused part's cost too
        result["suite"] = suite_key(suite)
        result["inputs"] = ctx.inputs()
        result["processes"] = state.num_processes
        if main:
            write_json_atomic(path, result)  # only a finished stage is written
            say(f"v2l bench: {stage} done in {result['seconds']:.0f} s")
        stages[stage] = json.loads(json.dumps(result))
        state.wait_for_everyone()
    results = {
        "suite": name,
        "settings": suite.__dict__,
        "machine": machine(),
        "stages": stages,
        "not_run": [k for k in DEFAULT_STAGES if k not in stages],  # `seed` has its own suite
        "seconds_this_run": time.perf_counter() - t_all,
    }
    if main:
        write_json_atomic(out / "results.json", results)
        (out / "report.md").write_text(render_report(results))
    state.wait_for_everyone()
    return results


# The data sets each stage reads (name, split) under the data root.


def check_inputs(suite: Suite, ctx: BenchContext) -> None:
    """Fail in one sentence, before any model loads, when a suite's data root, data set or tokenizer is missing."""
    from ...errors import DataNotFoundError
    from ...paths import data_root
    from ...tokenizer.image_tokenizer import resolve_checkpoint

    needed = {d for stage in suite.stages for d in STAGE_DATA.get(stage, [])}
    if suite.semantic_imagenet and "semantic" in suite.stages:
        needed.add(("imagenet-1k-sample", None))
    if needed:
        root = data_root(ctx.data_root)
        for name, split in sorted(needed, key=str):
            if not any((root / name).glob(f"{name}-{split}-*.tar" if split else f"{name}-*.tar")):
                raise DataNotFoundError(
                    f"The bench needs the {split or 'all'} shards of {name} under {root}: pass --data-root "
                    f"(or set V2L_DATA) to the folder that holds {name}/."
                )
    if not ctx.given_tokenizer:
        resolve_checkpoint(ctx.tokenizer_name)
