#!/usr/bin/env bash
# A diagnostic, not a model to ship: how much would a denoiser gain from knowing the noise level?
# training/deblur-lengths.sh found that knowing a blur's length is worth +1 dB at motion 7; the
# denoise targets miss by 0.1-0.4 dB, and FFDNet-style denoisers are told the level (a noise map).
# This trains the end of denoise-ae32-crop128.sh on exactly as denoise-ctx-control.sh does (3,000
# batches from 1e-4, 128x128 crops), but with every crop's noise Gaussian of sigma SIGMA (0-255)
# instead of the blind mix (Gaussian sigma 0-50 or camera noise), and is scored on the validation
# photos at that sigma against the control. The noise is the only change, set from here
# (degrade.random_noise), not a `lnca train` option: the tool's denoiser is blind.
# Run from the repository root, in the background; rerun the same line to resume from the checkpoint:
#   nohup training/denoise-sigma.sh SIGMA >> training/denoise-sigma-SIGMA.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
SIGMA=$1
RUN=training/denoise-sigma-$SIGMA
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-2}
exec python -c "import lnca_cli.degrade as d; d.random_noise = lambda x, g: d.gaussian_noise(x, float($SIGMA), g); from lnca_cli.cli import app; app()" \
  train --data "$POOL" --task denoise --preset wide-dw-deep6-ae32 \
  --init training/denoise-ae32-crop128.safetensors \
  --e2e-iterations 3000 --e2e-lr 0.0001 --loss charbonnier --batch 4 --crop 128 --min-steps 4 --max-steps 12 \
  --val-every 500 --checkpoint "$RUN.ckpt" --log "$RUN.jsonl" \
  --out "$RUN.safetensors" --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu --precision bf16
