#!/usr/bin/env bash
# The control of training/deblur-ctx.sh: deblur-v6 trained on exactly as that run trains it, without
# the image context (preset wide-dw-deep6-ae32), so that what the context adds is told apart from
# what 3,000 more batches from 1e-4 add.
# Run from the repository root, in the background; rerun the same line to resume from the checkpoint:
#   nohup training/deblur-ctx-control.sh >> training/deblur-ctx-control.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task deblur --preset wide-dw-deep6-ae32 --residual \
  --init training/deblur-ae32-crop128.safetensors \
  --e2e-iterations 3000 --e2e-lr 0.0001 --loss l1 --degrade-before-crop --batch 4 --crop 128 --min-steps 8 --max-steps 16 \
  --val-every 500 --checkpoint training/deblur-ctx-control.ckpt --log training/deblur-ctx-control.jsonl \
  --out training/deblur-ctx-control.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu --precision bf16
