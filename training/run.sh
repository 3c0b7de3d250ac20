#!/usr/bin/env bash
# The long training run of denoise-v2 (issue 12): phase 3 (end to end) from denoise-v1, resumable.
# Run from the repository root, in the background; rerun the same line to resume from the checkpoint:
#   nohup training/run.sh >> training/denoise-v2.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}  # one core for the run, one for everything else on a 2-core machine
exec lnca train --data "$POOL" --task denoise --preset wide-dw \
  --init weights/denoise.safetensors \
  --e2e-iterations 40000 --e2e-lr 0.001 --loss mse --batch 8 --crop 64 --min-steps 8 --max-steps 16 \
  --val-every 500 --checkpoint training/denoise-v2.ckpt --log training/denoise-v2.jsonl \
  --out training/denoise-v2.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu
