"""Fig. 7's layout: every built tokenizer's reconstructions and LLM restorations of the same images side by side."""

from __future__ import annotations

import json
import time

from ....paths import write_json_atomic
from ..context import BenchContext, load_other
from ..suites import suite_key
from .reconstruction import heldout_eval_images
from .tokenizers import row_file

COMPARISON_IMAGES = 4  # reconstructions per method in the side-by-side figure


def stage_comparison(ctx: BenchContext) -> dict:
    """Fig. 7's layout: the same held-out images reconstructed, and the first one restored in each of the
    tokenizers stage's denoising tasks, by the main tokenizer and every other tokenizer that is built, side by side
    (`figures/methods.png`). Each method's images are kept (`stages/rows/<row>-figure/`) once all of them are made, so
    a killed stage redoes only the methods it lacks. Drawn by the main process; nothing without other tokenizers."""
    from PIL import Image

    from ....tasks.denoise import DenoiseConfig, Denoiser
    from ...figures import image_grid, save_png

    path = ctx.figure("methods.png")
    others = {k: str(v) for k, v in ctx.others.items()}
    if path is None or not ctx.others:
        return {"methods": [], "others": others}
    tasks = list(ctx.suite.baseline_denoise_tasks)

    def images_of(label: str, source: str, load) -> dict | None:
        """This method's figure images, from its folder if an earlier run of this suite made them all from the same
        tokenizer (`source`), else made now."""
        folder = ctx.rows_dir / f"{row_file(label)}-figure"
        done = json.loads((folder / "done.json").read_text()) if (folder / "done.json").is_file() else {}
        if done.get("suite") == suite_key(ctx.suite) and done.get("source") == source:
            return {n: Image.open(folder / f"{n}.png").convert("RGB") for n in done["images"]}
        try:
            tok = load()
        except Exception:  # noqa: BLE001 - not built: its row says why
            return None
        clean = heldout_eval_images(COMPARISON_IMAGES, tok.config.resolution, ctx.data_root)
        made = {f"recon-{i}": im for i, im in enumerate(tok.reconstruct(clean))}
        den = Denoiser(tok, ctx.lm(), DenoiseConfig(n=ctx.suite.denoise_n, m=ctx.suite.denoise_m))
        for task in tasks:
            restored = den.restore(clean[:1], task)[0]
            made[task], made[f"corrupted-{task}"] = restored.restored, restored.corrupted
        for n, im in made.items():
            save_png(im.convert("RGB"), folder / f"{n}.png")
        write_json_atomic(
            folder / "done.json", {"suite": suite_key(ctx.suite), "source": source, "images": sorted(made)}
        )
        return made

    t0 = time.perf_counter()
    shown = {}
    main = images_of("main", ctx.tokenizer_name, ctx.tokenizer)
    if main is not None:
        shown[f"{ctx.tokenizer_name} (main)"] = main
    for label, folder in ctx.others.items():
        got = images_of(label, str(folder), lambda f=folder: load_other(ctx, f))
        if got is not None:
            shown[label] = got
    if not shown:
        return {"methods": [], "others": others}
    resolution = next(iter(shown.values()))["recon-0"].size[0]
    clean = heldout_eval_images(COMPARISON_IMAGES, resolution, ctx.data_root)
    first = next(iter(shown.values()))
    rows = [
        (f"reconstruction {i + 1}", [clean[i], None, *(m[f"recon-{i}"] for m in shown.values())])
        for i in range(COMPARISON_IMAGES)
    ]
    rows += [(task, [clean[0], first[f"corrupted-{task}"], *(m[task] for m in shown.values())]) for task in tasks]
    image_grid(rows, ["original", "corrupted", *shown], path)
    return {
        "methods": list(shown),
        "others": others,
        "tasks": tasks,
        "figure": f"figures/{path.name}",
        "seconds_images": time.perf_counter() - t0,
    }
