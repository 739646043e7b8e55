"""Shared fixtures: tiny randomly initialised models of the real classes (built in milliseconds) and the data root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
CORPUS = (
    "a photo of a cat. a photo of a dog. a photo of the sea. the cat sat on the mat. a red car on a road. "
    "a bird in the sky. the quick brown fox jumps over the lazy dog. Paris is the capital of France. "
) * 20


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tests never touch the user's cache unless V2L_CACHE is set explicitly (CI sets it to reuse de-quantisation)."""
    if not os.environ.get("V2L_CACHE"):
        os.environ["V2L_CACHE"] = str(tmp_path_factory.mktemp("v2l-cache"))
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = Path(os.environ.get("V2L_DATA") or REPO.parent / "shared" / "data")
    if not (root / "tiny-imagenet-200").is_dir():
        pytest.skip(f"shared data not found at {root}: set V2L_DATA to the folder of WebDataset shards")
    os.environ.setdefault("V2L_DATA", str(root))
    return root


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A byte-level BPE tokenizer trained on a few sentences, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<pad>"
    )


def run_cli(args: list[str]) -> int:
    """`v2l ARGS` in this process (models stay loaded between calls); its exit code."""
    from v2l.cli import main

    try:
        main(args)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def tiny_llama_config(tokenizer, **kw):
    """The tiny tests' LlamaConfig: 2 layers of width 32, tied embeddings, the tokenizer's special ids."""
    from transformers import LlamaConfig

    base = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
    )
    return LlamaConfig(**{**base, **kw})


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A random 2-layer LlamaForCausalLM saved as a transformers folder (same code paths as LLaMA-2 / SmolLM2)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_llama_config(tiny_tokenizer))
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_lm(tiny_llama_dir):
    from v2l.backbones import LanguageModel

    return LanguageModel.load(str(tiny_llama_dir))


@pytest.fixture(scope="session")
def long_lm(tmp_path_factory, tiny_tokenizer):
    """The tiny random Llama with a 2,048-token context: long enough for 5-way 5-shot prompts."""
    from transformers import LlamaForCausalLM

    from v2l.backbones import LanguageModel

    torch.manual_seed(0)
    cfg = tiny_llama_config(tiny_tokenizer, max_position_embeddings=2048)
    out = tmp_path_factory.mktemp("tiny-llama-long")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    return LanguageModel.load(str(out))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A random CLIPModel (both towers) with a tokenizer, saved as a folder."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    text = dict(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=32,
        eos_token_id=tiny_tokenizer.eos_token_id,
        pad_token_id=tiny_tokenizer.pad_token_id,
        bos_token_id=tiny_tokenizer.bos_token_id,
    )
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    out = tmp_path_factory.mktemp("tiny-clip")
    model.save_pretrained(out)
    # CLIP pools the text at the end-of-text token, so its tokenizer must append one (as CLIP's own does).
    import copy

    from tokenizers.processors import TemplateProcessing

    clip_tok = copy.deepcopy(tiny_tokenizer)
    eos = clip_tok.eos_token
    clip_tok._tokenizer.post_processor = TemplateProcessing(
        single=f"$A {eos}", special_tokens=[(eos, clip_tok.eos_token_id)]
    )
    clip_tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def real_lm():
    from v2l.backbones import LanguageModel

    return LanguageModel.load("smollm2-135m", progress=False)


@pytest.fixture(scope="session")
def conse():
    from v2l.backbones import load_vl

    return load_vl("conse")


@pytest.fixture(scope="session")
def tiny_vl(tiny_clip_dir):
    from v2l.backbones import load_vl

    return load_vl(f"hf-clip:{tiny_clip_dir}")


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """12 small images in 3 class folders (random noise with one saturated channel per class)."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"class{c}").mkdir()
        for i in range(4):
            arr = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
            arr[..., c] = 255
            Image.fromarray(arr).save(root / f"class{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def tiny_codebook_dir(tmp_path_factory, tiny_lm, tiny_vl, image_folder) -> Path:
    from v2l.codebooks import CodebookConfig, build_codebook

    cfg = CodebookConfig(
        llm="tiny",
        vl="hf-clip",
        filter_data=str(image_folder),
        filter_split=None,
        filter_classes="all",
        filter_per_class=0,
        templates="single",
        chunk_size=64,
        batch_size=32,
    )
    return build_codebook(cfg, lm=tiny_lm, vl=tiny_vl, out=tmp_path_factory.mktemp("cb") / "tiny")


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory, tiny_codebook_dir) -> Path:
    """A randomly initialised `tiny` V2L tokenizer (16 px, an 8×8 token map) saved with the tiny codebook."""
    from v2l.codebooks import Codebook
    from v2l.tokenizer import V2LTokenizer, get_config
    from v2l.tokenizer.image_tokenizer import save_tokenizer_folder

    cb = Codebook.load(tiny_codebook_dir)
    torch.manual_seed(0)
    net = V2LTokenizer(get_config("tiny"), cb.local_embeddings, cb.global_embeddings)
    return save_tokenizer_folder(
        tmp_path_factory.mktemp("tiny-tok") / "tok", net, cb.manifest, codebook_folder=tiny_codebook_dir
    )
