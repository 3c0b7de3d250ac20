#!/usr/bin/env bash
# The control of training/denoise-ctx.sh: training/denoise-ae32-crop128.sh's end trained on exactly as
# that run trains it, without the image context (preset wide-dw-deep6-ae32), so that what the context
# adds is told apart from what 3,000 more batches from 1e-4 add.
# Run from the repository root, in the background; rerun the same line to resume from the checkpoint:
#   nohup training/denoise-ctx-control.sh >> training/denoise-ctx-control.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task denoise --preset wide-dw-deep6-ae32 \
  --init training/denoise-ae32-crop128.safetensors \
  --e2e-iterations 3000 --e2e-lr 0.0001 --loss charbonnier --batch 4 --crop 128 --min-steps 4 --max-steps 12 \
  --val-every 500 --checkpoint training/denoise-ctx-control.ckpt --log training/denoise-ctx-control.jsonl \
  --out training/denoise-ctx-control.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu \
  --precision bf16
