#!/usr/bin/env bash
# Is it the full-resolution end that holds deblurring back? The decoder works at half resolution and
# one transposed conv makes the pixels, while the blur's undoing is a matter of single pixels.
# deblur-v6 grown with a full-resolution head (preset wide-dw-deep6-ae32-head: two 3x3 convs that read
# the degraded image and the decoder's result side by side, the second at zero, so the start is
# deblur-v6 exactly), trained on exactly as deblur-ctx-control.sh trains deblur-v6 without one
# (128x128 crops blurred with the photo around them, from 1e-4 over 3,000 batches): the difference of
# the two is the head's.
# The preset (and the head, model.FullResHead) were taken out again after this measurement found the
# head worth about 0.01 dB (weights/README.md); to run this again, put them back from commit 24367a4.
# Run from the repository root, in the background; rerun the same line to resume from the checkpoint:
#   nohup training/deblur-head.sh >> training/deblur-head.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task deblur --preset wide-dw-deep6-ae32-head --residual \
  --init training/deblur-ae32-crop128.safetensors \
  --e2e-iterations 3000 --e2e-lr 0.0001 --loss l1 --degrade-before-crop --batch 4 --crop 128 --min-steps 8 --max-steps 16 \
  --val-every 500 --checkpoint training/deblur-head.ckpt --log training/deblur-head.jsonl \
  --out training/deblur-head.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu --precision bf16
