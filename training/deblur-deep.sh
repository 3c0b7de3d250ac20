#!/usr/bin/env bash
# A deeper decoder for deblurring (issue 12). deblur-v2.sh ran to its end and deblurs little
# (about +0.4 dB on Kodak24 at motion 7); 16 or 24 steps do no better than 8, and for denoising a
# rule twice as wide bought only +0.07 dB (training/denoise-w256.sh), so this run tries the cheap
# lever that denoise-deep.sh tries too: two more residual blocks in the decoder, at the skip's
# half resolution, where sharp detail has to be made (preset wide-dw-deep with a residual output;
# a few percent more time). Grown from deblur-v3 (the end of deblur-v2.sh), so that it starts
# exactly where that model is (LNCA.grow_from), then trained end to end with deblur-v2.sh's recipe
# (L1, T in [8, 16], Adam at 1e-3 on a cosine schedule). Run from the repository root, in the
# background; rerun the same line to resume from the checkpoint:
#   nohup training/deblur-deep.sh >> training/deblur-deep.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task deblur --preset wide-dw-deep --residual \
  --init weights/deblur-v3.safetensors \
  --e2e-iterations 30000 --e2e-lr 0.001 --loss l1 --batch 8 --crop 64 --min-steps 8 --max-steps 16 \
  --val-every 500 --checkpoint training/deblur-deep.ckpt --log training/deblur-deep.jsonl \
  --out training/deblur-deep.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu
