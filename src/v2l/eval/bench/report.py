"""The Markdown report: our numbers beside the paper's (`paper.py`), with the settings that differ."""

from __future__ import annotations

from ...tasks.episodes import TABLE1_CELLS
from .paper import (
    PAPER_NOTE,
    PAPER_TABLE1,
    PAPER_TABLE2_CLIP_SCORE,
    PAPER_TABLE3,
    PAPER_TABLE4,
    PAPER_TABLE5,
    PAPER_TABLE6,
)
from .report_seed import report_seed
from .stages.comparison import COMPARISON_IMAGES

CELL_ORDER = tuple(c.name for c in TABLE1_CELLS)  # the paper's column order


def _f(v, digits=2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def render_report(results: dict) -> str:
    st, m = results["stages"], results["machine"]
    lines = [
        f"# v2l bench — suite `{results['suite']}`",
        "",
        PAPER_NOTE,
        "",
        f"Machine: {m['platform']}, Python {m['python']}, {m['cpus']} threads, GPU: {m['cuda'] or 'none'}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
        + ".",
        "",
        "| stage | wall time (s) |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v.get('seconds', 0):.0f} |" for k, v in st.items()]
    if "reconstruction" in st:
        r = st["reconstruction"]
        lines += [
            "",
            f"## Table 3: reconstruction ({r['images']} held-out Tiny-ImageNet val images, "
            f"{r['resolution']}×{r['resolution']}; the paper: ImageNet val, 128×128)",
            "",
            "| tokenizer | FID | ST-LPIPS | PSNR (dB) | SSIM |",
            "|---|---|---|---|---|",
            f"| ours: `{r['tokenizer']}` | {_f(r['fid'])} | {_f(r['st_lpips'], 3)} | {_f(r['psnr'])} | "
            f"{_f(r['ssim'], 3)} |",
        ]
        lines += [
            f"| *paper: {k}* | *{_f(a)}* | *LPIPS {_f(b)}* | *{_f(c)}* | *–* |" for k, (a, b, c) in PAPER_TABLE3.items()
        ]
        lines += [
            "",
            "FID from a few hundred images is biased upward (2,048-dimensional covariances): compare it only "
            "across rows of this table. ST-LPIPS (shift-tolerant LPIPS) is not the paper's LPIPS.",
        ]
    if "semantic" in st:
        lines += [
            "",
            "## Table 2: semantic quality of the global words (40 held-out Tiny-ImageNet classes)",
            "",
            "CLIP-R here: the VL score of an image and its words divided by that of the image and its class "
            "name (the paper does not define it). VL score: our VL model's cosine, not CLIP's.",
            "",
            "| images | K_g | count | class-word hit | VL score | CLIP-R | 5-way 1-shot nearest support: image / "
            "word embedding / word overlap |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, s in st["semantic"].items():
            if not key.startswith(("kg", "imagenet-kg")):
                continue
            ns = s.get("nearest_support", {})
            where = "imagenet-1k-sample" if key.startswith("imagenet") else "held-out"
            lines.append(
                f"| {where} | {s['kg']} | {s['images']} | {_f(100 * s['hit'], 1)} % | {_f(s['vl_score'], 4)} | "
                f"{_f(s['clip_r'], 3)} | "
                + (
                    " / ".join(_f(100 * ns[k]["acc"], 1) for k in ("vl", "word_embedding", "word_overlap"))
                    if ns
                    else "– (one image per class)"
                )
                + " |"
            )
        lines += [
            "",
            "*Paper (CLIP score at K_g = 5): "
            + ", ".join(f"{k} {v}" for k, v in PAPER_TABLE2_CLIP_SCORE.items())
            + " (CLIP ViT-L/14, not comparable with our VL score's scale).*",
        ]
    if "fewshot" in st:
        f = st["fewshot"]
        lines += [
            "",
            f"## Table 1: N-way K-shot classification (`{f['llm']}`; 40 held-out Tiny-ImageNet classes; "
            "the paper: LLaMA-2 7B on Mini-ImageNet)",
            "",
            "| K_g, N | cell | episodes | paper rule | constrained | ranking (95 % interval) | calibrated | "
            "paper, LLaMA-2 7B |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, rows in f.items():
            if not key.startswith("kg"):
                continue
            kg, ways = (int(x) for x in key[2:].replace("way", "").split("-"))
            for row in rows:
                paper = PAPER_TABLE1.get((kg, ways))
                ref = paper[CELL_ORDER.index(row["cell"])] if paper and row["cell"] in CELL_ORDER else None
                lo, hi = row["rank"]["ci95"]
                calibrated = 100 * row["calibrated"]["acc"] if "calibrated" in row else None
                lines.append(
                    f"| {kg}, {ways} | {row['cell']} | {row['episodes']} | {_f(100 * row['paper']['acc'], 1)} "
                    f"| {_f(100 * row['constrained']['acc'], 1)} | {_f(100 * row['rank']['acc'], 1)} "
                    f"({_f(100 * lo, 0)}–{_f(100 * hi, 0)}) | {_f(calibrated, 1)} | {_f(ref, 1)} |"
                )
    if "fewshot" in st and st["fewshot"].get("figure"):
        lines += ["", f"![few-shot accuracy per cell]({st['fewshot']['figure']})"]
    lines += _report_denoising(st.get("denoising"))
    lines += _report_restoration(st.get("restoration"))
    lines += report_seed(st.get("seed"))
    lines += _report_vocabulary(st.get("vocabulary"))
    lines += _report_captioning(st.get("captioning"), st.get("vqa"))
    lines += _report_tokenizers(st.get("tokenizers"), st.get("reconstruction"), st.get("denoising"))
    if (comp := st.get("comparison") or {}).get("figure"):
        lines += [
            "",
            f"![Every method side by side (Fig. 7's layout): {COMPARISON_IMAGES} reconstructions, then the "
            f"first image's {' and '.join(comp['tasks'])} by the LLM]({comp['figure']})",
        ]
    for key, title in (("reconstruction", "Reconstructions"), ("semantic", "Global words (Fig. 6)")):
        if key in st and st[key].get("figure"):
            lines += ["", f"![{title}]({st[key]['figure']})"]
    if results.get("not_run"):
        lines += ["", "## Not run by this suite", ""] + [f"- {p}" for p in results["not_run"]]
    return "\n".join(lines) + "\n"


def _report_denoising(d: dict | None) -> list[str]:
    if not d:
        return []
    tasks = [t for t in ("inpaint", "outpaint", "deblur", "shift", "rotate") if t in d]
    lines = [
        "",
        f"## Table 4: in-context denoising (`{d['llm']}`, {d['images']} held-out images per task, n = "
        f"{d['n']}, m = {d['m']}, {d['copies']} noisy copies; the paper: LLaMA-2 7B, 5,000 ImageNet val "
        "images)",
        "",
        "| restoration | " + " | ".join(f"{t}: FID / ST-LPIPS / PSNR" for t in tasks) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    for method, label in (
        ("llm", f"V2L tokens + {d['llm']}"),
        ("corrupted", "no LLM: corrupted tokens decoded"),
        ("nearest", "no LLM: nearest known token"),
    ):
        cells = []
        for t in tasks:
            m = d[t].get(method)
            cells.append(
                "–" if m is None else f"{_f(m.get('fid'), 1)} / {_f(m.get('st_lpips'), 3)} / {_f(m.get('psnr'), 2)}"
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for name, row in PAPER_TABLE4.items():
        lines.append(
            f"| *paper: {name}* | " + " | ".join(f"*{row[t][0]} / LPIPS {row[t][1]} / –*" for t in tasks) + " |"
        )
    lines += [
        "",
        "Seconds per image: "
        + ", ".join(f"{t} {d[t]['seconds_per_image']:.1f}" for t in tasks)
        + ". FID over a few images is dominated by its bias: compare rows, not with the paper.",
    ]
    if d.get("figure"):
        lines += ["", f"![denoising]({d['figure']})"]
    return lines


_RESTORATION_ROWS = (
    ("tuned", "LoRA-tuned LLM ({adapter})"),
    ("frozen", "frozen LLM in context"),
    ("nearest", "no LLM: nearest unmasked token"),
    ("frequent", "no LLM: the image's most frequent token"),
    ("input", "the paper's input: masked ids = 0"),
    ("ceiling", "ceiling: nothing masked (the tokenizer)"),
)


def _report_restoration(d: dict | None) -> list[str]:
    if not d:
        return []
    sets = [k for k in ("tuning_classes", "heldout_classes") if k in d]
    lines = [
        "",
        f"## §4.3, Fig. 8: masked restoration ({round(100 * d['ratio'])} % of the local tokens, seed {d['seed']}, "
        f"`{d['llm']}`; the paper: LLaMA-2 7B with LoRA, ImageNet, no numbers given)",
        "",
        "| restoration | "
        + " | ".join(
            f"{k.replace('_', ' ')} ({d[k].get('input', {}).get('images', 0)}): PSNR / SSIM / ST-LPIPS / "
            "FID / masked ids exact"
            for k in sets
        )
        + " |",
        "|---|" + "---|" * len(sets),
    ]
    for key, label in _RESTORATION_ROWS:
        cells = []
        for k in sets:
            m = d[k].get(key)
            cells.append(
                "–"
                if not m or not m.get("images")
                else f"{_f(m.get('psnr'), 2)} / {_f(m.get('ssim'), 3)} / {_f(m.get('st_lpips'), 3)} / "
                f"{_f(m.get('fid'), 1)} / "
                + (f"{_f(100 * m['masked_tokens_exact'], 1)} %" if "masked_tokens_exact" in m else "–")
            )
        lines.append(f"| {label.format(adapter=d.get('adapter'))} | " + " | ".join(cells) + " |")
    if d.get("figure"):
        lines += ["", f"![masked restoration: original, then each row]({d['figure']})"]
    if g := d.get("generation"):
        lines += [
            "",
            f"Images from words (beyond the paper): {g['samples']} samples per class name by the tuned LLM "
            f"(temperature {g['temperature']}, top-k {g['top_k']}); each name's global words: "
            + "; ".join(f"{p}: {', '.join(w)}" for p, w in g["words"].items())
            + ".",
        ]
        if g.get("figure"):
            lines += ["", f"![images from words]({g['figure']})"]
    return lines


def _report_vocabulary(v: dict | None) -> list[str]:
    if not v:
        return []
    lines = [
        "",
        f"## Table 5: vocabulary expansion (`{v['llm']}`, 5-way, K_g = 5; the entries of each kind in the "
        "one built codebook; the paper: LLaMA-2 70B, separately built codebooks)",
        "",
        "| codebook | entries | cell | episodes | paper rule | constrained | ranking (95 % interval) | paper |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("subword", "bigram", "trigram"):
        if name not in v:
            continue
        for row in v[name]["cells"]:
            lo, hi = row["rank"]["ci95"]
            ref = PAPER_TABLE5.get(name) if row["cell"] == "ind-1shot-r0" else None
            lines.append(
                f"| {name}{'' if name == 'subword' else ' (+ smaller)'} | {v[name]['entries']} | "
                f"{row['cell']} | {row['episodes']} | {_f(100 * row['paper']['acc'], 1)} | "
                f"{_f(100 * row['constrained']['acc'], 1)} | {_f(100 * row['rank']['acc'], 1)} "
                f"({_f(100 * lo, 0)}–{_f(100 * hi, 0)}) | {_f(ref, 1)} |"
            )
    return lines


def _report_captioning(c: dict | None, q: dict | None) -> list[str]:
    lines = []
    if c:
        by_pairs = c.get("by_pairs") or {c.get("pairs", "random"): c["scores"]}
        lines += [
            "",
            f"## Captioning in context (`{c['llm']}`, {c['images']} coco-captions test images, K_g = 21, "
            "10 in-context pairs; the paper reports no caption scores for comparison)",
            "",
            "| pairs | BLEU-4 | METEOR | ROUGE-L | CIDEr |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {pairs} | {_f(sc.get('bleu4'), 3)} | {_f(sc.get('meteor'), 3)} | {_f(sc.get('rouge_l'), 3)} | "
            f"{_f(sc.get('cider'), 3)} |"
            for pairs, sc in by_pairs.items()
        ]
        lines += [f"- {e['image']}: “{e['caption']}” (reference: “{e['reference']}”)" for e in c["examples"][:3]]
        if c.get("figure"):
            lines += ["", f"![captions]({c['figure']})"]
    if q:
        rows = q.get("by_prompt") or {q.get("pairs", "random"): q["accuracy"]}
        lines += [
            "",
            f"## VQA in context (`{q['llm']}`, {q['questions']} questions; {q['note']})",
            "",
            "| question type | " + " | ".join(f"ours: {k}" for k in rows) + " | majority answer |",
            "|---|" + "---|" * (len(rows) + 1),
        ]
        for t in q["accuracy"]:
            ours = " | ".join(_f(100 * r[t]["acc"], 1) for r in rows.values())
            lines.append(f"| {t} | {ours} | {_f(100 * q['majority'][t]['acc'], 1)} |")
        if q.get("figure"):
            lines += ["", f"![VQA]({q['figure']})"]
    return lines


def _den_cell(d: dict, task: str) -> str:
    m = (d.get(task) or {}).get("llm")
    return "–" if not m else f"{_f(m.get('fid'), 1)} / {_f(m.get('st_lpips'), 3)} / {_f(m.get('psnr'), 2)}"


def _understanding_cells(row: dict) -> str:
    sem, fs = row["semantic"], row["fewshot"][0]
    return (
        f"{row['tokens_per_image']} | {_f(100 * sem['hit'], 1)} % | {_f(sem['vl_score'], 3)} | "
        f"{_f(100 * fs['paper']['acc'], 1)} / {_f(100 * fs['constrained']['acc'], 1)} / "
        f"{_f(100 * fs['rank']['acc'], 1)}"
    )


def _report_tokenizers(stage: dict | None, main: dict | None, denoising: dict | None) -> list[str]:
    if stage is None:
        return []
    t = stage.get("rows") or {}
    lines = [
        "",
        "## The baselines and Table 6's variants, measured like the main tokenizer",
        "",
        "Reconstruction on the same held-out images as Table 3; understanding tokens (V2L: 5 global words, SPAE: "
        "layers 1–2, VQ-GAN+LLM and LQAE: all 256) on the pool images of the same 5-way 1-shot episodes (with "
        "induction) for every row, the main tokenizer's included; denoising on Table 4's images and settings.",
        "",
        "| tokenizer | model | FID | ST-LPIPS | PSNR | SSIM | tokens | class-word hit | VL score | 5-way 1-shot "
        "paper / constrained / ranking | inpaint, LLM: FID / ST-LPIPS / PSNR | deblur, LLM: FID / ST-LPIPS / "
        "PSNR |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if main:
        und = _understanding_cells(stage["main"]) if stage.get("main") else "(Tables 1–2) | | |"
        den = " | ".join(_den_cell(denoising or {}, task) for task in ("inpaint", "deblur"))
        lines.append(
            f"| main: `{main['tokenizer']}` | v2l | {_f(main.get('fid'))} | {_f(main.get('st_lpips'), 3)} | "
            f"{_f(main.get('psnr'))} | {_f(main.get('ssim'), 3)} | {und} | {den} |"
        )
    if not t:
        lines.append("| (none given: `v2l bench --tokenizers LABEL=FOLDER ...`) | | | | | | | | | | | |")
    for label, row in t.items():
        if row.get("status") != "ok":
            lines.append(f"| {label} | {row.get('status', 'not built')} | | | | | | | | | | |")
            continue
        r = row["reconstruction"]
        mark = " †" if row.get("reused") else ""
        lines.append(
            f"| {label}{mark} | {row['model']} | {_f(r.get('fid'))} | {_f(r.get('st_lpips'), 3)} | "
            f"{_f(r.get('psnr'))} | {_f(r.get('ssim'), 3)} | {_understanding_cells(row)} | "
            + " | ".join(_den_cell(row.get("denoising", {}), task) for task in ("inpaint", "deblur"))
            + " |"
        )
    if any(row.get("reused") for row in t.values()):
        lines += [
            "",
            "† Measured by an earlier run of this stage (same suite, same folder; kept in `stages/rows/`), not "
            "again in this one: their checkpoints do not change with the main tokenizer's, and a row is measured "
            "again only when its folder is new or was not built.",
        ]
    lines += [
        "",
        "*Paper, Table 6 (ImageNet val, 128 px; FID / LPIPS / PSNR):* "
        + "; ".join(f"*{k} {a} / {b} / {c}*" for k, (a, b, c) in PAPER_TABLE6.items())
        + ".",
    ]
    return lines
