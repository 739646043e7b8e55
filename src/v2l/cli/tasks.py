"""`v2l classify` (images against a folder of labelled examples) and `v2l fewshot` (the Table 1 grid)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .app import DEFAULTS, DataRootOpt, LLMOpt, VLOpt, app, setup_torch

RuleOpt = Annotated[str, typer.Option("--rule", help="paper (greedy, exact tokens), constrained (decoding limited to "
                                      "the class names), rank (likelihood), calibrated (rank with contextual "
                                      "calibration).")]
TemplateOpt = Annotated[str, typer.Option("--template", help="Prompt template: paper, lines, official, or a JSON file "
                                          "of template fields.")]
CodebookOpt = Annotated[Path | None, typer.Option(help="A codebook folder (default: the cached or shipped one).")]


def _models(llm: str, vl: str, codebook: Path | None):
    from ..backbones import LanguageModel, load_vl
    from ..codebooks import Codebook, find_codebook

    vl_model = load_vl(vl)
    lm = LanguageModel.load(llm, progress=False)
    return lm, vl_model, Codebook.load(codebook or find_codebook(llm, vl, vl=vl_model), vl=vl_model)


@app.command()
def classify(images: Annotated[list[Path], typer.Argument(help="Image files to classify.", show_default=False)],
             support: Annotated[Path, typer.Option("--support", help="A folder with one sub-folder of example "
                                                   "images per class; the sub-folder's name is the class name.",
                                                   show_default=False)],
             rule: RuleOpt = "rank",
             kg: Annotated[int, typer.Option("--kg", min=1, help="Words (global tokens) per image.")] = 5,
             template: TemplateOpt = "paper", llm: LLMOpt = DEFAULTS["llm"], vl: VLOpt = DEFAULTS["vl"],
             codebook: CodebookOpt = None, seed: Annotated[int, typer.Option(help="Example order seed.")] = 0,
             as_json: Annotated[bool, typer.Option("--json", help="Print JSON: class, scores and words.")] = False,
             ) -> None:
    """Classify images in context: a frozen LLM reads the examples' words and labels, then each image's words."""
    from ..errors import ConfigError
    from ..tasks.classify import _decode_all, classify_images, load_support
    from ..tasks.fewshot import CORRECTIONS, RULES
    from ..tasks.prompts import load_template

    setup_torch()
    if rule not in (*RULES, *CORRECTIONS):
        raise ConfigError(f"--rule {rule!r} is invalid: use one of {', '.join((*RULES, *CORRECTIONS))}.")
    tmpl = load_template(template)
    sup = load_support(support)  # every input is checked before any model loads
    _decode_all(images, "Image")
    _decode_all([p for paths in sup.values() for p in paths], "Support image")
    lm, vl_model, cb = _models(llm, vl, codebook)
    rows = classify_images(images, sup, lm=lm, vl=vl_model, codebook=cb, kg=kg, rule=rule, template=tmpl, seed=seed)
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in rows], indent=2, ensure_ascii=False))
        return
    for r in rows:
        typer.echo(f"{r.image}\t{r.prediction if r.prediction is not None else '(not a class name)'}")


@app.command()
def fewshot(out: Annotated[Path, typer.Option("--out", "-o", help="Results JSON (summary per cell and every "
                                              "decision).")] = Path("fewshot.json"),
            ways: Annotated[list[int], typer.Option("--ways", help="N of N-way (repeat the option).")] = [2, 5],  # noqa: B006
            kg: Annotated[list[int], typer.Option("--kg", help="Words per image: 5 or 21 in the paper.")] = [5],  # noqa: B006
            episodes: Annotated[int, typer.Option("--episodes", min=1, help="Episodes per N (each runs every "
                                                  "cell).")] = 200,
            episodes_file: Annotated[Path | None, typer.Option("--episodes-file", help="Load episodes saved by "
                                                               "--save-episodes instead of drawing them.")] = None,
            save_episodes_to: Annotated[Path | None, typer.Option("--save-episodes", help="Write the drawn "
                                                                  "episodes here.")] = None,
            seed: Annotated[int, typer.Option(help="Episode seed.")] = 0,
            template: TemplateOpt = "paper", calibrate: Annotated[bool, typer.Option(
                help="Also score the content-free query for the 'calibrated' rule.")] = True,
            llm: LLMOpt = DEFAULTS["llm"], vl: VLOpt = DEFAULTS["vl"], codebook: CodebookOpt = None,
            data_root: DataRootOpt = None) -> None:
    """Run the Table 1 grid (2/5-way; 1/3/5 shots; task induction; repeats 0/1/3/5) on the 40 held-out Tiny-ImageNet
    classes, under the paper's rule, constrained decoding, ranking and calibrated ranking."""
    from ..errors import ConfigError
    from ..paths import check_output_file
    from ..tasks import InContextClassifier, heldout_features, load_episodes, run_grid, sample_episodes
    from ..tasks import save_episodes as save_eps
    from ..tasks.grid import save_records, summarize
    from ..tasks.prompts import load_template

    setup_torch()
    check_output_file(out)
    if save_episodes_to is not None:
        check_output_file(save_episodes_to, "--save-episodes")
    for w in ways:
        if w < 2:
            raise ConfigError(f"--ways {w} is invalid: classification needs at least 2 classes.")
    for k in kg:
        if k < 1:
            raise ConfigError(f"--kg {k} is invalid: use a whole number of words per image, at least 1.")
    tmpl = load_template(template)
    loaded = load_episodes(episodes_file) if episodes_file is not None else None
    lm, vl_model, cb = _models(llm, vl, codebook)
    store = heldout_features(vl_model, cb, data_root=data_root, top=max(kg))
    clf = InContextClassifier(lm, tmpl, calibrate=calibrate)
    records, drawn = [], []
    for w in ways:
        eps = [e for e in loaded if e.ways == w] if loaded is not None else sample_episodes(store.pool(), w, episodes,
                                                                                           seed=seed)
        unknown = {i for e in eps for r in e.rounds for _, i in r} - set(store.keys)
        if unknown:
            raise ConfigError(f"--episodes-file {episodes_file} names {len(unknown)} images not in the held-out pool "
                              f"(e.g. {sorted(unknown)[0]}): it was drawn from other data.")
        drawn += eps
        for k in kg:
            records += run_grid(clf, store, eps, k, desc=f"{w}-way K_g={k}")
    if save_episodes_to is not None:
        save_eps(save_episodes_to, drawn, {"seed": seed})
    save_records(out, records, {"llm": llm, "vl": vl, "template": template, "seed": seed,
                                "episodes": len(drawn)})
    for r in summarize(records):
        accs = "  ".join(f"{k} {r[k]['acc']:.3f}" for k in ("paper", "constrained", "rank", "calibrated", "nn_vl",
                                                                 "nn_words") if k in r)
        typer.echo(f"K_g={r['kg']} {r['ways']}-way {r['cell']:<16} {accs}")
    typer.echo(f"wrote {out}")
