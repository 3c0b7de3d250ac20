#!/usr/bin/env bash
# Larger crops at the end of training (issue 12). Every denoise run so far trained on 64x64 crops:
# 16x16 latent cells, so at 8 steps (a reach of 8 cells) most of a crop lies within reach of its
# border, where the cells see reflected padding, not more photo; the test photos (481x321 to
# 768x512) have few borders. The recipe comparison's 128x128 arm (batch 2) was 0.19 dB behind in a
# model's first few hundred batches, where more batches matter most; this run asks whether a
# converged model gains from the context instead: denoise-v8 (the end of denoise-deep6x4.sh)
# trained on 128x128 crops, batch 4 (twice the pixels of a 64x64 batch of 8), from 2e-4 on a
# cosine schedule over 6,000 batches, in bf16, otherwise v8's recipe (T in [4, 12], Charbonnier).
# Run from the repository root, in the background; rerun the same line to resume from the
# checkpoint:
#   nohup training/denoise-crop128.sh >> training/denoise-crop128.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task denoise --preset wide-dw-deep6x4 \
  --init weights/denoise-v8.safetensors \
  --e2e-iterations 6000 --e2e-lr 0.0002 --loss charbonnier --batch 4 --crop 128 --min-steps 4 --max-steps 12 \
  --val-every 500 --checkpoint training/denoise-crop128.ckpt --log training/denoise-crop128.jsonl \
  --out training/denoise-crop128.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu \
  --precision bf16
