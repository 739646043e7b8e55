"""Table 1: the N-way K-shot grid under the three decision rules."""

from __future__ import annotations

from ..context import BenchContext, gather, shard


def stage_fewshot(ctx: BenchContext) -> dict:
    from ....tasks import (
        PROMPT_TEMPLATES,
        TABLE1_CELLS,
        InContextClassifier,
        heldout_features,
        summarize,
    )
    from ....tasks.grid import table1_grid

    store = heldout_features(
        ctx.vl(),
        ctx.codebook(),
        data_root=ctx.data_root,
        top=max(ctx.suite.kg),
        progress=ctx.progress,
        per_class=ctx.suite.pool_per_class,
    )
    cells = [c for c in TABLE1_CELLS if c.name in ctx.suite.cells]
    clf = InContextClassifier(ctx.lm(), PROMPT_TEMPLATES["paper"], calibrate=ctx.suite.calibrate)
    out = {"llm": ctx.llm_name}
    records, _ = table1_grid(
        clf,
        store,
        ctx.suite.ways,
        ctx.suite.kg,
        ctx.suite.episodes,
        seed=0,
        cells=cells,
        progress=ctx.progress,
        share=shard,
        collect=gather,
    )
    for ways in ctx.suite.ways:  # the report's order: every K_g of one N, then the next N
        for kg in ctx.suite.kg:
            out[f"kg{kg}-{ways}way"] = summarize(records[(kg, ways)])
    if (path := ctx.figure("fewshot.png")) is not None:
        from ...figures import accuracy_plot

        order = {c.name: i for i, c in enumerate(TABLE1_CELLS)}
        settings = {
            f"K_g {k[2:].split('-')[0]}, {k.split('-')[1].replace('way', '')}-way": sorted(
                v, key=lambda r: order[r["cell"]]
            )
            for k, v in out.items()
            if k.startswith("kg")
        }
        accuracy_plot(settings, path, {k: v[0]["chance"] for k, v in settings.items()})
        out["figure"] = f"figures/{path.name}"
    return out
