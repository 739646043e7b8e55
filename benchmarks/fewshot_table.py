"""Render the few-shot results (benchmarks/results/fewshot-*.json) as the markdown tables of docs/results.md.

    python benchmarks/fewshot_table.py > /tmp/tables.md

Every number printed is read from the result files; the paper's rows are typed from V2L Table 1 (LLaMA-2 7B, 5 and
21 global tokens, Mini-ImageNet).
"""

from __future__ import annotations

import json
import sys

from common import RESULTS

CELLS = [
    "no-ind-1shot-r0",
    "ind-1shot-r0",
    "ind-3shot-r0",
    "ind-5shot-r0",
    "ind-1shot-r1",
    "ind-1shot-r3",
    "ind-1shot-r5",
]
HEAD = (
    "| K_g / rule | "
    + " | ".join(
        [
            "2-1 ✗",
            "2-1",
            "2-3",
            "2-5",
            "2-1 r1",
            "2-1 r3",
            "2-1 r5",
            "2 avg",
            "5-1 ✗",
            "5-1",
            "5-3",
            "5-5",
            "5-1 r1",
            "5-1 r3",
            "5-1 r5",
            "5 avg",
        ]
    )
    + " |"
)
PAPER_7B = {
    5: [34.2, 73.1, 89.0, 93.4, 79.6, 80.6, 79.1, 75.6, 36.2, 54.6, 88.6, 91.1, 70.7, 72.8, 74.4, 69.8],
    21: [36.5, 76.3, 91.2, 95.3, 84.0, 84.4, 83.7, 78.8, 37.1, 44.8, 91.8, 94.0, 73.9, 82.2, 85.3, 72.7],
}
RULES = [
    ("paper", "paper rule (greedy, exact tokens)"),
    ("constrained", "constrained to the N names"),
    ("rank", "likelihood ranking"),
    ("calibrated", "ranking + calibration (correction)"),
    ("nn_vl", "nearest support, VL embedding (no LLM)"),
    ("nn_words", "nearest support, words (no LLM)"),
]


def table(data: dict, kg: int) -> list[str]:
    lines = []
    by = {(w, r["cell"]): r for w in (2, 5) for r in data.get(f"kg{kg}-{w}way", {}).get("cells", [])}
    if not by:
        return lines
    for rule, label in RULES:
        vals = []
        for w in (2, 5):
            accs = [by[(w, c)][rule]["acc"] * 100 if (w, c) in by and rule in by[(w, c)] else None for c in CELLS]
            known = [a for a in accs if a is not None]
            vals += [f"{a:.1f}" if a is not None else "–" for a in accs]
            vals.append(f"{sum(known) / len(known):.1f}" if len(known) == len(CELLS) else "–")
        if any(v != "–" for v in vals):
            lines.append(f"| {kg} / {label} | " + " | ".join(vals) + " |")
    half = []
    for w in (2, 5):
        for c in CELLS:
            r = by.get((w, c))
            if r and "rank" in r:
                lo, hi = r["rank"]["ci95"]
                half.append(f"±{(hi - lo) * 50:.1f}")
            else:
                half.append("–")
        half.append("")
    lines.append(f"| {kg} / ranking 95% interval (half-width) | " + " | ".join(half) + " |")
    lines.append(f"| {kg} / paper, LLaMA-2 7B (Mini-ImageNet) | " + " | ".join(f"{v}" for v in PAPER_7B[kg]) + " |")
    return lines


def speed_table(names: list[str]) -> None:
    """The engine against the reference loop, from the `speed` entries of the result files."""
    print(
        "| LLM (result file) | N | episodes × cells | engine s/episode | reference s/episode | ratio | "
        "identical predictions (paper / constrained / rank) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names:
        path = RESULTS / f"fewshot-{name}.json"
        if not path.is_file():
            continue
        sp = json.loads(path.read_text()).get("speed")
        if not sp:
            continue
        for key in ("2way", "5way"):
            r = sp[key]
            a = r["agreement"]
            print(
                f"| {name} | {key[0]} | {r['episodes']} × 7 | {r['fast_s_per_episode']:.2f} | "
                f"{r['reference_s_per_episode']:.2f} | {r['speedup']:.2f}× | {a['paper']} / {a['constrained']} / "
                f"{a['rank']} |"
            )
        print(f"| {name} | grid | | | | **{sp['grid_speedup']:.2f}×** | |")


def main(names: list[str]) -> None:
    for name in names:
        path = RESULTS / f"fewshot-{name}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        print(
            f"\n**{data['meta']['llm']}** ({path.name}; codebook entries: {data['meta']['codebook_entries']}, "
            f"kinds: {data['meta'].get('kinds', 'all')})\n"
        )
        print(HEAD)
        print("|" + "---|" * 17)
        print("| chance | " + " | ".join(["50.0"] * 8 + ["20.0"] * 8) + " |")
        for kg in (5, 21):
            for line in table(data, kg):
                print(line)
        rows = [r for k, v in data.items() if k.startswith("kg") for r in v["cells"]]
        if rows:
            print("\nBiases of the ranking rule (share of answers), per setting:\n")
            print(
                "| K_g | N | cell | episodes | s/episode | = last example's class | = first listed class | "
                "paper rule: not a class name |"
            )
            print("|---|---|---|---|---|---|---|---|")
            for r in sorted(rows, key=lambda r: (r["kg"], r["ways"], CELLS.index(r["cell"]))):
                print(
                    f"| {r['kg']} | {r['ways']} | {r['cell']} | {r['episodes']} | {r['seconds_per_episode']:.2f} | "
                    f"{r['rank_is_last_support']:.2f} | {r['rank_is_first_class']:.2f} | "
                    f"{r['paper_not_a_class']:.2f} |"
                )
        if "speed" in data:
            print("\nSpeed against the reference loop:", json.dumps(data["speed"]))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--speed"]:
        speed_table(sys.argv[2:])
    else:
        main(sys.argv[1:] or ["smollm2-135m", "gemma3-270m", "smollm2-135m-kg21", "smollm2-135m-kg21-5way"])
