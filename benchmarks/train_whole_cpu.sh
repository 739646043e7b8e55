#!/usr/bin/env bash
# The shipped checkpoint (issue: global words, item 5), fourth stage, after benchmarks/train_decoder_cpu.sh: the whole
# model (encoder, projector, decoder) fine-tuned on 2 cores from the checkpoint that script ships (`--init cpu`).
# After two decoder-only stages the decoder had little left to gain on fixed tokens (the second gave a quarter of the
# first's gain); here the encoder moves too, so each image's local tokens may change (its global tokens, chosen by
# the VL model, do not). Loss: the pixel MSE plus the quantiser's loss (§3.2), perceptual and GAN weights 0. A 48-step
# pilot (benchmarks/pilot_finetune.py, on the training classes' val images) gained +0.09 dB this way at 1e-4 where the
# decoder alone lost 0.30 dB. Adam at 1e-4, 100 warm-up steps, cosine to 0 over 1,000 steps of 32 (2 epochs), bf16
# autocast, all 16,000 training-class images; about 1 h 45 min on 2 older cores (5.2 images/s), 50 min on newer ones.
# docs/results.md has the numbers. STOP_AFTER=N ends after step N; rerunning continues.
set -ex
cd "$(dirname "$0")/.."
export V2L_DATA="${V2L_DATA:-../shared/data}"
V2L=.venv/bin/v2l
resume() { [ -d "$1" ] && echo --resume; }  # continue a run this script started
$V2L train --out runs/whole-ft --init cpu --steps 1000 --batch-size 32 --lr 1e-4 --warmup-steps 100 \
  --perceptual-weight 0 --gan-weight 0 --per-class 100 --mixed-precision bf16 --checkpoint-every 100 \
  --snapshot 500 --snapshot 750 ${STOP_AFTER:+--stop-after "$STOP_AFTER"} $(resume runs/whole-ft)
.venv/bin/python benchmarks/ship_checkpoint.py runs/whole-ft --script benchmarks/train_whole_cpu.sh
