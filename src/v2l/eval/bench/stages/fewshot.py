"""Table 1: the N-way K-shot grid under the three decision rules."""

from __future__ import annotations

from ..context import BenchContext, gather, shard


def stage_fewshot(ctx: BenchContext) -> dict:
    from ....tasks import (
        PROMPT_TEMPLATES,
        TABLE1_CELLS,
        InContextClassifier,
        heldout_features,
        run_grid,
        sample_episodes,
        summarize,
    )

    store = heldout_features(
        ctx.vl(),
        ctx.codebook(),
        data_root=ctx.data_root,
        top=max(ctx.suite.kg),
        progress=ctx.progress,
        per_class=ctx.suite.pool_per_class,
    )
    cells = [c for c in TABLE1_CELLS if c.name in ctx.suite.cells]
    clf = InContextClassifier(ctx.lm(), PROMPT_TEMPLATES["paper"], calibrate=False)
    out = {"llm": ctx.llm_name}
    for ways in ctx.suite.ways:
        episodes = sample_episodes(store.pool(), ways, ctx.suite.episodes, seed=0)
        for kg in ctx.suite.kg:
            recs = run_grid(
                clf, store, shard(episodes), kg, cells=cells, desc=f"{ways}-way K_g={kg}", progress=ctx.progress
            )
            out[f"kg{kg}-{ways}way"] = summarize(gather(recs))
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
