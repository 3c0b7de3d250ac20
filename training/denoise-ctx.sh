#!/usr/bin/env bash
# Does a per-image descriptor help blind denoising (the noise's level is the same over a photo, which
# a cell can only guess from its neighbourhood)? training/denoise-ae32-crop128.sh's end (denoise-v9 on
# 128x128 crops, converged: validation 33.72) grown with an image context (preset
# wide-dw-deep6-ae32-ctx; it starts at zero, so the start is that model exactly) and trained on as it
# was, from 1e-4 on a cosine schedule over 3,000 batches (the context at 10x: train.CONTEXT_LR_SCALE).
# The preset (and the image context) lived at commit 447fb68 only: they were taken out again after
# this measurement found the context worth about 0.01 dB (weights/README.md); run it from there.
# Run from the repository root, in the background; rerun the same line to resume from the checkpoint:
#   nohup training/denoise-ctx.sh >> training/denoise-ctx.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task denoise --preset wide-dw-deep6-ae32-ctx \
  --init training/denoise-ae32-crop128.safetensors \
  --e2e-iterations 3000 --e2e-lr 0.0001 --loss charbonnier --batch 4 --crop 128 --min-steps 4 --max-steps 12 \
  --val-every 500 --checkpoint training/denoise-ctx.ckpt --log training/denoise-ctx.jsonl \
  --out training/denoise-ctx.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu \
  --precision bf16
