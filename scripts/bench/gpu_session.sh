#!/usr/bin/env bash
# The GPU-only checks in one run (a lent GPU machine is short-lived, so everything goes in one command):
#   1. SkeletonCLIP + SKI-VLM training on CUDA with bf16 autocast, then zero-shot evaluation on CUDA;
#   2. scripts/bench/lvlm_step.py --mode gpu   (7B-shaped LoRA step: ours vs HF Llama + peft);
#   3. scripts/bench/generate.py --mode 7b     (Captioner fast path vs plain HF generate).
#
#   WORLD=data/world OUT=runs/gpu_session scripts/bench/gpu_session.sh
#   STEPS="lvlm_step generate" scripts/bench/gpu_session.sh        # only some steps
#
# Needs a CUDA machine with the requirements installed (or, where nothing can be installed, wheels in .whl/:
# the script installs them into /tmp/site first). Every step has its own time limit and log under $OUT; a
# failed step does not stop the others. Prints a summary at the end.
set -u
OUT="${OUT:-runs/gpu_session}"
WORLD="${WORLD:-data/world}"
PY="${PY:-python3}"
STEPS="${STEPS:-skeleton_clip ski_vlm zero_shot lvlm_step generate}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
CLI=("$PY" -m ski_lvlm.cli)

"$PY" - > "$OUT/env.txt" 2>&1 <<'EOF'
import torch, transformers, open_clip
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))
print("transformers", transformers.__version__, "open_clip", open_clip.__version__)
try:
    import peft; print("peft", peft.__version__)
except ImportError:
    print("peft missing")
EOF
cat "$OUT/env.txt"

step() {  # step NAME SECONDS CMD...
  local name=$1 limit=$2; shift 2
  case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "step $name: rc=$rc in $(( $(date +%s) - t0 ))s" | tee -a "$OUT/summary.txt"
}

step skeleton_clip 150 "${CLI[@]}" train skeleton-clip --config train/configs/skeleton_clip/tiny_cpu.yaml \
  data.root="$WORLD" train.output_dir="$OUT/skeleton_clip" train.device=cuda train.precision=bf16 train.epochs=3
step ski_vlm 150 "${CLI[@]}" train ski-vlm --config train/configs/ski_vlm/tiny_cpu.yaml \
  data.root="$WORLD" model.teacher="$OUT/skeleton_clip/model" train.output_dir="$OUT/ski_vlm" \
  train.device=cuda train.precision=bf16 train.epochs=3
step zero_shot 90 "${CLI[@]}" eval zero-shot --world "$WORLD" --out "$OUT/zero_shot" --device cuda \
  --model skeleton_clip="$OUT/skeleton_clip/model" --model ski_vlm="$OUT/ski_vlm/model"
step lvlm_step 200 "$PY" scripts/bench/lvlm_step.py --mode gpu --steps 10 --warmup 3 --out "$OUT/lvlm_step.json"
step generate 200 "$PY" scripts/bench/generate.py --mode 7b --batch-sizes 1 16 --new-tokens 64 --repeats 2 \
  --out "$OUT/generate.json"

echo "--- summary"; cat "$OUT/summary.txt"
for f in $STEPS; do echo "--- $f (tail)"; tail -n 6 "$OUT/$f.log"; done
