#!/usr/bin/env bash
# The half-resolution stream twice as wide, for denoising (issue 12). Every decoder lever tried so far
# worked inside a 16-channel stream at half resolution (skip, merge and six residual blocks), which
# must carry the image itself: 12 values per position (2x2 pixels x 3 colours) in 16 channels. Depth
# bought +0.24 dB of validation, the blocks' inner width +0.04; this run widens the stream to 32
# channels (preset wide-dw-deep6-ae32, blocks 64 wide inside as before: about 3% more restore time
# than denoise-v8 at 1 thread in bf16). It grows denoise-v8 exactly (grow_layer: the new channels
# start read by no one) and trains with v8's recipe (Charbonnier, T in [4, 12], batch 8 of 64x64,
# cosine from 5e-4 over 15,000 batches), in bf16.
# Run from the repository root, in the background; rerun the same line to resume from the checkpoint:
#   nohup training/denoise-ae32.sh >> training/denoise-ae32.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task denoise --preset wide-dw-deep6-ae32 \
  --init weights/denoise-v8.safetensors \
  --e2e-iterations 15000 --e2e-lr 0.0005 --loss charbonnier --batch 8 --crop 64 --min-steps 4 --max-steps 12 \
  --val-every 500 --checkpoint training/denoise-ae32.ckpt --log training/denoise-ae32.jsonl \
  --out training/denoise-ae32.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu --precision bf16
