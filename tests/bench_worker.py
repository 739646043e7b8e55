"""Run by tests/test_bench.py under `accelerate launch` (or alone): the tiny bench suite into a folder."""

import sys

import torch

from v2l.backbones import LanguageModel, load_vl
from v2l.eval import bench as B
from v2l.tokenizer import ImageTokenizer

SUITE = B.Suite(
    images=6,
    episodes=5,
    kg=(3,),
    ways=(2,),
    cells=("no-ind-1shot-r0", "ind-1shot-r0"),
    stages=("reconstruction", "fewshot"),
)  # 6 images, 5 episodes: uneven shards over 2 or 4 processes


def main(tok_dir: str, clip_dir: str, llm_dir: str, data_root: str, out: str) -> None:
    torch.set_num_threads(1)
    vl = load_vl(f"hf-clip:{clip_dir}")
    tok = ImageTokenizer.from_pretrained(tok_dir, vl=vl, progress=False)
    ctx = B.BenchContext(
        SUITE,
        data_root=data_root,
        tokenizer_name="tiny",
        llm_name="tiny",
        progress=False,
        models={"tokenizer": tok, "lm": LanguageModel.load(llm_dir)},
    )
    B.run_bench(SUITE, out, ctx, say=lambda m: None)


if __name__ == "__main__":
    main(*sys.argv[1:])
