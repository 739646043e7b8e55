"""`v2l bench`: the paper's tables in miniature from one command, resumable stage by stage, with a Markdown report
that puts the paper's numbers beside ours and says how the settings differ.

    v2l bench --suite smoke -o bench-smoke          # minutes: a handful of images and episodes
    v2l bench --suite paper-mini -o bench           # the committed report (see docs/results.md)

Each stage writes `stages/<name>.json` atomically when it finishes; a finished stage is never rerun (delete its file
to rerun it), and a stage killed midway leaves nothing. `results.json` gathers the stages with the versions, the
machine and the wall time of each; `report.md` renders them.

Under `accelerate launch --num_processes P -m v2l bench ...` the work is sharded (Accelerate's `PartialState`): each
process reconstructs its share of the images and runs its share of the few-shot episodes, the per-image and
per-episode results are gathered (`gather_object`) in the one-process order, and the main process writes. Few-shot
decisions are per episode, so the sharded grid equals the one-process grid exactly; image metrics agree to float
rounding.

Stages landed so far: `reconstruction` (Table 3: PSNR, SSIM, ST-LPIPS and FID of the tokenizer's reconstructions of
held-out images), `semantic` (Table 2: the global words' class-word hit, VL score and CLIP-R, and the nearest-support
accuracies), `fewshot` (Table 1: the N-way K-shot grid under the three decision rules). The others (Tables 4–6,
captioning and VQA, the baselines' rows) are listed in the report as not run.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, V2LError
from ..paths import write_json_atomic

PAPER_NOTE = ("The paper's numbers use LLaMA-2 (7B–70B), CLIP ViT-L/14, ImageNet-1K training at 128×128 and "
              "Mini-ImageNet / ImageNet val; ours use the LLM named below, the `conse` VL stand-in (EfficientNet-Lite0 "
              "+ MiniLM), Tiny-ImageNet at 64×64 and the image counts given per table. Compare orders, not digits.")


@dataclass(frozen=True)
class Suite:
    """How much of each stage to run."""

    images: int  # reconstruction: held-out images
    episodes: int  # few-shot episodes per N (and the semantic stage's nearest-support episodes)
    kg: tuple[int, ...] = (5,)
    ways: tuple[int, ...] = (2,)
    cells: tuple[str, ...] = ("ind-1shot-r0",)
    stages: tuple[str, ...] = ("reconstruction", "semantic", "fewshot")


SUITES = {
    "smoke": Suite(images=8, episodes=4),
    "paper-mini": Suite(images=200, episodes=200, kg=(5, 21), ways=(2, 5),
                        cells=("no-ind-1shot-r0", "ind-1shot-r0", "ind-3shot-r0", "ind-5shot-r0", "ind-1shot-r1",
                               "ind-1shot-r3", "ind-1shot-r5")),
}
PLANNED = ("denoising (Table 4)", "vocabulary expansion (Table 5)", "local-codebook embedding (Table 6)",
           "captioning and VQA", "baselines (VQ-GAN+LLM, LQAE, SPAE)")


@dataclass
class BenchContext:
    """What the stages share: the suite, the data root and the models (loaded on first use; tests pass tiny ones)."""

    suite: Suite
    data_root: str | None = None
    tokenizer_name: str = "cpu"
    llm_name: str = "smollm2-135m"
    progress: bool = True
    models: dict = field(default_factory=dict)

    def tokenizer(self):
        if "tokenizer" not in self.models:
            from ..tokenizer import ImageTokenizer

            self.models["tokenizer"] = ImageTokenizer.from_pretrained(self.tokenizer_name, progress=self.progress)
        return self.models["tokenizer"]

    def vl(self):
        return self.models.get("vl") or self.tokenizer().vl

    def codebook(self):
        return self.models.get("codebook") or self.tokenizer().codebook

    def lm(self):
        if "lm" not in self.models:
            from ..backbones import LanguageModel

            self.models["lm"] = LanguageModel.load(self.llm_name, progress=self.progress)
        return self.models["lm"]


# ---- sharding across processes ----------------------------------------------------------------------------------

def _state():
    """Accelerate's process state. Under a launcher (WORLD_SIZE > 1) without CUDA, Accelerate joins a gloo group only
    when told to use the CPU (as the trainer does); a launch that joined fewer processes than it started is an error."""
    import os

    from accelerate import PartialState

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    state = PartialState(cpu=world > 1 and not torch.cuda.is_available())
    if state.num_processes != world:
        raise V2LError(f"The launcher started {world} processes but Accelerate joined {state.num_processes}: launch "
                       "with `accelerate launch --multi_gpu --num_processes N -m v2l bench ...`.")
    return state


def shard(items: list) -> list:
    """This process's contiguous share of `items` (all of them in one process)."""
    st = _state()
    if st.num_processes == 1:
        return list(items)
    per = -(-len(items) // st.num_processes)
    return list(items[st.process_index * per: (st.process_index + 1) * per])


def gather(local: list) -> list:
    """Every process's `shard` results, concatenated in process order (= the one-process order)."""
    st = _state()
    if st.num_processes == 1:
        return list(local)
    from accelerate.utils import gather_object

    return gather_object(list(local))


# ---- stages ----------------------------------------------------------------------------------------------------

def heldout_eval_images(n: int, resolution: int, data_root=None) -> list:
    """The first `n` held-out-class Tiny-ImageNet val images (never seen in training), at `resolution`."""
    from ..data import WebDatasetShards, center_crop_resize, select_indices

    ds = WebDatasetShards("tiny-imagenet-200", "val", root=data_root)
    idx = select_indices(ds, "heldout", 0, data_name="tiny-imagenet-200")[:n]
    return [center_crop_resize(ds[i].image, resolution) for i in idx]


def stage_reconstruction(ctx: BenchContext) -> dict:
    from ..tokenizer.image_tokenizer import to_tensor
    from . import STLPIPS, psnr, ssim
    from .fid import feature_statistics, frechet_distance, inception_features

    tok = ctx.tokenizer()
    r = tok.config.resolution
    images = shard(heldout_eval_images(ctx.suite.images, r, ctx.data_root))
    recon = tok.reconstruct(images) if images else []
    rows = []
    if images:
        x, y = to_tensor(images, r), to_tensor(recon, r)
        with torch.inference_mode():
            if r < 64:  # ST-LPIPS's AlexNet needs at least ~64 pixels; tiny test models are upsampled for it
                up = [torch.nn.functional.interpolate(t, size=64, mode="bilinear", align_corners=False)
                      for t in (y, x)]
                lp = STLPIPS()(*up)
            else:
                lp = STLPIPS()(y, x)
        feats = zip(inception_features(images), inception_features(recon), strict=True)
        rows = [(float(a), float(b), float(c), fa, fb) for a, b, c, (fa, fb) in
                zip(psnr(y, x), ssim(y, x), lp.flatten(), feats, strict=True)]
    rows = gather(rows)
    n = len(rows)
    real, fake = np.stack([row[3] for row in rows]), np.stack([row[4] for row in rows])
    return {"images": n, "resolution": r, "tokenizer": ctx.tokenizer_name,
            "psnr": sum(row[0] for row in rows) / n, "ssim": sum(row[1] for row in rows) / n,
            "st_lpips": sum(row[2] for row in rows) / n,
            "fid": frechet_distance(*feature_statistics(real), *feature_statistics(fake)) if n >= 2 else None}


def stage_semantic(ctx: BenchContext) -> dict:
    from ..tasks import heldout_features, sample_episodes
    from .semantic import class_name_embeddings, semantic_quality

    vl, cb = ctx.vl(), ctx.codebook()
    store = heldout_features(vl, cb, data_root=ctx.data_root, top=max(ctx.suite.kg), progress=ctx.progress)
    episodes = sample_episodes(store.pool(), 5, ctx.suite.episodes, seed=0, max_shots=1)
    cls = class_name_embeddings(vl, cb, store.labels)
    return {f"kg{kg}": semantic_quality(store.embeddings, store.labels, [w[:kg] for w in store.words], cb, cls,
                                        episodes, store.keys) for kg in ctx.suite.kg}


def stage_fewshot(ctx: BenchContext) -> dict:
    from ..tasks import (
        PROMPT_TEMPLATES,
        TABLE1_CELLS,
        InContextClassifier,
        heldout_features,
        run_grid,
        sample_episodes,
        summarize,
    )

    store = heldout_features(ctx.vl(), ctx.codebook(), data_root=ctx.data_root, top=max(ctx.suite.kg),
                             progress=ctx.progress)
    cells = [c for c in TABLE1_CELLS if c.name in ctx.suite.cells]
    clf = InContextClassifier(ctx.lm(), PROMPT_TEMPLATES["paper"], calibrate=False)
    out = {"llm": ctx.llm_name}
    for ways in ctx.suite.ways:
        episodes = sample_episodes(store.pool(), ways, ctx.suite.episodes, seed=0)
        for kg in ctx.suite.kg:
            recs = run_grid(clf, store, shard(episodes), kg, cells=cells, desc=f"{ways}-way K_g={kg}",
                            progress=ctx.progress)
            out[f"kg{kg}-{ways}way"] = summarize(gather(recs))
    return out


STAGES: dict[str, Callable[[BenchContext], dict]] = {
    "reconstruction": stage_reconstruction, "semantic": stage_semantic, "fewshot": stage_fewshot}


# ---- running -----------------------------------------------------------------------------------------------------

def run_bench(suite: str | Suite, out: str | Path, ctx: BenchContext | None = None,
              say: Callable[[str], None] = print) -> dict:
    """Run (or resume) a suite into `out`; returns the gathered results and writes results.json and report.md."""
    if isinstance(suite, str):
        if suite not in SUITES:
            raise ConfigError(f"--suite {suite!r}: use one of {', '.join(SUITES)}.")
        name, suite = suite, SUITES[suite]
    else:
        name = "custom"
    ctx = ctx or BenchContext(suite)
    out = Path(out)
    state = _state()
    main = state.is_main_process
    if main:
        (out / "stages").mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    t_all = time.perf_counter()
    stages = {}
    for stage in suite.stages:
        path = out / "stages" / f"{stage}.json"
        if path.is_file():
            stages[stage] = json.loads(path.read_text())
            if main:
                say(f"v2l bench: {stage} already done ({path}); skipped")
            continue
        if main:
            say(f"v2l bench: {stage} …")
        t0 = time.perf_counter()
        result = STAGES[stage](ctx)
        result["seconds"] = time.perf_counter() - t0
        result["processes"] = state.num_processes
        if main:
            write_json_atomic(path, result)  # only a finished stage is written
            say(f"v2l bench: {stage} done in {result['seconds']:.0f} s")
        stages[stage] = json.loads(json.dumps(result))
        state.wait_for_everyone()
    results = {"suite": name, "settings": suite.__dict__, "machine": machine(), "stages": stages,
               "not_run": list(PLANNED), "seconds_this_run": time.perf_counter() - t_all}
    if main:
        write_json_atomic(out / "results.json", results)
        (out / "report.md").write_text(render_report(results))
    state.wait_for_everyone()
    return results


def machine() -> dict:
    import importlib.metadata as md

    versions = {p: _version(md, p) for p in ("v2l", "torch", "transformers", "accelerate")}
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "versions": versions}


