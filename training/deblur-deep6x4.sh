#!/usr/bin/env bash
# Six decoder blocks, four times wider inside, for deblurring (issue 12). The two blocks of
# training/deblur-deep.sh lifted validation by 0.4 dB over deblur-v3 (29.67 -> 30.0 and more), the
# most any change has bought deblurring, and for denoising six blocks bought more than two; so this
# run takes the decoder further the same way: preset wide-dw-deep6x4 with a residual output, grown
# from the end of deblur-deep.sh (the new blocks and channels start unused, so it starts exactly
# there; LNCA.grow_from), trained with that run's recipe (L1, T in [8, 16], batch 8 of 64x64) on a
# cosine schedule from 5e-4 over 20,000 batches: half the learning rate, as for denoise-deep6.sh,
# since nothing new needs a warm restart. It is the first run in bf16 (--precision bf16: matmuls and
# convs in bf16 on the CPU's AMX units, weights and optimiser in fp32; about 1.5x the batches per
# CPU-second of fp32 for this model), which is also the precision lnca restores in on this CPU.
# Run from the repository root, in the background; rerun
# the same line to resume from the checkpoint:
#   nohup training/deblur-deep6x4.sh >> training/deblur-deep6x4.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task deblur --preset wide-dw-deep6x4 --residual \
  --init training/deblur-deep.safetensors \
  --e2e-iterations 20000 --e2e-lr 0.0005 --loss l1 --batch 8 --crop 64 --min-steps 8 --max-steps 16 \
  --val-every 500 --checkpoint training/deblur-deep6x4.ckpt --log training/deblur-deep6x4.jsonl \
  --out training/deblur-deep6x4.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu --precision bf16
