"""VQA in context (§4.2) on questions derived from COCO annotations (a stand-in for VQA v2)."""

from __future__ import annotations

from ..context import BenchContext, gather, shard
from .captioning import coco_splits


def stage_vqa(ctx: BenchContext) -> dict:
    """VQA in context (§4.2) on the questions derived from COCO annotations (a stand-in for VQA v2): exact-match
    accuracy per type beside the majority answer."""
    from ....tasks.pool import word_vectors
    from ....tasks.questions import derive_questions, normalize_answer
    from ....tasks.vqa import STAND_IN, VisualQA, accuracy_by_type, majority_answers

    train, test = coco_splits(ctx)
    queries = [(i, q) for i, t in enumerate(test) for q in derive_questions(t.key, t.objects, t.original_size)]
    queries = queries[: ctx.suite.questions]
    used = sorted({i for i, _ in queries})
    words = word_vectors([test[i].image for i in used], ctx.vl(), ctx.codebook(), 21)
    at = {i: k for k, i in enumerate(used)}
    qwords = type(words)([words.words[at[i]] for i, _ in queries], words.vectors[[at[i] for i, _ in queries]])
    vqa = VisualQA(ctx.lm(), ctx.vl(), ctx.codebook(), train, kg=21, shots=10, pairs="random", seed=0)
    prompts, _ = vqa.prompts(qwords, [q.question for _, q in queries])
    mine = shard(prompts)
    pred = gather([normalize_answer(g.text) for g in vqa.gen.generate(mine)] if mine else [])
    types, gold = [q.type for _, q in queries], [q.answer for _, q in queries]
    maj = majority_answers(vqa.triplets)
    out = {
        "llm": ctx.llm_name,
        "note": STAND_IN,
        "questions": len(queries),
        "accuracy": accuracy_by_type(types, gold, pred),
        "majority": accuracy_by_type(types, gold, [maj[t] for t in types]),
        "examples": [
            {"image": test[i].key, "question": q.question, "gold": q.answer, "answer": a}
            for (i, q), a in list(zip(queries, pred, strict=True))[:6]
        ],
    }
    if (path := ctx.figure("vqa.png")) is not None:  # Fig. 5's answers
        from ...figures import captioned_images

        shown = list(zip(queries, pred, strict=True))[:4]
        captioned_images(
            [test[i].image for (i, _), _ in shown],
            [f"Q: {q.question} A: {a} (gold: {q.answer})" for (_, q), a in shown],
            path,
        )
        out["figure"] = f"figures/{path.name}"
    return out
