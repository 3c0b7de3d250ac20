#!/usr/bin/env bash
# The end of training/deblur-ae32.sh (preset wide-dw-deep6-ae32, converged on 64x64 crops) trained
# on with more context: 128x128 crops (batch 4, the pixels of the 64x64 batch 8 twice over), still
# blurred with the photo around them (--degrade-before-crop), from 2e-4 on a cosine schedule over
# 8,000 batches, in bf16. A blur of up to 21 pixels spreads over a third of a 64x64 crop, so the
# blind model sees few whole streaks to read the kernel from; denoise-crop128.sh gained +0.04 dB of
# validation from the same change for denoising (issue 12).
# Run from the repository root, in the background; rerun the same line to resume from the checkpoint:
#   nohup training/deblur-ae32-crop128.sh >> training/deblur-ae32-crop128.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task deblur --preset wide-dw-deep6-ae32 --residual \
  --init training/deblur-ae32.safetensors \
  --e2e-iterations 8000 --e2e-lr 0.0002 --loss l1 --degrade-before-crop --batch 4 --crop 128 --min-steps 8 --max-steps 16 \
  --val-every 500 --checkpoint training/deblur-ae32-crop128.ckpt --log training/deblur-ae32-crop128.jsonl \
  --out training/deblur-ae32-crop128.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu --precision bf16
