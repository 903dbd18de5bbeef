#!/usr/bin/env bash
# The main job, end to end on the synthetic ADL world with tiny models on CPU:
#   data -> SkeletonCLIP -> ViFi-CLIP baseline + SKI-VLM -> zero-shot table -> SKI-LVLM align + LoRA instruct
#   (DeepSpeed ZeRO-2 on CPU; with and without skeleton injection) -> caption/QA eval + report -> export
#
#   scripts/quickstart.sh                  # results under runs/quickstart (about 5 min on 2 idle CPU cores)
#   OUT=/tmp/qs SEED=1 scripts/quickstart.sh   # SEED picks the synthetic world; training seeds are in the YAMLs
#
# Creates .venv if missing and installs the pinned requirements first (see scripts/_env.sh).
# Every stage is an ordinary `ski-lvlm` command: copy any line to rerun one stage.
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

stage "2. SkeletonCLIP (phase 1): skeleton <-> class text, base classes only"
ski-lvlm train skeleton-clip --config train/configs/skeleton_clip/tiny_cpu.yaml \
  data.root="$WORLD" train.output_dir="$OUT/skeleton_clip"

stage "3a. ViFi-CLIP baseline (video only, no skeleton guidance)"
ski-lvlm train ski-vlm --config train/configs/ski_vlm/tiny_cpu_vifi.yaml \
  data.root="$WORLD" train.output_dir="$OUT/vifi_clip"

stage "3b. SKI-VLM (phase 2): video branch trained together with the SkeletonCLIP teacher"
ski-lvlm train ski-vlm --config train/configs/ski_vlm/tiny_cpu.yaml \
  data.root="$WORLD" model.teacher="$OUT/skeleton_clip/model" train.output_dir="$OUT/ski_vlm"

stage "4. zero-shot action recognition on the unseen classes (videos only for ViFi-CLIP / SKI-VLM)"
ski-lvlm eval zero-shot --world "$WORLD" --out "$OUT/zero_shot" \
  --model skeleton_clip="$OUT/skeleton_clip/model" --model vifi_clip="$OUT/vifi_clip/model" \
  --model ski_vlm="$OUT/ski_vlm/model"
cat "$OUT/zero_shot/results.md"

stage "5. Charades-format caption/QA sets from the world's test split"
ski-lvlm data charades --csv "$WORLD/Charades_v1_test.csv" --classes "$WORLD/Charades_v1_classes.txt" \
  --videos "$WORLD/videos" --out "$OUT/charades" --overwrite

# SKI-LVLM: video tokens from the SKI-VLM video tower, skeleton tokens from the SkeletonCLIP encoder.
LVLM_ENC=(model.video_encoder="ski_vlm:$OUT/ski_vlm/model" model.skeleton_encoder="skeleton_clip:$OUT/skeleton_clip/model")

stage "6. SKI-LVLM align: projectors only, LLM frozen"
ski-lvlm train lvlm --config train/configs/lvlm/align_tiny.yaml out="$OUT/lvlm_align" \
  data.train_json="$WORLD/instructions_train.json" "${LVLM_ENC[@]}"

stage "7a. SKI-LVLM instruct: LoRA + DeepSpeed ZeRO-2 (CPU), skeleton tokens injected with p=0.5"
ski-lvlm train lvlm --config train/configs/lvlm/instruct_tiny.yaml out="$OUT/lvlm_instruct" \
  data.train_json="$WORLD/instructions_train.json" model.init_from="$OUT/lvlm_align/final" data.p_inject=0.5 "${LVLM_ENC[@]}"

stage "7b. SKI-LVLM instruct without skeleton injection (the comparison)"
ski-lvlm train lvlm --config train/configs/lvlm/instruct_tiny.yaml out="$OUT/lvlm_instruct_noskel" \
  data.train_json="$WORLD/instructions_train.json" model.init_from="$OUT/lvlm_align/final" data.p_inject=0 "${LVLM_ENC[@]}"

stage "8. evaluate everything (zero-shot + captions/QA from video only) and write the report"
ski-lvlm eval all --run "$OUT"

stage "9. export the instruct run (PEFT adapter + projectors + processor, reload-checked) and caption with it"
ski-lvlm export --run "$OUT/lvlm_instruct" --out "$OUT/export" --overwrite
ski-lvlm caption $(ls "$WORLD"/videos/*.mp4 | head -n 8) --model "$OUT/export" --out "$OUT/captions.jsonl"
head -n 3 "$OUT/captions.jsonl"

echo
echo "=== done in $(( $(date +%s) - START ))s"
echo "world:       $WORLD (summary: $WORLD/world.json; montage: $OUT/montage.png)"
echo "zero-shot:   $OUT/zero_shot/results.md"
echo "report:      $OUT/report.html (and report.md)"
echo "export:      $OUT/export (model card: $OUT/export/README.md)"
echo "demo:        ski-lvlm demo --model $OUT/export   # then open http://127.0.0.1:7860"
