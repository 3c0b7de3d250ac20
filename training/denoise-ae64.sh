#!/usr/bin/env bash
# The half-resolution stream wider again, for denoising (issue 12). Doubling it from 16 to 32
# channels (training/denoise-ae32.sh -> denoise-v9) gave +0.09 dB of validation, the most of any
# decoder change since its depth; this run doubles it again to 64 channels and adds two blocks
# (preset wide-dw-deep8-ae64: eight blocks of 64 -> 64 -> 64; about 1.15x v9's restore time at 1
# thread in bf16), grown exactly from denoise-v9, with v9's recipe (Charbonnier, T in [4, 12],
# batch 8 of 64x64, cosine from 5e-4 over 15,000 batches), in bf16.
# Run from the repository root, in the background; rerun the same line to resume from the checkpoint:
#   nohup training/denoise-ae64.sh >> training/denoise-ae64.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task denoise --preset wide-dw-deep8-ae64 \
  --init weights/denoise-v9.safetensors \
  --e2e-iterations 15000 --e2e-lr 0.0005 --loss charbonnier --batch 8 --crop 64 --min-steps 4 --max-steps 12 \
  --val-every 500 --checkpoint training/denoise-ae64.ckpt --log training/denoise-ae64.jsonl \
  --out training/denoise-ae64.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu --precision bf16
