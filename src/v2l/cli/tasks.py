"""`v2l classify` (images against a folder of labelled examples), `v2l fewshot` (the Table 1 grid), `v2l caption` and
`v2l vqa` (in-context captioning and question answering)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..runtime import current
from ..tasks.denoise import DenoiseConfig as D
from .app import DEFAULTS, AdapterOpt, DataRootOpt, DeviceOpt, DtypeOpt, JsonOpt, LLMOpt, VLOpt, app, setup_torch

RuleOpt = Annotated[
    str,
    typer.Option(
        "--rule",
        help="paper (greedy, exact tokens), constrained (decoding limited to "
        "the class names), rank (likelihood), calibrated (rank with contextual "
        "calibration).",
    ),
]
TemplateOpt = Annotated[
    str, typer.Option("--template", help="Prompt template: paper, lines, official, or a JSON file of template fields.")
]
CodebookOpt = Annotated[Path | None, typer.Option(help="A codebook folder (default: the cached or shipped one).")]


def _models(llm: str, vl: str, codebook: Path | None, adapter: str | None = None):
    from ..backbones import LanguageModel, load_vl
    from ..backbones.adapters import check_adapter
    from ..codebooks import Codebook, find_codebook

    if adapter:
        check_adapter(adapter)  # a missing adapter is refused before any model loads
    vl_model = load_vl(vl)
    lm = LanguageModel.load(llm, progress=False, adapter=adapter)
    return lm, vl_model, Codebook.load(codebook or find_codebook(llm, vl, vl=vl_model), vl=vl_model)


@app.command()
def classify(
    images: Annotated[list[Path], typer.Argument(help="Image files to classify.", show_default=False)],
    support: Annotated[
        Path,
        typer.Option(
            "--support",
            help="A folder with one sub-folder of example images per class; the sub-folder's name is the class name.",
            show_default=False,
        ),
    ],
    rule: RuleOpt = "rank",
    kg: Annotated[int, typer.Option("--kg", min=1, help="Words (global tokens) per image.")] = 5,
    template: TemplateOpt = "paper",
    llm: LLMOpt = DEFAULTS["llm"],
    adapter: AdapterOpt = None,
    vl: VLOpt = DEFAULTS["vl"],
    codebook: CodebookOpt = None,
    seed: Annotated[int, typer.Option(help="Example order seed.")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (only JSON on stdout): class, scores, words.")
    ] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Classify images in context: a frozen LLM reads the examples' words and labels, then each image's words."""
    from ..errors import ConfigError
    from ..tasks.classify import classify_images, decode_images, load_support
    from ..tasks.fewshot import CORRECTIONS, RULES
    from ..tasks.prompts import load_template

    setup_torch(device, dtype)
    if rule not in (*RULES, *CORRECTIONS):
        raise ConfigError(f"--rule {rule!r} is invalid: use one of {', '.join((*RULES, *CORRECTIONS))}.")
    tmpl = load_template(template)
    sup = load_support(support)  # every input is checked before any model loads
    decode_images(images, "Image")
    decode_images([p for paths in sup.values() for p in paths], "Support image")
    lm, vl_model, cb = _models(llm, vl, codebook, adapter)
    rows = classify_images(images, sup, lm=lm, vl=vl_model, codebook=cb, kg=kg, rule=rule, template=tmpl, seed=seed)
    _print_rows(rows, as_json, lambda r: r.prediction if r.prediction is not None else "(not a class name)")


def _print_rows(rows, as_json: bool, answer) -> None:
    """Results as JSON, or one `image<TAB>answer` line each (tabs and newlines escaped: `paths.line_safe`)."""
    from ..paths import line_safe

    if as_json:
        typer.echo(json.dumps([r.to_json() for r in rows], indent=2, ensure_ascii=False))
        return
    for r in rows:
        typer.echo(f"{line_safe(r.image)}\t{line_safe(answer(r))}")


