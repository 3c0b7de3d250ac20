#!/usr/bin/env bash
# The half-resolution stream twice as wide, for deblurring (issue 12): training/denoise-ae32.sh's
# change on the deblur side. Deblurring must make detail the blurred skip does not hold, in a
# 16-channel stream that also carries the image; this run grows deblur-v5 exactly into preset
# wide-dw-deep6-ae32 (32 channels, blocks 64 wide inside as before) and trains with v5's recipe
# (residual output, L1, T in [8, 16], batch 8 of 64x64, cosine from 5e-4), in bf16, over 15,000
# batches, with one change: --degrade-before-crop (each crop is blurred with the photo around it,
# then cut to 64x64, not blurred alone with reflections at its sides; its arm in
# training/arms/deblur.md: +0.03 and +0.08 dB on the validation photos at motion 7 and 15).
# Run from the repository root, in the background; rerun the same line to resume from the checkpoint:
#   nohup training/deblur-ae32.sh >> training/deblur-ae32.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task deblur --preset wide-dw-deep6-ae32 --residual \
  --init weights/deblur-v5.safetensors \
  --e2e-iterations 15000 --e2e-lr 0.0005 --loss l1 --degrade-before-crop --batch 8 --crop 64 --min-steps 8 --max-steps 16 \
  --val-every 500 --checkpoint training/deblur-ae32.ckpt --log training/deblur-ae32.jsonl \
  --out training/deblur-ae32.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu --precision bf16
