#!/usr/bin/env bash
# The three baselines with the shipped V2L checkpoint's recipe (benchmarks/train_cpu.sh: same preset, data, steps,
# batch, schedule; --vl conse: the top-T 10 codebook they started with), for the side-by-side report in
# docs/results.md ("Baselines"). Resumable: rerun to continue.
set -ex
cd "$(dirname "$0")/.."
export V2L_DATA="${V2L_DATA:-../shared/data}" V2L_THREADS="${V2L_THREADS:-2}"
V2L=.venv/bin/v2l
COMMON="--vl conse --preset cpu --steps 1000 --batch-size 16 --per-class 50 --warmup-steps 50 --disc-start 700 --checkpoint-every 100 --snapshot 300"
for model in ${MODELS:-vqgan-llm spae lqae}; do
  extra=""
  [ "$model" = spae ] && extra="--lecam-weight 1e-4"  # SPAE §4.1's φ; its other weights stay the common recipe's
  resume=""
  [ -d "runs/$model" ] && resume="--resume"  # continue a run this script started
  $V2L train --out "runs/$model" --model "$model" $COMMON $extra $resume
done