def _version(md, name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


# ---- the report --------------------------------------------------------------------------------------------------

PAPER_TABLE3 = {"V2L (256 local tokens)": (3.41, 0.08, 23.56), "VQ-GAN + LLaMA-2 codebook": (9.51, 0.17, 21.48),
                "SPAE (597 tokens)": (4.41, 0.12, None)}
PAPER_TABLE1 = {(5, 2): [34.2, 73.1, 89.0, 93.4, 79.6, 80.6, 79.1], (5, 5): [36.2, 54.6, 88.6, 91.1, 70.7, 72.8, 74.4],
                (21, 2): [36.5, 76.3, 91.2, 95.3, 84.0, 84.4, 83.7],
                (21, 5): [37.1, 44.8, 91.8, 94.0, 73.9, 82.2, 85.3]}
CELL_ORDER = ("no-ind-1shot-r0", "ind-1shot-r0", "ind-3shot-r0", "ind-5shot-r0", "ind-1shot-r1", "ind-1shot-r3",
              "ind-1shot-r5")


def _f(v, digits=2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def render_report(results: dict) -> str:
    st, m = results["stages"], results["machine"]
    lines = [f"# v2l bench — suite `{results['suite']}`", "", PAPER_NOTE, "",
             f"Machine: {m['platform']}, Python {m['python']}, {m['cpus']} threads, GPU: {m['cuda'] or 'none'}; "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".", "",
             "| stage | wall time (s) |", "|---|---|"]
    lines += [f"| {k} | {v.get('seconds', 0):.0f} |" for k, v in st.items()]
    if "reconstruction" in st:
        r = st["reconstruction"]
        lines += ["", f"## Table 3: reconstruction ({r['images']} held-out Tiny-ImageNet val images, "
                      f"{r['resolution']}×{r['resolution']}; the paper: ImageNet val, 128×128)", "",
                  "| tokenizer | FID | ST-LPIPS | PSNR (dB) | SSIM |", "|---|---|---|---|---|",
                  f"| ours: `{r['tokenizer']}` | {_f(r['fid'])} | {_f(r['st_lpips'], 3)} | {_f(r['psnr'])} | "
                  f"{_f(r['ssim'], 3)} |"]
        lines += [f"| *paper: {k}* | *{_f(a)}* | *LPIPS {_f(b)}* | *{_f(c)}* | *–* |"
                  for k, (a, b, c) in PAPER_TABLE3.items()]
        lines += ["", "FID from a few hundred images is biased upward (2,048-dimensional covariances): compare it only "
                      "across rows of this table. ST-LPIPS (shift-tolerant LPIPS) is not the paper's LPIPS."]
    if "semantic" in st:
        lines += ["", "## Table 2: semantic quality of the global words (40 held-out Tiny-ImageNet classes)", "",
                  "CLIP-R here: the VL score of an image and its words divided by that of the image and its class "
                  "name (the paper does not define it). VL score: our VL model's cosine, not CLIP's.", "",
                  "| K_g | images | class-word hit | VL score | CLIP-R | 5-way 1-shot nearest support: image / word "
                  "embedding / word overlap |", "|---|---|---|---|---|---|"]
        for key, s in st["semantic"].items():
            if not key.startswith("kg"):
                continue
            ns = s.get("nearest_support", {})
            lines.append(f"| {s['kg']} | {s['images']} | {_f(100 * s['hit'], 1)} % | {_f(s['vl_score'], 4)} | "
                         f"{_f(s['clip_r'], 3)} | {_f(100 * ns.get('vl', {}).get('acc', 0), 1)} / "
                         f"{_f(100 * ns.get('word_embedding', {}).get('acc', 0), 1)} / "
                         f"{_f(100 * ns.get('word_overlap', {}).get('acc', 0), 1)} |")
        lines += ["", "*Paper (CLIP score at K_g = 5): V2L 0.2576, SPAE 0.1868 (CLIP ViT-L/14, not comparable "
                      "with our VL score's scale).*"]
    if "fewshot" in st:
        f = st["fewshot"]
        lines += ["", f"## Table 1: N-way K-shot classification (`{f['llm']}`; 40 held-out Tiny-ImageNet classes; "
                      "the paper: LLaMA-2 7B on Mini-ImageNet)", "",
                  "| K_g, N | cell | episodes | paper rule | constrained | ranking (95 % interval) "
                  "| paper, LLaMA-2 7B |",
                  "|---|---|---|---|---|---|---|"]
        for key, rows in f.items():
            if not key.startswith("kg"):
                continue
            kg, ways = (int(x) for x in key[2:].replace("way", "").split("-"))
            for row in rows:
                paper = PAPER_TABLE1.get((kg, ways))
                ref = paper[CELL_ORDER.index(row["cell"])] if paper and row["cell"] in CELL_ORDER else None
                lo, hi = row["rank"]["ci95"]
                lines.append(f"| {kg}, {ways} | {row['cell']} | {row['episodes']} | {_f(100 * row['paper']['acc'], 1)} "
                             f"| {_f(100 * row['constrained']['acc'], 1)} | {_f(100 * row['rank']['acc'], 1)} "
                             f"({_f(100 * lo, 0)}–{_f(100 * hi, 0)}) | {_f(ref, 1)} |")
    lines += ["", "## Not run by this suite yet", ""] + [f"- {p}: not built into `v2l bench` yet" for p in
                                                       results["not_run"]]
    return "\n".join(lines) + "\n"
