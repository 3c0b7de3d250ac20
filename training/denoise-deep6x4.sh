#!/usr/bin/env bash
# Decoder blocks four times wider inside (issue 12). Six blocks bought more than two
# (training/denoise-deep6.sh: validation +0.24 dB over denoise-v5, two blocks +0.18), but the
# return of depth fell; so this run widens the same six blocks instead: each block's inner conv goes
# from 16 to 64 channels (preset wide-dw-deep6x4). With bf16 on the CPU that costs 2-9% more
# restore time (the NCA's matmuls dominate). Grown from denoise-v7 (the end of denoise-deep6.sh)
# so that it starts exactly there (RefineBlock.grow_from), then trained with the same recipe (T in
# [4, 12], Charbonnier, batch 8 of 64x64) on a cosine schedule from 5e-4 over 15,000 batches, as
# denoise-deep6.sh was. Run from the repository root, in the background; rerun the same line to
# resume from the checkpoint:
#   nohup training/denoise-deep6x4.sh >> training/denoise-deep6x4.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task denoise --preset wide-dw-deep6x4 \
  --init weights/denoise-v7.safetensors \
  --e2e-iterations 15000 --e2e-lr 0.0005 --loss charbonnier --batch 8 --crop 64 --min-steps 4 --max-steps 12 \
  --val-every 500 --checkpoint training/denoise-deep6x4.ckpt --log training/denoise-deep6x4.jsonl \
  --out training/denoise-deep6x4.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu
