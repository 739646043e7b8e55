"""Render benchmarks/results/caption-vqa-*.json as the markdown tables of docs/results.md.

    python benchmarks/caption_vqa_table.py smollm2-135m gemma3-270m > /tmp/tables.md

Every number printed is read from the result files.
"""

from __future__ import annotations

import json
import sys

from common import RESULTS


def load(name: str) -> dict:
    return json.loads((RESULTS / f"caption-vqa-{name}.json").read_text())


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def main(names: list[str]) -> None:
    data = {n: load(n) for n in names}
    print(
        "| LLM | in-context pairs | BLEU-1 | BLEU-4 | METEOR | ROUGE-L | CIDEr | prompt tokens | batched s | "
        "one per call s | ratio | identical |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, d in data.items():
        for pairs, row in d.get("captioning", {}).items():
            s, sp = row["scores"], row.get("speed", {})
            print(
                f"| {n} | {pairs} | {pct(s['bleu1'])} | {pct(s['bleu4'])} | {pct(s.get('meteor'))} | "
                f"{pct(s['rouge_l'])} | {pct(s['cider'])} | {row['prompt_tokens_mean']:.0f} | "
                f"{sp.get('fast_s_same_prompts', 0):.1f} | {sp.get('reference_s', 0):.1f} | "
                f"{sp.get('speedup', 0):.2f}× | {sp.get('identical', '–')}/{sp.get('prompts', '–')} |"
            )
    print()
    print("| LLM | prompt | presence | counting | category | all | batched s | one per call s | ratio | identical |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, d in data.items():
        v = d.get("vqa")
        if not v:
            continue
        rows = [(k, v[k]) for k in ("random", "nearest", "question-only") if k in v]
        rows.append(("majority answer per type (no LLM)", v["majority"]))
        for k, row in rows:
            acc, sp = row["accuracy"], row.get("speed", {})
            cells = [
                f"{pct(acc[t]['acc'])} ({acc[t]['n']})" if t in acc else "–"
                for t in ("presence", "counting", "category", "all")
            ]
            speed = (
                (
                    f"{sp['fast_s_same_prompts']:.1f} | {sp['reference_s']:.1f} | {sp['speedup']:.2f}× | "
                    f"{sp['identical']}/{sp['prompts']}"
                )
                if sp
                else "| | |"
            )
            print(f"| {n} | {k} | " + " | ".join(cells) + f" | {speed} |")
    print()
    first = data[names[0]]["captioning"]
    ex = {p: first[p]["examples"] for p in first}
    print(f"Example captions ({names[0]}; the first 10 test images, sorted by COCO id):")
    print()
    print("| image | " + " | ".join(f"{p} pairs" for p in ex) + " | first reference |")
    print("|---|" + "---|" * len(ex) + "---|")
    for i, e in enumerate(ex[next(iter(ex))]):
        caps = [ex[p][i]["caption"].replace("|", "/")[:90] for p in ex]
        print(f"| {e['image']} | " + " | ".join(caps) + f" | {e['references'][0]} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["smollm2-135m"])
