#!/usr/bin/env bash
# The shipped checkpoint (issue: global words, item 5), the successor of train_cpu_long.sh: the same data (the default
# codebook, all 100 images of each of the 160 training classes, 16,000), a network twice as wide (--ch 64, 12.19 M
# parameters; fp16 file 23.3 MiB, within 25 MB), batches of 64 for 4,690 steps (18.8 epochs), warm-up 200, the GAN
# from step 3,750 (80 % of the steps, as 2,800 of 3,600 before), bf16 autocast, the EfficientNet-Lite0 perceptual loss.
#
# On a machine with a CUDA GPU and the data folder, this script is the recipe: the `v2l train` command below, then
# ship_checkpoint.py (about 8 minutes of training on one H200). Here it ran on an NVIDIA H200 lent for 15 minutes,
# which cannot read ../shared: benchmarks/train_gpu.py packed the same inputs (checked pixel for pixel), trained with
# v2l's trainer there (`PYTHONPATH=src python3 benchmarks/train_gpu.py train .gpu /tmp/run --budget-s 420 --ch 64
# --batch-size 64 --num-workers 8 --check-pixels`, whose 70-step calibration chose the 4,690 steps) and brought the
# weights back (`collect /tmp/run $OUT`, then `unpack ... --run runs/gpu-ch64` here). docs/results.md has the numbers. STOP_AFTER=N ends after step N; rerunning continues from the newest checkpoint.
set -ex
cd "$(dirname "$0")/.."
export V2L_DATA="${V2L_DATA:-../shared/data}"
V2L=.venv/bin/v2l
resume() { [ -d "$1" ] && echo --resume; }  # continue a run this script started
$V2L train --out runs/gpu-ch64 --preset cpu --ch 64 --steps 4690 --batch-size 64 --warmup-steps 200 --disc-start 3750 \
  --per-class 100 --mixed-precision bf16 --perceptual effnet --checkpoint-every 1000 --snapshot 3750 \
  ${STOP_AFTER:+--stop-after "$STOP_AFTER"} $(resume runs/gpu-ch64)
.venv/bin/python benchmarks/ship_checkpoint.py runs/gpu-ch64 --script benchmarks/train_gpu.sh