@app.command()
def fewshot(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Results JSON (summary per cell and every decision).")
    ] = Path("fewshot.json"),
    ways: Annotated[list[int], typer.Option("--ways", help="N of N-way (repeat the option).")] = [2, 5],  # noqa: B006
    kg: Annotated[list[int], typer.Option("--kg", help="Words per image: 5 or 21 in the paper.")] = [5],  # noqa: B006
    episodes: Annotated[
        int, typer.Option("--episodes", min=1, max=1_000_000, help="Episodes per N (each runs every cell).")
    ] = 200,
    episodes_file: Annotated[
        Path | None,
        typer.Option("--episodes-file", help="Load episodes saved by --save-episodes instead of drawing them."),
    ] = None,
    save_episodes_to: Annotated[
        Path | None, typer.Option("--save-episodes", help="Write the drawn episodes here.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Episode seed.")] = 0,
    template: TemplateOpt = "paper",
    calibrate: Annotated[
        bool, typer.Option(help="Also score the content-free query for the 'calibrated' rule.")
    ] = True,
    llm: LLMOpt = DEFAULTS["llm"],
    adapter: AdapterOpt = None,
    vl: VLOpt = DEFAULTS["vl"],
    codebook: CodebookOpt = None,
    cells: Annotated[
        list[str] | None,
        typer.Option("--cells", help="Only these of Table 1's cells (repeatable, e.g. ind-1shot-r0; default: all 7)."),
    ] = None,
    kinds: Annotated[
        list[str] | None,
        typer.Option(
            "--kinds",
            help="Keep only the codebook's entries of these kinds (repeatable: subword, bigram, trigram; Table 5).",
        ),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="Read this tokenizer's tokens (a baseline's folder: VQ-GAN+LLM, LQAE, SPAE) as each image's "
            "words instead of V2L's global words (Table 1's other rows)."
        ),
    ] = None,
    tokens: Annotated[
        int | None,
        typer.Option(min=1, help="With --tokenizer: tokens per image (SPAE: 5 or 21; default: all its tokens)."),
    ] = None,
    data_root: DataRootOpt = None,
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Run the Table 1 grid (2/5-way; 1/3/5 shots; task induction; repeats 0/1/3/5) on the 40 held-out Tiny-ImageNet
    classes, under the paper's rule, constrained decoding, ranking and calibrated ranking."""
    from ..errors import ConfigError
    from ..paths import check_distinct, check_output_file
    from ..tasks import TABLE1_CELLS, InContextClassifier, heldout_features, load_episodes
    from ..tasks import save_episodes as save_eps
    from ..tasks.grid import save_records, summarize, table1_grid
    from ..tasks.prompts import load_template

    setup_torch(device, dtype)
    check_output_file(out)
    if save_episodes_to is not None:
        check_output_file(save_episodes_to, "--save-episodes")
    check_distinct({"--out": out, "--save-episodes": save_episodes_to}, {"--episodes-file": episodes_file})
    for w in ways:
        if w < 2:
            raise ConfigError(f"--ways {w} is invalid: classification needs at least 2 classes.")
    for k in kg:
        if k < 1:
            raise ConfigError(f"--kg {k} is invalid: use a whole number of words per image, at least 1.")
    chosen = [c for c in TABLE1_CELLS if cells is None or c.name in cells]
    if cells is not None and (unknown := sorted(set(cells) - {c.name for c in TABLE1_CELLS})):
        raise ConfigError(
            f"--cells {', '.join(unknown)}: Table 1's cells are {', '.join(c.name for c in TABLE1_CELLS)}."
        )
    if tokens is not None and tokenizer is None:
        raise ConfigError("--tokens counts a tokenizer's tokens: give --tokenizer FOLDER too.")
    tmpl = load_template(template)
    loaded = load_episodes(episodes_file) if episodes_file is not None else None
    lm, vl_model, cb = _models(llm, vl, codebook, adapter)
    if kinds:
        cb = cb.of_kinds(kinds)
    store = heldout_features(vl_model, cb, data_root=data_root, top=max(kg))
    if tokenizer is not None:  # a baseline's tokens instead of V2L's global words
        from ..baselines import token_words, with_token_words
        from ..tasks.grid import heldout_images
        from ..tokenizer import ImageTokenizer

        tok = ImageTokenizer.from_pretrained(tokenizer, vl=vl_model, lm=lm)
        store = with_token_words(store, token_words(tok, heldout_images(store, data_root), tokens))
    clf = InContextClassifier(lm, tmpl, calibrate=calibrate)
    given = None
    if loaded is not None:
        given = {w: [e for e in loaded if e.ways == w] for w in ways}
        unknown = {i for eps in given.values() for e in eps for r in e.rounds for _, i in r} - set(store.keys)
        if unknown:
            raise ConfigError(
                f"--episodes-file {episodes_file} names {len(unknown)} images not in the held-out pool "
                f"(e.g. {sorted(unknown)[0]}): it was drawn from other data."
            )
    by_cell, by_ways = table1_grid(
        clf, store, ways, kg, given if given is not None else episodes, seed=seed, cells=chosen
    )
    records = [r for w in ways for k in kg for r in by_cell[(k, w)]]
    drawn = [e for w in ways for e in by_ways[w]]
    if save_episodes_to is not None:
        save_eps(save_episodes_to, drawn, {"seed": seed})
    meta = {"llm": llm, "vl": vl, "template": template, "seed": seed, "episodes": len(drawn)}
    meta["runtime"] = current().to_json()  # the device and dtype the LLM ran in
    meta.update(codebook=str(cb.folder), kinds=kinds or "all", tokenizer=tokenizer, tokens=tokens)
    save_records(out, records, meta)
    if as_json:
        typer.echo(json.dumps({"out": str(out), "summary": summarize(records)}, indent=2))
        return
    for r in summarize(records):
        accs = "  ".join(
            f"{k} {r[k]['acc']:.3f}"
            for k in ("paper", "constrained", "rank", "calibrated", "nn_vl", "nn_words")
            if k in r
        )
        typer.echo(f"K_g={r['kg']} {r['ways']}-way {r['cell']:<16} {accs}")
    typer.echo(f"wrote {out}")


