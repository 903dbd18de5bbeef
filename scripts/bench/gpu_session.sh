#!/usr/bin/env bash
# The GPU-only checks in one run (a lent GPU machine is short-lived, so everything goes in one command):
#   1. SkeletonCLIP + SKI-VLM training on CUDA with bf16 autocast, then zero-shot evaluation on CUDA;
#   2. lvlm_step*: scripts/bench/lvlm_step.py --mode gpu, fixed 556 tokens (7B-shaped LoRA step: ours vs HF
#      Llama + peft): as is, with compile + LoRA dropout 0 (_fast), and with Liger's fused kernels (_liger);
#   3. lvlm_mix*: --mode gpu-mix, 7B LoRA on a realistic length mix (400-2,000 tokens, 356 of them video):
#      ours packed (data.packing: flash-attn varlen when installed, else per-sample SDPA) against HF+PEFT
#      padded, tokens/s and peak memory; and the same with Liger (_liger);
#   4. generate: scripts/bench/generate.py --mode 7b at batch 1 and 16 (Captioner fast path vs plain HF
#      generate vs HF generate with a static cache, which transformers compiles itself on CUDA).
# The _liger steps exit with rc=3 when liger-kernel is not installed (the summary says so).
#
#   WORLD=data/world OUT=runs/gpu_session scripts/bench/gpu_session.sh
#   STEPS="lvlm_mix generate" scripts/bench/gpu_session.sh        # only some steps
#
# Needs a CUDA machine with the requirements installed (or, where nothing can be installed, wheels in .whl/:
# the script installs them into /tmp/site first). Every step has its own time limit and log under $OUT; a
# failed step does not stop the others. Prints a summary at the end.
set -u
OUT="${OUT:-runs/gpu_session}"
WORLD="${WORLD:-data/world}"
PY="${PY:-python3}"
STEPS="${STEPS:-skeleton_clip ski_vlm zero_shot lvlm_step lvlm_step_fast lvlm_step_liger lvlm_mix lvlm_mix_liger generate}"
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
import importlib.metadata as md
for dist in ("peft", "flash-attn", "liger-kernel"):
    try:
        print(dist, md.version(dist))
    except md.PackageNotFoundError:
        print(dist, "missing")
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
  data.root="$WORLD" model.teacher="$OUT/skeleton_clip/final" train.output_dir="$OUT/ski_vlm" \
  train.device=cuda train.precision=bf16 train.epochs=3
step zero_shot 90 "${CLI[@]}" eval zero-shot --world "$WORLD" --out "$OUT/zero_shot" --device cuda \
  --model skeleton_clip="$OUT/skeleton_clip/final" --model ski_vlm="$OUT/ski_vlm/final"
BENCH=("$PY" scripts/bench/lvlm_step.py)
step lvlm_step 200 "${BENCH[@]}" --mode gpu --steps 10 --warmup 3 --out "$OUT/lvlm_step.json"
step lvlm_step_fast 240 "${BENCH[@]}" --mode gpu --steps 10 --warmup 3 --compile --lora-dropout 0 \
  --out "$OUT/lvlm_step_fast.json"
step lvlm_step_liger 240 "${BENCH[@]}" --mode gpu --steps 10 --warmup 3 --compile --lora-dropout 0 --liger \
  --out "$OUT/lvlm_step_liger.json"
step lvlm_mix 240 "${BENCH[@]}" --mode gpu-mix --batch 8 --steps 6 --warmup 2 --lora-dropout 0 \
  --out "$OUT/lvlm_mix.json"
step lvlm_mix_liger 240 "${BENCH[@]}" --mode gpu-mix --batch 8 --steps 6 --warmup 2 --lora-dropout 0 --liger \
  --out "$OUT/lvlm_mix_liger.json"
step generate 200 "$PY" scripts/bench/generate.py --mode 7b --batch-sizes 1 16 --new-tokens 64 --repeats 2 \
  --out "$OUT/generate.json"

echo "--- summary"; cat "$OUT/summary.txt"
for f in $STEPS; do echo "--- $f (tail)"; tail -n 6 "$OUT/$f.log"; done
