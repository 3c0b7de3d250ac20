#!/usr/bin/env bash
# The end of training/denoise-ae64.sh (preset wide-dw-deep8-ae64, converged on 64x64 crops) trained
# on with more context: 128x128 crops (batch 4, the pixels of the 64x64 batch 8 twice over), from
# 2e-4 on a cosine schedule over 10,000 batches, in bf16. denoise-crop128.sh did this for
# denoise-v8 over 6,000 batches and gained +0.04 dB of validation; this run is longer and starts
# from the wider model (issue 12).
# Run from the repository root, in the background; rerun the same line to resume from the checkpoint:
#   nohup training/denoise-ae64-crop128.sh >> training/denoise-ae64-crop128.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task denoise --preset wide-dw-deep8-ae64 \
  --init training/denoise-ae64.safetensors \
  --e2e-iterations 10000 --e2e-lr 0.0002 --loss charbonnier --batch 4 --crop 128 --min-steps 4 --max-steps 12 \
  --val-every 500 --checkpoint training/denoise-ae64-crop128.ckpt --log training/denoise-ae64-crop128.jsonl \
  --out training/denoise-ae64-crop128.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu \
  --precision bf16
