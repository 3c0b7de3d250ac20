#!/usr/bin/env bash
# Six decoder blocks instead of two (issue 12). The two blocks of training/denoise-deep.sh bought
# more than twice the rule's width did (validation 33.4 dB and over, where the wider rule converged
# at 33.38 and denoise-v5 at 33.32) for a few percent more time: a block is two 3x3 convs of 16
# channels at half resolution, about 1,200 multiply-adds a pixel against the NCA's 48,000 at 8
# steps. So the decoder is where denoising is held back, and this run gives it four blocks more
# (preset wide-dw-deep6), grown from denoise-v6 (the end of denoise-deep.sh) so that it starts
# exactly there, then trained with the same recipe (T in [4, 12], Charbonnier, batch 8 of 64x64)
# on a shorter cosine schedule at half the learning rate: the new blocks start as the identity and
# need no warm restart's dip. Run from the repository root, in the background; rerun the same line
# to resume from the checkpoint:
#   nohup training/denoise-deep6.sh >> training/denoise-deep6.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task denoise --preset wide-dw-deep6 \
  --init weights/denoise-v6.safetensors \
  --e2e-iterations 15000 --e2e-lr 0.0005 --loss charbonnier --batch 8 --crop 64 --min-steps 4 --max-steps 12 \
  --val-every 500 --checkpoint training/denoise-deep6.ckpt --log training/denoise-deep6.jsonl \
  --out training/denoise-deep6.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu
