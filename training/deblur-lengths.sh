#!/usr/bin/env bash
# A diagnostic, not a model to ship: what holds deblurring back at motion length 7? deblur-v6 gains
# +0.8 dB there on the validation photos and +0.21 on Kodak24, where deconvolution given the true
# kernel gains +0.74 (Wiener) to +1.74 (Richardson-Lucy). Either the blind model cannot tell a
# short blur from the others it was trained on (lengths 3 to 21), or it cannot undo the blur even
# knowing it. This trains deblur-v6 on exactly as deblur-ctx-control.sh does (3,000 batches from
# 1e-4), with every motion blur's length drawn from [FIRST, LAST] instead (any angle; defocus as
# before, 30% of the crops), and is scored on the validation photos against the control (motion 7:
# 30.011 dB): `training/deblur-lengths.sh 7 7` knows the length; `3 11` knows only that it is short.
# The length range is the only change, set from here (degrade.TRAINING_MOTION_LENGTHS), not a
# `lnca train` option: the tool's deblurrer is blind.
# Run from the repository root, in the background; rerun the same line to resume from the checkpoint:
#   nohup training/deblur-lengths.sh FIRST LAST >> training/deblur-lengths-FIRST-LAST.out 2>&1 &
# The photo pool is rebuilt, not kept: POOL (default /work/data/pool/train) must hold it first.
set -euo pipefail
cd "$(dirname "$0")/.."
FIRST=$1 LAST=$2
RUN=training/deblur-lengths-$FIRST-$LAST
POOL=${POOL:-/work/data/pool/train}
THREADS=${THREADS:-2}
exec python -c "import lnca_cli.degrade as d; d.TRAINING_MOTION_LENGTHS = ($FIRST, $LAST); from lnca_cli.cli import app; app()" \
  train --data "$POOL" --task deblur --preset wide-dw-deep6-ae32 --residual \
  --init training/deblur-ae32-crop128.safetensors \
  --e2e-iterations 3000 --e2e-lr 0.0001 --loss l1 --degrade-before-crop --batch 4 --crop 128 --min-steps 8 --max-steps 16 \
  --val-every 500 --checkpoint "$RUN.ckpt" --log "$RUN.jsonl" \
  --out "$RUN.safetensors" --minutes "${MINUTES:-150}" --threads "$THREADS" --device cpu --precision bf16
