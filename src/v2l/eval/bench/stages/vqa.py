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
    types, gold = [q.type for _, q in queries], [q.answer for _, q in queries]
    rows, answers = {}, {}
    for pairs in ctx.suite.caption_pairs:  # the first way of choosing pairs is the headline; then the others
        vqa = VisualQA(ctx.lm(), ctx.vl(), ctx.codebook(), train, kg=21, shots=10, pairs=pairs, seed=0)
        blinds = (False, True) if ctx.suite.question_only and pairs == ctx.suite.caption_pairs[0] else (False,)
        for blind in blinds:  # question-only: the same prompts without the image's words (the language prior)
            prompts, _ = vqa.prompts(qwords, [q.question for _, q in queries], blind=blind)
            mine = shard(prompts)
            key = "question-only" if blind else pairs
            answers[key] = gather([normalize_answer(g.text) for g in vqa.gen.generate(mine)] if mine else [])
            rows[key] = accuracy_by_type(types, gold, answers[key])
        if pairs == ctx.suite.caption_pairs[0]:
            maj = majority_answers(vqa.triplets)
    first = ctx.suite.caption_pairs[0]
    pred = answers[first]
    out = {
        "llm": ctx.llm_name,
        "note": STAND_IN,
        "questions": len(queries),
        "pairs": first,
        "accuracy": rows[first],
        "majority": accuracy_by_type(types, gold, [maj[t] for t in types]),
        "examples": [
            {"image": test[i].key, "question": q.question, "gold": q.answer, "answer": a}
            for (i, q), a in list(zip(queries, pred, strict=True))[:6]
        ],
    }
    if len(rows) > 1:
        out["by_prompt"] = rows
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
