#!/usr/bin/env bash
# Does a per-image blur descriptor help deblurring? deblur-v6 (training/deblur-ae32-crop128.sh's end)
# grown with an image context (preset wide-dw-deep6-ae32-ctx: features of every latent cell averaged
# over the whole image, a bias of the rule's expanded channels; it starts at zero, so the start is
# deblur-v6 exactly), trained on as deblur-v6 was (128x128 crops blurred with the photo around them)
# from 1e-4 on a cosine schedule over 3,000 batches, the context at 10x (train.CONTEXT_LR_SCALE; a
# first try at 1x moved its last layer by 0.001 in 1,000 batches). Its control, deblur-ctx-control.sh,
# trains deblur-v6 the same way without the context: the difference of the two is the context's.
# The preset (and the image context) lived at commit 447fb68 only: they were taken out again after
# this measurement found the context worth about 0.01 dB (weights/README.md); run it from there.
# Run from the repository root, in the background; rerun the same line to resume from the checkpoint:
#   nohup training/deblur-ctx.sh >> training/deblur-ctx.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task deblur --preset wide-dw-deep6-ae32-ctx --residual \
  --init training/deblur-ae32-crop128.safetensors \
  --e2e-iterations 3000 --e2e-lr 0.0001 --loss l1 --degrade-before-crop --batch 4 --crop 128 --min-steps 8 --max-steps 16 \
  --val-every 500 --checkpoint training/deblur-ctx.ckpt --log training/deblur-ctx.jsonl \
  --out training/deblur-ctx.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu --precision bf16
