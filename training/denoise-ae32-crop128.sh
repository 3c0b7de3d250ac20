#!/usr/bin/env bash
# denoise-v9 (the end of training/denoise-ae32.sh, preset wide-dw-deep6-ae32) trained on with more
# context: 128x128 crops (batch 4, the pixels of the 64x64 batch 8 twice over), from 2e-4 on a
# cosine schedule over 8,000 batches, in bf16. The same change took the ae64 model to denoise-v10
# (+0.01 to +0.05 dB on the test sets); this run asks it of the default's architecture, where it
# costs no time at restore (issue 12).
# Run from the repository root, in the background; rerun the same line to resume from the checkpoint:
#   nohup training/denoise-ae32-crop128.sh >> training/denoise-ae32-crop128.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task denoise --preset wide-dw-deep6-ae32 \
  --init weights/denoise-v9.safetensors \
  --e2e-iterations 8000 --e2e-lr 0.0002 --loss charbonnier --batch 4 --crop 128 --min-steps 4 --max-steps 12 \
  --val-every 500 --checkpoint training/denoise-ae32-crop128.ckpt --log training/denoise-ae32-crop128.jsonl \
  --out training/denoise-ae32-crop128.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu \
  --precision bf16
