"""`v2l bench`: a suite runs end to end on tiny models, a finished stage is never rerun, a failing stage leaves no
partial result, and the report puts the paper's numbers beside ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from v2l.eval import bench as B
from v2l.tokenizer import ImageTokenizer

TINY = B.Suite(
    images=4,
    episodes=2,
    kg=(3,),
    ways=(2,),
    cells=("ind-1shot-r0",),
    denoise_images=2,
    denoise_tasks=("inpaint", "deblur"),
    captions=2,
    questions=3,
    table5_episodes=2,
    baseline_episodes=2,
    restore_adapter="",  # the shipped adapter is for SmolLM2; tests/test_tuning.py runs the stage with a tiny one
)


@pytest.fixture
def ctx(tiny_tokenizer_dir, tiny_vl, long_lm, data_root, tmp_path):
    tok = ImageTokenizer.from_pretrained(tiny_tokenizer_dir, vl=tiny_vl, progress=False)
    return B.BenchContext(
        TINY,
        data_root=str(data_root),
        tokenizer_name="tiny",
        llm_name="tiny",
        progress=False,
        models={"tokenizer": tok, "lm": long_lm},
        others={"again": str(tiny_tokenizer_dir), "spae": str(tmp_path / "not-trained")},
    )


def test_a_suite_runs_end_to_end_and_resumes_without_rerunning(ctx, tmp_path, monkeypatch):
    out = tmp_path / "bench"
    said = []
    res = B.run_bench(TINY, out, ctx, say=said.append)
    st = res["stages"]
    assert set(st) == set(B.DEFAULT_STAGES) and not res["not_run"]
    rec = st["reconstruction"]
    assert rec["images"] == 4 and 0 < rec["ssim"] <= 1 and rec["fid"] >= 0
    # the stage's PSNR is the PSNR of these very reconstructions (computed here independently with torchmetrics)
    from v2l.eval import psnr
    from v2l.tokenizer.image_tokenizer import to_tensor

    tok = ctx.tokenizer()
    images = B.heldout_eval_images(4, tok.config.resolution, ctx.data_root)
    want = float(psnr(to_tensor(tok.reconstruct(images), 16), to_tensor(images, 16)).mean())
    assert rec["psnr"] == pytest.approx(want, rel=1e-5)
    assert set(st["semantic"]) >= {"kg3"} and st["semantic"]["kg3"]["images"] > 0
    cells = st["fewshot"]["kg3-2way"]
    assert [c["cell"] for c in cells] == ["ind-1shot-r0"] and cells[0]["episodes"] == 2
    den = st["denoising"]
    assert set(den["inpaint"]) >= {"llm", "corrupted", "nearest"} and "nearest" not in den["deblur"]
    assert den["inpaint"]["llm"]["images"] == 2 and den["deblur"]["llm"]["psnr"] > 0
    assert [st["vocabulary"][k]["cells"][0]["episodes"] for k in ("subword", "bigram", "trigram")] == [2, 2, 2]
    assert st["captioning"]["images"] == 2 and "cider" in st["captioning"]["scores"]
    assert st["vqa"]["questions"] == 3 and st["vqa"]["accuracy"]
    # The same tokenizer as another row measures the same reconstruction; a missing one is "not built".
    again = st["tokenizers"]["rows"]["again"]
    assert again["reconstruction"]["psnr"] == pytest.approx(rec["psnr"], rel=1e-5)
    assert again["tokens_per_image"] == 5 and again["fewshot"][0]["episodes"] == 2
    assert again["denoising"]["inpaint"]["llm"]["psnr"] == pytest.approx(den["inpaint"]["llm"]["psnr"], rel=1e-5)
    assert st["tokenizers"]["rows"]["spae"]["status"].startswith("not built")
    # The main tokenizer on the same episodes: the same tokenizer as a row gives the same understanding numbers.
    main = st["tokenizers"]["main"]
    assert main["fewshot"][0]["episodes"] == 2 and main["tokens_per_image"] == again["tokens_per_image"]

    def untimed(row):
        return [{k: v for k, v in c.items() if k != "seconds_per_episode"} for c in row["fewshot"]]

    assert main["semantic"] == again["semantic"] and untimed(main) == untimed(again)
    report = (out / "report.md").read_text()
    assert "Table 3" in report and "*paper: V2L (256 local tokens)* | *3.41*" in report
    assert "| 3, 2 | ind-1shot-r0 | 2 |" in report  # the few-shot cell, beside the paper (none at K_g = 3)
    main_line = next(line for line in report.splitlines() if line.startswith("| main: `tiny` | v2l |"))
    assert "(Tables 1–2)" not in main_line and f"{den['inpaint']['llm']['psnr']:.2f}" in main_line
    for title in ("Table 4", "Table 5", "Captioning in context", "VQA in context", "| spae | not built"):
        assert title in report, title
    for fig in ("reconstruction", "words", "fewshot", "denoising", "captions", "vqa"):  # drawn, and linked
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000 and f"(figures/{fig}.png)" in report
    assert json.loads((out / "results.json").read_text())["stages"]
    # Fig. 7's layout: every built method side by side (4 reconstructions, then the first image per denoising task)
    from PIL import Image

    from v2l.eval.figures import CELL, LABEL

    assert st["comparison"]["methods"] == ["tiny (main)", "again"] and "(figures/methods.png)" in report
    fig = Image.open(out / "figures" / "methods.png")
    assert fig.size == (CELL * 4, LABEL + (CELL + LABEL) * (B.COMPARISON_IMAGES + 2))
    kept = {d.name: d for d in (out / "stages" / "rows").glob("*-figure")}
    assert len(kept) == 2 and all((d / "done.json").is_file() for d in kept.values())
    main_dir, again_dir = (next(d for n, d in kept.items() if n.startswith(k)) for k in ("main", "again"))
    assert Image.open(main_dir / "recon-0.png").tobytes() == Image.open(again_dir / "recon-0.png").tobytes()
    # Another --tokenizers set reruns the tokenizers stage only, and in it only the new row; its time counts both.
    first = json.loads(json.dumps(st["tokenizers"]))
    ctx.others = {**ctx.others, "third": ctx.others["again"]}
    said.clear()
    res = B.run_bench(TINY, out, ctx, say=said.append)
    rows = res["stages"]["tokenizers"]["rows"]
    assert {k: v for k, v in rows["again"].items() if k != "reused"} == first["rows"]["again"]
    assert rows["again"]["reused"] and "reused" not in rows["third"] and rows["third"]["status"] == "ok"
    assert "| again † |" in (out / "report.md").read_text()  # the report says which rows an earlier run measured
    assert rows["third"]["reconstruction"]["psnr"] == pytest.approx(rec["psnr"], rel=1e-5)
    assert res["stages"]["tokenizers"]["seconds"] > first["seconds"] > 0
    assert res["stages"]["comparison"]["methods"] == ["tiny (main)", "again", "third"]  # the figure is redrawn too
    assert sum("skipped" in m for m in said) == len(B.DEFAULT_STAGES) - 2
    assert any("again: other --tokenizers" in m for m in said)
    # Resuming: every stage is read back, none is run again.
    said.clear()
    from v2l.eval.bench import runner

    monkeypatch.setattr(runner, "STAGES", {k: (lambda c: pytest.fail("a finished stage ran again")) for k in B.STAGES})
    again = B.run_bench(TINY, out, ctx, say=said.append)
    assert again["stages"] == json.loads(json.dumps(res["stages"]))  # as written (tuples become lists)
    assert sum("skipped" in m for m in said) == len(B.DEFAULT_STAGES)


def _patch_reconstruction(monkeypatch, fn):
    """Replace the reconstruction scorer where the stages that call it look it up."""
    from v2l.eval.bench.stages import reconstruction, tokenizers

    monkeypatch.setattr(reconstruction, "reconstruction", fn)
    monkeypatch.setattr(tokenizers, "reconstruction", fn)


def test_a_killed_tokenizers_stage_keeps_its_finished_rows_and_other_settings_rerun(ctx, tmp_path, monkeypatch):
    import dataclasses

    suite = dataclasses.replace(TINY, stages=("reconstruction", "tokenizers"))
    ctx.suite = suite
    ctx.others = {"first": ctx.others["again"], "second": ctx.others["again"]}
    real, calls = B.reconstruction, []

    def dies_on_the_second_row(tok, images):
        calls.append(1)
        if len(calls) == 3:  # the main tokenizer, the first row, then the kill
            raise RuntimeError("killed")
        return real(tok, images)

    _patch_reconstruction(monkeypatch, dies_on_the_second_row)
    with pytest.raises(RuntimeError, match="killed"):
        B.run_bench(suite, tmp_path / "b", ctx, say=lambda m: None)
    assert not (tmp_path / "b" / "stages" / "tokenizers.json").exists()  # the stage is not finished
    assert len(list((tmp_path / "b" / "stages" / "rows").glob("*.json"))) == 1  # its first row is
    calls.clear()
    res = B.run_bench(suite, tmp_path / "b", ctx, say=lambda m: None)
    assert len(calls) == 1  # only the second row was measured again
    rows = res["stages"]["tokenizers"]["rows"]
    assert rows["first"]["reconstruction"] == rows["second"]["reconstruction"]
    # A stage measured with other settings (e.g. the smoke suite into the same folder) is run again, not reused.
    calls.clear()
    _patch_reconstruction(monkeypatch, lambda tok, images: calls.append(1) or real(tok, images))
    other = dataclasses.replace(suite, images=3)
    ctx.suite = other
    res = B.run_bench(other, tmp_path / "b", ctx, say=lambda m: None)
    assert res["stages"]["reconstruction"]["images"] == 3 and len(calls) == 3  # the main one and both rows


def test_a_failing_stage_leaves_nothing_partial(ctx, tmp_path, monkeypatch):
    def boom(c):
        raise RuntimeError("killed")

    monkeypatch.setitem(B.STAGES, "semantic", boom)
    with pytest.raises(RuntimeError, match="killed"):
        B.run_bench(TINY, tmp_path / "b", ctx, say=lambda m: None)
    assert (tmp_path / "b" / "stages" / "reconstruction.json").is_file()  # finished before the failure
    assert not list((tmp_path / "b" / "stages").glob("semantic*"))
    assert not (tmp_path / "b" / "results.json").exists()


def test_an_unknown_suite_is_one_sentence(tmp_path):
    from v2l.config import ConfigError

    with pytest.raises(ConfigError, match="--suite 'fast'"):
        B.run_bench("fast", tmp_path / "x")


@pytest.mark.slow
def test_sharded_over_two_processes_equals_one(tiny_tokenizer_dir, tiny_clip_dir, tiny_llama_dir, data_root, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` (gloo on CPU, as the README's training command): the
    few-shot grid is identical to one process, the image metrics equal to float rounding, and only one process
    writes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    worker = str(Path(__file__).with_name("bench_worker.py"))
    args = [str(tiny_tokenizer_dir), str(tiny_clip_dir), str(tiny_llama_dir), str(data_root)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "V2L_THREADS": "1", "HOME": str(tmp_path)}  # no accelerate config
    one = subprocess.run(
        [sys.executable, worker, *args, str(tmp_path / "one")], env=env, capture_output=True, text=True, timeout=900
    )
    assert one.returncode == 0, one.stderr[-3000:]
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    two = subprocess.run(
        [accelerate, "launch", "--multi_gpu", "--num_processes", "2", worker, *args, str(tmp_path / "two")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "one" / "results.json").read_text())["stages"]
    b = json.loads((tmp_path / "two" / "results.json").read_text())["stages"]
    assert a["fewshot"]["processes"] == 1 and b["fewshot"]["processes"] == 2  # two really ran
    keep = (
        "cell",
        "episodes",
        "paper",
        "constrained",
        "rank",
        "nn_vl",
        "nn_words",
        "rank_is_last_support",
        "rank_is_first_class",
        "paper_not_a_class",
    )
    for x, y in zip(a["fewshot"]["kg3-2way"], b["fewshot"]["kg3-2way"], strict=True):
        assert {k: x[k] for k in keep} == {k: y[k] for k in keep}
    assert a["fewshot"]["kg3-2way"][0]["episodes"] == 5
    ra, rb = a["reconstruction"], b["reconstruction"]
    assert ra["images"] == rb["images"] == 6
    for k in ("psnr", "ssim", "st_lpips", "fid"):
        assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-5), k


@pytest.mark.slow
def test_the_smoke_suite_with_the_default_models(data_root, tmp_path):
    """`v2l bench --suite smoke` as a user runs it (the shipped tokenizer, conse, SmolLM2): every stage, every table
    and figure of the report; a second run resumes without redoing anything."""
    import subprocess
    import sys
    import time

    cmd = [
        sys.executable,
        "-m",
        "v2l",
        "bench",
        "--suite",
        "smoke",
        "-o",
        str(tmp_path / "smoke"),
        "--data-root",
        str(data_root),
    ]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    first = time.perf_counter() - t0
    res = json.loads((tmp_path / "smoke" / "results.json").read_text())
    assert set(res["stages"]) == set(B.DEFAULT_STAGES) and res["suite"] == "smoke"
    st = res["stages"]
    assert 15 < st["reconstruction"]["psnr"] < 40 and st["semantic"]["kg5"]["images"] == 400  # 10 per class
    assert st["captioning"]["images"] == 4 and st["vqa"]["questions"] == 4
    report = (tmp_path / "smoke" / "report.md").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "Captioning", "VQA"):
        assert title in report, title
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stderr.count("skipped") == len(B.DEFAULT_STAGES)
    print(f"smoke suite: {first:.0f} s")


def test_missing_inputs_fail_before_any_model_loads(tmp_path, monkeypatch, data_root):
    """`v2l bench` without a data root (or without a data set a stage reads) fails in one sentence before the first
    stage starts: no model is loaded and nothing is written."""
    from v2l.errors import DataNotFoundError

    monkeypatch.delenv("V2L_DATA", raising=False)
    ctx = B.BenchContext(TINY, data_root=None, progress=False)
    with pytest.raises(DataNotFoundError, match="No data root given"):
        B.run_bench(TINY, tmp_path / "out", ctx)
    assert not (tmp_path / "out").exists() and not ctx.models
    partial = tmp_path / "partial"  # only Tiny-ImageNet: the captioning stage's coco-captions is missing
    partial.mkdir()
    (partial / "tiny-imagenet-200").symlink_to(data_root / "tiny-imagenet-200")
    ctx = B.BenchContext(TINY, data_root=str(partial), progress=False)
    with pytest.raises(DataNotFoundError, match="shards of coco-captions"):
        B.run_bench(TINY, tmp_path / "out", ctx)
    assert not (tmp_path / "out").exists() and not ctx.models


def test_a_stage_measured_with_another_checkpoint_is_measured_again(ctx, tmp_path):
    """A finished stage records the tokenizer's weights and the LLM it measured; another checkpoint reruns it (the
    committed report once showed an older checkpoint than the README because this was not checked)."""
    result = {"suite": B.suite_key(TINY), "inputs": ctx.inputs()}
    assert B.stage_is_current("reconstruction", result, ctx)
    assert not B.stage_is_current("reconstruction", {**result, "inputs": {**ctx.inputs(), "llm": "other"}}, ctx)
    assert not B.stage_is_current("reconstruction", {"suite": B.suite_key(TINY)}, ctx)  # recorded before inputs
    shipped = B.BenchContext(TINY, tokenizer_name="cpu")
    assert len(shipped.inputs()["tokenizer_sha256"]) == 64


def test_the_tables_options_add_their_rows_and_only_runs_the_named_stages(ctx, tmp_path):
    """The `tables` suite's settings (docs/results.md's larger tables): the calibrated rule, both ways of choosing
    in-context pairs, the question-only VQA prompt, imagenet-1k-sample in Table 2 and a seeded denoising sample; and
    `only` (`v2l bench --stage`) runs just those stages, keeping others already done in the report."""
    import dataclasses

    wide = dataclasses.replace(
        TINY,
        calibrate=True,
        caption_pairs=("random", "nearest"),
        question_only=True,
        semantic_episodes=3,
        semantic_imagenet=True,
        denoise_seed=0,
        denoise_tasks=("inpaint",),
    )
    assert B.suite_key(wide) != B.suite_key(TINY)
    out = tmp_path / "tables"
    res = B.run_bench(wide, out, ctx, say=lambda m: None, only=["semantic", "fewshot"])
    assert set(res["stages"]) == {"semantic", "fewshot"} and "captioning" in res["not_run"]
    assert "calibrated" in res["stages"]["fewshot"]["kg3-2way"][0]
    sem = res["stages"]["semantic"]
    assert sem["imagenet-kg3"]["images"] == 1000 and "nearest_support" not in sem["imagenet-kg3"]
    assert sem["kg3"]["nearest_support"]["episodes"] == 3
    res = B.run_bench(wide, out, ctx, say=lambda m: None, only=["captioning", "vqa", "denoising"])
    st = res["stages"]
    assert set(st) == {"semantic", "fewshot", "captioning", "vqa", "denoising"}  # the earlier two kept
    assert set(st["captioning"]["by_pairs"]) == {"random", "nearest"}
    assert st["captioning"]["scores"] == st["captioning"]["by_pairs"]["random"]
    assert set(st["vqa"]["by_prompt"]) == {"random", "question-only", "nearest"}
    assert st["vqa"]["accuracy"] == st["vqa"]["by_prompt"]["random"]
    report = (out / "report.md").read_text()
    assert "| nearest |" in report and "ours: question-only" in report and "| imagenet-1k-sample | 3 | 1000 |" in report
    # a seeded sample of the held-out images, in data order, not the first ones
    first = B.heldout_eval_images(2, 16, ctx.data_root)
    sample = B.heldout_eval_images(2, 16, ctx.data_root, seed=0)
    assert sample == B.heldout_eval_images(2, 16, ctx.data_root, seed=0)
    assert [im.tobytes() for im in sample] != [im.tobytes() for im in first]
    assert st["denoising"]["inpaint"]["llm"]["images"] == 2


def test_settings_added_later_leave_committed_results_current():
    """A setting added to `Suite` counts in the key only when set: the committed paper-mini report's stages (measured
    before it existed) stay current."""
    committed = json.loads(
        (__import__("pathlib").Path(__file__).parents[1] / "docs/bench/paper-mini/results.json").read_text()
    )
    assert {s["suite"] for s in committed["stages"].values()} == {B.suite_key(B.SUITES["paper-mini"])}


def test_bench_stage_names_a_stage_of_the_suite(tmp_path, capfd):
    from v2l.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "-o", str(tmp_path / "b"), "--suite", "smoke", "--stage", "tables"])
    err = capfd.readouterr().err
    assert e.value.code == 2 and "the smoke suite's stages are reconstruction" in err, err
    assert not (tmp_path / "b").exists()


def test_bench_codebook_reads_words_from_that_codebook_and_counts_in_the_inputs(
    ctx, tiny_codebook_dir, tmp_path, capfd
):
    """`v2l bench --codebook`: the word-reading stages use that codebook (e.g. the SmolLM2 one with Gemma 3); it is
    recorded in the inputs, so a stage measured with the tokenizer's own codebook is measured again, while a
    context without it records nothing new (committed reports stay current)."""
    import dataclasses

    from v2l.cli import main
    from v2l.codebooks import Codebook

    other = dataclasses.replace(ctx, codebook_folder=str(tiny_codebook_dir), models=dict(ctx.models))
    assert "codebook" not in ctx.inputs()
    assert other.inputs()["codebook"] == Codebook.load(tiny_codebook_dir).global_sha256
    assert other.codebook() is not ctx.codebook() and other.codebook().folder == Path(tiny_codebook_dir)
    done = {"suite": B.suite_key(TINY), "inputs": ctx.inputs()}
    assert B.stage_is_current("semantic", done, ctx) and not B.stage_is_current("semantic", done, other)
    with pytest.raises(SystemExit) as e:
        main(["bench", "-o", str(tmp_path / "b"), "--codebook", str(tmp_path / "nope")])
    err = capfd.readouterr().err
    assert e.value.code == 2 and "no such codebook folder" in err and not (tmp_path / "b").exists(), err
