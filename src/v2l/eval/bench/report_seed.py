"""The `seed` stage's section of the bench report: SEED beside V2L on the same images, the paper's numbers beside
them (not comparable: the settings differ in every model and in data)."""

from __future__ import annotations

from .paper import PAPER_SEED_TABLE1, PAPER_SEED_TABLE2_COCO, PAPER_SEED_TABLE3_COCO


def _f(v, digits=2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def report_seed(d: dict | None) -> list[str]:
    if not d:
        return []
    r = d["retrieval"]
    keys = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")
    lines = [
        "",
        f"## SEED beside V2L (`{d['seed_model']}`, SEED-LLM on `{d['llm']}`; V2L's frozen LLM `{d['v2l_llm']}`)",
        "",
        "Substitutions: " + "; ".join(d.get("substitutions", [])) + ". The paper's numbers are not comparable.",
        "",
        f"### Table 1 in miniature: retrieval on {r['images']} coco-captions test images, {r['texts']} captions",
        "",
        "| embedding | I→T R@1 | R@5 | R@10 | T→I R@1 | R@5 | R@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, label in (
        ("seed_causal_embedding", "SEED causal embedding"),
        ("seed_causal_codes", "SEED causal codes (reconstructed from 32 codes)"),
        ("vl_image_embedding", "VL image embedding (V2L's global-word space)"),
    ):
        lines.append(f"| {label} | " + " | ".join(_f(r[k][x], 1) for x in keys) + " |")
    for k, vals in PAPER_SEED_TABLE1.items():
        lines.append(f"| *paper: SEED {k}, COCO 5K* | " + " | ".join(f"*{v}*" for v in vals) + " |")
    c = d["captioning"]
    lines += [
        "",
        f"### Table 3 in miniature: captioning {c['images']} coco-captions test images",
        "",
        "| captioner | BLEU-4 | METEOR | ROUGE-L | CIDEr |",
        "|---|---|---|---|---|",
    ]
    for k, label in (("seed_llm", "SEED-LLM (tuned)"), ("v2l_in_context", "V2L, frozen LLM in context")):
        s = {m: (100 * v if isinstance(v, float) else None) for m, v in c[k].items()}
        lines.append(
            f"| {label} | {_f(s.get('bleu4'), 1)} | {_f(s.get('meteor'), 1)} | {_f(s.get('rouge_l'), 1)} "
            f"| {_f(s.get('cider'), 1)} |"
        )
    p = PAPER_SEED_TABLE3_COCO
    lines.append(
        f"| *paper: SEED-OPT2.7B, COCO* | *{p['bleu4']}* | *{p['meteor']}* | *{p['rouge_l']}* | *{p['cider']}* |"
    )
    lines += [
        "",
        "Examples: " + "; ".join(f"SEED “{e['seed_llm']}” / V2L “{e['v2l']}”" for e in c["examples"][:3]) + ".",
    ]
    k = d["classification"]
    lines += [
        "",
        f"### Classification by generation: {k['images']} Tiny-ImageNet val images of {k['classes']} training classes",
        "",
        "| classifier | accuracy (the text names the class) |",
        "|---|---|",
        f"| SEED-LLM caption | {_f(100 * k['seed_llm_accuracy'], 1)} % |",
        f"| V2L in context ({k['v2l_pool']}) | {_f(100 * k['v2l_in_context_accuracy'], 1)} % |",
    ]
    g = d["generation"]
    lines += [
        "",
        f"### Table 2 in miniature: images SEED-LLM draws for {len(g['prompts'])} class names (our VL score)",
        "",
        f"Generated {_f(g['vl_score_generated'], 4)}; real images of the class {_f(g['vl_score_real'], 4)}; "
        f"real images of another class {_f(g['vl_score_mismatched_real'], 4)}. "
        f"*Paper (CLIP similarity ×100, COCO, from codes of real images): {PAPER_SEED_TABLE2_COCO}.*",
    ]
    rc = d["reconstruction"]
    lines += [
        "",
        f"### Reconstruction through codes ({rc['images']} coco test images, {rc['resolution']}×{rc['resolution']})",
        "",
        "| tokenizer | PSNR (dB) | VL similarity to the original |",
        "|---|---|---|",
        f"| SEED (32 codes) | {_f(rc['seed_psnr'])} | {_f(rc['seed_vl_similarity'], 4)} |",
        f"| V2L (256 local + 21 global tokens) | {_f(rc['v2l_psnr'])} | {_f(rc['v2l_vl_similarity'], 4)} |",
    ]
    u, t = d.get("code_usage_train") or {}, d.get("code_usage_test") or {}
    if u:
        lines += [
            "",
            f"Code usage: {u.get('codes_used')} of {u.get('codebook_size')} codes on the {u.get('images')} training "
            f"images (perplexity {u.get('perplexity')}); {t.get('codes_used')} on the {t.get('images')} test images.",
        ]
    for fig in d.get("figures", []):
        lines += ["", f"![SEED]({fig})"]
    return lines
