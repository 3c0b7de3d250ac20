#!/usr/bin/env bash
# Do more NCA steps help deblurring? Every deblur model so far trained at T in [8, 16] and runs 12; a
# blur of 15 to 21 pixels spreads over 4 to 5 latent cells, and each step reaches one cell further.
# deblur-v6 trained on exactly as deblur-ctx-control.sh trains it (128x128 crops blurred with the
# photo around them, from 1e-4 over 3,000 batches) but at T in [12, 24]: the difference of the two
# is the steps' (at their time: about 1.5x a batch, and the restore's steps as the run chooses them).
# Run from the repository root, in the background; rerun the same line to resume from the checkpoint:
#   nohup training/deblur-steps.sh >> training/deblur-steps.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task deblur --preset wide-dw-deep6-ae32 --residual \
  --init training/deblur-ae32-crop128.safetensors \
  --e2e-iterations 3000 --e2e-lr 0.0001 --loss l1 --degrade-before-crop --batch 4 --crop 128 --min-steps 12 --max-steps 24 \
  --val-every 500 --checkpoint training/deblur-steps.ckpt --log training/deblur-steps.jsonl \
  --out training/deblur-steps.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu --precision bf16
