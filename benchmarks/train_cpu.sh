#!/usr/bin/env bash
# The first shipped CPU checkpoint (1,000 steps, 8,000 images) and the Table 6 miniature (see
# docs/results.md). The checkpoint shipped now comes from its successor, benchmarks/train_cpu_long.sh.
set -ex
cd "$(dirname "$0")/.."
export V2L_DATA="${V2L_DATA:-../shared/data}" V2L_THREADS=2
V2L=.venv/bin/v2l
COMMON="--preset cpu --steps 1000 --batch-size 16 --per-class 50 --warmup-steps 50 --disc-start 700 --checkpoint-every 100 --snapshot 300"
resume() { [ -d "$1" ] && echo --resume; }  # continue a run this script started
$V2L train --out runs/cpu $COMMON $(resume runs/cpu)
$V2L train --out runs/no-projector $COMMON --no-projector --stop-after 300 $(resume runs/no-projector)
$V2L train --out runs/raw-llm $COMMON --codebook-source llm --no-projector --stop-after 300 $(resume runs/raw-llm)
