#!/usr/bin/env bash
# A deeper decoder for denoising (issue 12). Neither more steps (Kodak24 sigma 25: 8 steps 30.77 dB,
# 16 30.75) nor a rule twice as wide (training/denoise-w256.sh: validation 33.37 dB against
# denoise-v5's 33.32) buys much, so the NCA is not what holds denoising back; what is left is the
# decoder, which turns the latent and the noisy skip into pixels in two 3x3 layers. This run gives
# it two more blocks at the skip's resolution (preset wide-dw-deep, model.RefineBlock; about 8% more
# parameters and a few percent more time), grown from denoise-v5 so that it starts exactly where v5
# is (LNCA.grow_from), then trained end to end with v5's recipe (T in [4, 12], Charbonnier, Adam at
# 1e-3 on a cosine schedule). Run from the repository root, in the background; rerun the same line
# to resume from the checkpoint:
#   nohup training/denoise-deep.sh >> training/denoise-deep.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task denoise --preset wide-dw-deep \
  --init weights/denoise-v5.safetensors \
  --e2e-iterations 20000 --e2e-lr 0.001 --loss charbonnier --batch 8 --crop 64 --min-steps 4 --max-steps 12 \
  --val-every 500 --checkpoint training/denoise-deep.ckpt --log training/denoise-deep.jsonl \
  --out training/denoise-deep.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu
