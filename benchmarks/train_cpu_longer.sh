#!/usr/bin/env bash
# Issue: global words, item 5, a second session: train_cpu_long.sh's run (runs/cpu-long, 3,600 steps, schedule
# finished) continued on a longer schedule. A copy of it, runs/cpu-long-6200, is resumed with --steps 6200: the
# learning rate follows the 6,200-step cosine from step 3,600 (0.39 × --lr) down to 0, the GAN stays on, the data and
# every other setting are train_cpu_long.sh's. STOP_AFTER=N ends after step N; rerunning continues.
set -ex
cd "$(dirname "$0")/.."
export V2L_DATA="${V2L_DATA:-../shared/data}" V2L_THREADS=2
V2L=.venv/bin/v2l
if [ ! -d runs/cpu-long-6200 ]; then
  [ -f runs/cpu-long/final/model.safetensors ] || bash benchmarks/train_cpu_long.sh
  cp -r runs/cpu-long runs/cpu-long-6200.tmp && mv runs/cpu-long-6200.tmp runs/cpu-long-6200
fi
$V2L train --out runs/cpu-long-6200 --preset cpu --steps 6200 --batch-size 16 --per-class 100 --warmup-steps 100 \
  --disc-start 2800 --checkpoint-every 100 --snapshot 5000 --mixed-precision bf16 \
  ${STOP_AFTER:+--stop-after "$STOP_AFTER"} --resume
