#!/usr/bin/env bash
# The long training run of denoise-masked-v2 (issue 12): phase 3 (end to end) from denoise-masked-v1
# with the recipe of the denoise run (training/run.sh), resumable. Run from the repository root, in
# the background; rerun the same line to resume from the checkpoint:
#   nohup training/denoise-masked-v2.sh >> training/denoise-masked-v2.out 2>&1 &
# The schedule: 15,000 batches (planned over 20,000, shortened at batch 3,500 so that it anneals within
# its first session, leaving the end of the session for the benchmarks).
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-1}
exec lnca train --data "$POOL" --task denoise-masked --preset wide-dw \
  --init weights/denoise-masked.safetensors \
  --e2e-iterations 15000 --e2e-lr 0.001 --loss mse --batch 8 --crop 64 --min-steps 8 --max-steps 16 \
  --val-every 500 --checkpoint training/denoise-masked-v2.ckpt --log training/denoise-masked-v2.jsonl \
  --out training/denoise-masked-v2.safetensors --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu
