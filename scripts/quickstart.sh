#!/usr/bin/env bash
# The main job, end to end on the synthetic ADL world on CPU, with real small pretrained weights
# (SmolLM2-135M-Instruct as the LLM, all-MiniLM-L6-v2 as the zero-shot models' text tower):
#   data -> SkeletonCLIP -> SKI-VLM -> zero-shot table -> LVLM video tower ->
#   SKI-LVLM LoRA instruction tuning with skeleton injection -> caption/QA eval + probe + report -> export
#
#   scripts/quickstart.sh                  # results under runs/quickstart (9.5-17 min on 2 idle CPU cores, by the day's CPU speed; README)
#   OUT=/tmp/qs SEED=1 scripts/quickstart.sh   # SEED picks the synthetic world; training seeds are in the YAMLs
#
# Creates .venv if missing and installs the pinned requirements first (see scripts/_env.sh).
# Every stage is an ordinary `ski-lvlm` command: copy any line to rerun one stage. Comparisons that need
# several runs live in their own scripts: ViFi-CLIP vs SKI-VLM over seeds and protocols with CIs
# (scripts/ski_ablation.sh, scripts/zero_shot_seeds.sh); one seed of each would not tell them apart.
source "$(dirname "$0")/_env.sh"
OUT="${OUT:-runs/quickstart}"
SEED="${SEED:-0}"
WORLD="$OUT/world"
mkdir -p "$OUT"
START=$(date +%s)
stage() { echo; echo "=== [$(( $(date +%s) - START ))s] $*"; }

python scripts/bench/cpu_ref.py  # this machine's matmul speed: wall times below are only comparable next to it

stage "0. real weights: SmolLM2-135M-Instruct GGUF -> Hugging Face folder (once; later runs reuse it)"
ski-lvlm models prepare smollm2-135m   # prints its folder last; model.llm takes the name, that folder or a hub id

stage "1. synthetic ADL world -> $WORLD"
ski-lvlm data synthetic --out "$WORLD" --seed "$SEED" --overwrite
ski-lvlm data montage "$WORLD" --out "$OUT/montage.png"

stage "2. SkeletonCLIP (phase 1): skeleton <-> class text (MiniLM), base classes only"
ski-lvlm train skeleton-clip --config train/configs/skeleton_clip/tiny_cpu.yaml \
  data.root="$WORLD" train.output_dir="$OUT/skeleton_clip"

stage "3. SKI-VLM (phase 2): video branch trained together with the SkeletonCLIP teacher"
ski-lvlm train ski-vlm --config train/configs/ski_vlm/tiny_cpu.yaml \
  data.root="$WORLD" model.teacher="$OUT/skeleton_clip/final" train.output_dir="$OUT/ski_vlm"

stage "4. zero-shot action recognition on the unseen classes (video only for SKI-VLM)"
ski-lvlm eval zero-shot --world "$WORLD" --out "$OUT/zero_shot" \
  --model skeleton_clip="$OUT/skeleton_clip/final" --model ski_vlm="$OUT/ski_vlm/final"
cat "$OUT/zero_shot/results.md"

stage "5. the LVLM's video tower: a small CNN on the motion crop, all 20 classes of the training subjects"
ski-lvlm train ski-vlm --config train/configs/ski_vlm/tiny_cpu_lvlm_tower.yaml \
  data.root="$WORLD" train.output_dir="$OUT/lvlm_tower"

stage "6. Charades-format caption/QA sets from the world's test split"
ski-lvlm data charades --csv "$WORLD/Charades_v1_test.csv" --classes "$WORLD/Charades_v1_classes.txt" \
  --videos "$WORLD/videos" --out "$OUT/charades" --overwrite

stage "7. SKI-LVLM instruct: SmolLM2-135M + LoRA, projectors trained, skeleton tokens injected with p=0.5"
ski-lvlm train lvlm --config train/configs/lvlm/instruct_smol.yaml train.output_dir="$OUT/lvlm_instruct" \
  data.train_json="$WORLD/instructions_train.json" \
  model.video_encoder="ski_vlm:$OUT/lvlm_tower/final" model.skeleton_encoder="skeleton_clip:$OUT/skeleton_clip/final"

stage "8. evaluate everything (zero-shot, probe, captions/QA from video only) and write the report"
# bf16 generation where the CPU has AMX / AVX512-BF16 (about 2x faster, other greedy outputs); fp32 elsewhere,
# where bf16 matmuls are emulated and generation ran 3x slower than the README's fp32 figure (README: the quickstart)
GEN_DTYPE=$(python -c "import torch; from ski_lvlm.utils.runtime import resolve_precision as r; print(r('bf16_native', torch.device('cpu')))")
ski-lvlm eval all --run "$OUT" --batch-size 32 --dtype "$GEN_DTYPE"

stage "9. export the instruct run (PEFT adapter + projectors + processor, reload-checked) and caption with it"
ski-lvlm export --run "$OUT/lvlm_instruct" --out "$OUT/export" --overwrite
# 8 videos of the held-out test subjects (test.csv): the model has never seen these people
ski-lvlm caption $(tail -n +2 "$WORLD/test.csv" | awk -F, 'NR % 15 == 1 {print $1}' | sed "s#^#$WORLD/#") \
  --model "$OUT/export" --out "$OUT/captions.jsonl" --dtype "$GEN_DTYPE"
head -n 3 "$OUT/captions.jsonl"

echo
echo "=== done in $(( $(date +%s) - START ))s"
python scripts/bench/cpu_ref.py
echo "world:       $WORLD (summary: $WORLD/world.json; montage: $OUT/montage.png)"
echo "zero-shot:   $OUT/zero_shot/results.md"
echo "report:      $OUT/report.html (and report.md)"
echo "export:      $OUT/export (model card: $OUT/export/README.md)"
echo "demo:        ski-lvlm demo --model $OUT/export   # then open http://127.0.0.1:7860"
echo "serve:       ski-lvlm serve --model $OUT/export  # OpenAI-compatible API on http://127.0.0.1:8000"
