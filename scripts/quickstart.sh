#!/usr/bin/env bash
# The main job, end to end on the synthetic ADL world with tiny models on CPU.
#   scripts/quickstart.sh                 # results under runs/quickstart
#   OUT=/tmp/qs SEED=1 scripts/quickstart.sh
# Creates .venv if missing and installs the pinned requirements first (see scripts/_env.sh).
source "$(dirname "$0")/_env.sh"
OUT="${OUT:-runs/quickstart}"
SEED="${SEED:-0}"
WORLD="$OUT/world"
mkdir -p "$OUT"
START=$(date +%s)
stage() { echo; echo "=== [$(( $(date +%s) - START ))s] $*"; }

stage "1. synthetic ADL world -> $WORLD"
ski-lvlm data synthetic --out "$WORLD" --seed "$SEED" --overwrite
ski-lvlm data montage "$WORLD" --out "$OUT/montage.png"

echo
echo "=== done in $(( $(date +%s) - START ))s"
echo "world:    $WORLD (summary: $WORLD/world.json)"
echo "montage:  $OUT/montage.png"