KgOpt21 = Annotated[int, typer.Option("--kg", min=1, help="Words (global tokens) per image (the paper: 21).")]
ShotsOpt = Annotated[int, typer.Option("--shots", min=0, help="In-context samples (the paper: 10).")]
PairsOpt = Annotated[
    str,
    typer.Option(
        "--pairs",
        help="How in-context samples are chosen: random (one seeded draw "
        "shared by all images, the paper's), random-each (a draw per image), nearest "
        "(the pool images whose words are most similar).",
    ),
]
GenTemplateOpt = Annotated[
    str,
    typer.Option(
        "--template",
        help="Prompt template: paper (§3.3), or a JSON file of template fields (instruction, sample, query, "
        "separator, stops, max_new_tokens); the fields it leaves out stay the paper's.",
    ),
]


@app.command()
def caption(
    images: Annotated[list[Path], typer.Argument(help="Image files to caption.", show_default=False)],
    kg: KgOpt21 = 21,
    shots: ShotsOpt = 10,
    pairs: PairsOpt = "random",
    seed: Annotated[int, typer.Option(help="Seed of the in-context draw.")] = 0,
    template: GenTemplateOpt = "paper",
    llm: LLMOpt = DEFAULTS["llm"],
    adapter: AdapterOpt = None,
    vl: VLOpt = DEFAULTS["vl"],
    codebook: CodebookOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: caption, words, in-context images.")] = False,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Caption images in context: a frozen LLM reads 10 captioned examples' words and captions, then each image's words
    (the pool is coco-captions train under the data root)."""
    from ..tasks.captioning import caption_images
    from ..tasks.classify import decode_images
    from ..tasks.coco import load_coco
    from ..tasks.incontext import CAPTION_PAPER, GenerationTemplate
    from ..tasks.pool import check_pairs

    setup_torch(device, dtype)
    check_pairs(pairs)
    tmpl = GenerationTemplate.load(CAPTION_PAPER, template)
    decode_images(images, "Image")  # every input is checked before any model loads
    pool = load_coco("train", root=data_root)
    lm, vl_model, cb = _models(llm, vl, codebook, adapter)
    rows = caption_images(
        [str(p) for p in images],
        lm=lm,
        vl=vl_model,
        codebook=cb,
        pool=pool,
        kg=kg,
        shots=shots,
        pairs=pairs,
        seed=seed,
        template=tmpl,
        progress=True,
    )
    _print_rows(rows, as_json, lambda r: r.caption)


@app.command()
def vqa(
    image: Annotated[Path, typer.Argument(help="An image file.", show_default=False)],
    question: Annotated[
        str, typer.Argument(help='A question about it, e.g. "What animal is in the picture?"', show_default=False)
    ],
    kg: KgOpt21 = 21,
    shots: ShotsOpt = 10,
    pairs: PairsOpt = "random",
    seed: Annotated[int, typer.Option(help="Seed of the in-context draw.")] = 0,
    template: GenTemplateOpt = "paper",
    llm: LLMOpt = DEFAULTS["llm"],
    adapter: AdapterOpt = None,
    vl: VLOpt = DEFAULTS["vl"],
    codebook: CodebookOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: answer, raw text, words.")] = False,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Answer a question about an image in one word, in context. The 10 example triplets come from questions derived
    from COCO annotations (coco-captions train): a stand-in for VQA v2."""
    from ..tasks.classify import decode_images
    from ..tasks.coco import load_coco
    from ..tasks.incontext import VQA_PAPER, GenerationTemplate
    from ..tasks.pool import check_pairs
    from ..tasks.questions import normalize_question
    from ..tasks.vqa import STAND_IN, answer_questions

    setup_torch(device, dtype)
    check_pairs(pairs)
    normalize_question(question)  # an empty question is refused before any model loads
    tmpl = GenerationTemplate.load(VQA_PAPER, template)
    decode_images([image], "Image")
    pool = load_coco("train", root=data_root)
    lm, vl_model, cb = _models(llm, vl, codebook, adapter)
    r = answer_questions(
        [str(image)],
        [question],
        lm=lm,
        vl=vl_model,
        codebook=cb,
        pool=pool,
        kg=kg,
        shots=shots,
        pairs=pairs,
        seed=seed,
        template=tmpl,
    )[0]
    if as_json:
        typer.echo(json.dumps(r.to_json(), indent=2, ensure_ascii=False))
        return
    typer.echo(r.answer or "(no answer)")
    typer.echo(f"({STAND_IN}; in-context triplets from coco-captions train)", err=True)


@app.command()
def denoise(
    image: Annotated[Path, typer.Argument(help="An image file.", show_default=False)],
    task: Annotated[
        str, typer.Option("--task", help="inpaint, outpaint, deblur, shift or rotate.", show_default=False)
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The restored image (an existing file is replaced).", show_default=False)
    ],
    tokens: Annotated[
        Path | None,
        typer.Option(
            "--tokens", help="Also write the restored token map (JSON: local_ids, global_ids of the corrupted image)."
        ),
    ] = None,
    corrupted: Annotated[Path | None, typer.Option("--corrupted", help="Also write the corrupted input image.")] = None,
    n: Annotated[
        int, typer.Option("--n", min=1, help="Condition length: tokens read before the predicted ones.")
    ] = D.n,
    m: Annotated[int, typer.Option("--m", min=1, help="Tokens predicted at a time.")] = D.m,
    seed: Annotated[int, typer.Option(help="Seed of the noisy in-context copies.")] = D.seed,
    par_layers: Annotated[
        int,
        typer.Option(
            "--par-layers", min=0, help="SPAE tokenizers: pyramid layers decoded by PAR before PNAR (SPAE §3.2)."
        ),
    ] = D.par_layers,
    tokenizer: Annotated[
        str,
        typer.Option(
            "--tokenizer",
            "-t",
            help="Tokenizer folder (v2l or a baseline from `v2l train --model`), hub id, or 'cpu' (shipped).",
        ),
    ] = "cpu",
    llm: LLMOpt = DEFAULTS["llm"],
    adapter: AdapterOpt = None,
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Restore an image in context (paper §4.3, Fig. 4): corrupt it for --task, let a frozen LLM predict its local
    tokens from 10 noisy copies, and decode (SPAE's pyramid: progressive decoding, PAR then PNAR)."""
    from ..backbones import LanguageModel
    from ..paths import check_distinct, check_output_file, write_json_atomic
    from ..tasks.denoise import DenoiseConfig, Denoiser, check_task
    from ..tokenizer import ImageTokenizer
    from .tokenizer import check_image_output, check_images, save_image

    check_task(task)
    cfg = DenoiseConfig(n=n, m=m, seed=seed, par_layers=par_layers)
    cfg.check()
    check_image_output(out)
    if corrupted is not None:
        check_image_output(corrupted, "--corrupted")
    if tokens is not None:
        check_output_file(tokens, "--tokens")
    check_distinct({"--out": out, "--corrupted": corrupted, "--tokens": tokens}, {"IMAGE": image})
    check_images([image])  # every input is checked before any model loads or any output is written
    if adapter:
        from ..backbones.adapters import check_adapter

        check_adapter(adapter)
    setup_torch(device, dtype)
    tok = ImageTokenizer.from_pretrained(tokenizer, progress=False)
    lm = LanguageModel.load(llm, progress=False, adapter=adapter)
    from tqdm.auto import tqdm

    den = Denoiser(tok, lm, cfg)
    with tqdm(total=den.prompt_count(task), desc=f"denoise ({task})", unit="prompt") as bar:
        r = den.restore([str(image)], task, progress=bar.update)[0]
    if tokens is not None:
        write_json_atomic(
            tokens,
            {
                "task": task,
                "local_ids": r.tokens,
                "global_ids": r.global_ids,
                "predicted": r.predicted,
                "config": {"n": n, "m": m, "seed": seed, "par_layers": par_layers},
                "runtime": current().to_json(),
            },
        )
    if corrupted is not None:
        save_image(r.corrupted, corrupted)
    save_image(r.restored, out)
    if as_json:
        written = {"restored": str(out), "corrupted": str(corrupted) if corrupted else None}
        typer.echo(
            json.dumps({"image": str(image), "task": task, **written, "tokens": str(tokens) if tokens else None})
        )
    else:
        typer.echo(str(out))
