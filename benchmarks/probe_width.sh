#!/usr/bin/env bash
# Does a wider network learn faster? (issue: global words, item 5: the retrained `cpu` checkpoint stops at 22 dB and
# its training MSE is flat, which points at the 3.5M-parameter network.) Four short runs from scratch on the data of
# train_cpu_long.sh (the default codebook, 100 images of each training class), no GAN, bf16 autocast:
#   ch 32 for 600 steps (the shipped width), ch 64 for 600 steps (equal steps), ch 32 for 1,050 steps (about the
#   CPU time of the ch 64 run), ch 64 for 1,050 steps (does the gap at equal steps grow?). Then held-out quality of
#   the four with bench_tokenizer.py (-> benchmarks/results/tokenizer.json, labels width-*). Each run resumes.
set -ex
cd "$(dirname "$0")/.."
export V2L_DATA="${V2L_DATA:-../shared/data}" V2L_THREADS=2
V2L=.venv/bin/v2l
resume() { [ -d "$1" ] && echo --resume; }
run() {  # name ch steps
  $V2L train --out "runs/$1" --preset cpu --ch "$2" --steps "$3" --batch-size 16 --per-class 100 --warmup-steps 100 \
    --disc-start 100000 --checkpoint-every 100 --mixed-precision bf16 $(resume "runs/$1")
}
run width-ch32-600 32 600
run width-ch64-600 64 600
run width-ch32-1050 32 1050
run width-ch64-1050 64 1050
.venv/bin/python benchmarks/bench_tokenizer.py quality "width-ch32-600=runs/width-ch32-600/final" \
  "width-ch64-600=runs/width-ch64-600/final" "width-ch32-1050=runs/width-ch32-1050/final" \
  "width-ch64-1050=runs/width-ch64-1050/final" --sets tiny-heldout
