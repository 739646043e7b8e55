#!/usr/bin/env bash
# The successor of train_cpu.sh (issue: global words, item 5): the default codebook (--vl conse:top_t=3, every-class
# filtering), all 100 images of each training class (16,000), bf16 autocast (1.3x on this CPU), 3,600 steps of 16
# (3.6 epochs), the GAN from step 2,800. Long: STOP_AFTER=N ends after step N (the schedule still spans 3,600 steps);
# rerunning the script continues from the newest checkpoint.
set -ex
cd "$(dirname "$0")/.."
export V2L_DATA="${V2L_DATA:-../shared/data}" V2L_THREADS=2
V2L=.venv/bin/v2l
resume() { [ -d "$1" ] && echo --resume; }  # continue a run this script started
$V2L train --out runs/cpu-long --preset cpu --steps 3600 --batch-size 16 --per-class 100 --warmup-steps 100 \
  --disc-start 2800 --checkpoint-every 100 --snapshot 1000 --snapshot 3000 --mixed-precision bf16 \
  ${STOP_AFTER:+--stop-after "$STOP_AFTER"} $(resume runs/cpu-long)
