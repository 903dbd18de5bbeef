#!/usr/bin/env bash
# Does skeleton induction help video-only inference? Every arm over several training seeds on each protocol,
# then `ski-lvlm eval compare` of each arm against the first (ViFi-CLIP) and one table with 95 % CIs.
#
#   scripts/ski_ablation.sh                                   # 5 seeds, xsub + xview zero-shot, vifi/ski/ski_feat
#   WORLD=runs/world OUT=runs/ablation scripts/ski_ablation.sh  # reuse a world (protocol files added if missing)
#   PROTOCOLS=zslval SEEDS="0 1" ARMS="vifi ski_feat ski_feat_a10:tiny_cpu_feat.yaml:loss.alpha=10" \
#       scripts/ski_ablation.sh                               # choose settings on the validation split
#   ARMS="vifi ski ski_feat ski_orig" scripts/ski_ablation.sh    # + the original code's settings (CE teacher too)
#   LVLM=1 scripts/ski_ablation.sh                            # + the LVLM pair p_inject 0 vs 0.5 (slow, see below)
#   TINY=1 OUT=/tmp/abl scripts/ski_ablation.sh               # 2 seeds, tiny world, tiny presets (the test)
#
# PROTOCOLS (manifests of ski_lvlm.data.protocols; the scored set is never seen in training):
#   xsub          zero-shot: base classes of the training subjects -> novel classes (the default files)
#   xview         zero-shot, cross-view: base classes from cameras 2,3 -> novel classes from camera 1
#   zslval        validation for xsub: training subjects only, every 4th base class is pseudo-novel
#   xview_zslval  validation for xview: training views only, pseudo-novel classes as zslval
#   full / xview_full          all 20 classes: train subjects -> test subjects / cameras 2,3 -> camera 1
#   full_val / xview_full_val  their validation splits (train_fit -> train_val; xview_train_fit -> _val)
# ARMS: names with a shipped config (vifi, ski, ski_feat, ski_orig) or NAME:CONFIG.yaml[:k=v,k=v]
#   (CONFIG under train/configs/ski_vlm/). An arm whose config has a teacher gets the same seed's
#   SkeletonCLIP trained on the same protocol; `loss.kind: ce` arms get a SkeletonCLIP trained with kind=ce.
# LVLM=1: SmolLM2-135M + LoRA on xsub, per seed, one run per LVLM_ARMS entry NAME[:k=v,k=v] (default
#   "p0:data.p_inject=0 p0.5:data.p_inject=0.5"; e.g. add steps:data.p_inject=0.5,loss.distill_on=steps), each
#   compared with the first; reduced from instruct_smol.yaml to LVLM_OVERRIDES (default: 1 epoch, prealign
#   200 steps) and scored on the first LVLM_LIMIT (default 120) test-subject captions/QA with METEOR off.
#   About 4 min per run on 2 idle cores, plus the video tower.
# Finished steps (a final/ -- model/ in runs from before issue 14 -- or results.json already there) are
# skipped, so a rerun resumes.
# Writes $OUT/<protocol>/seed<s>/..., $OUT/<protocol>/compare_<arm>/compare.{json,md}, $OUT/table.md.
source "$(dirname "$0")/_env.sh"
OUT="${OUT:-runs/ski_ablation}"
TINY="${TINY:-0}"
LVLM="${LVLM:-0}"
if [ "$TINY" = 1 ]; then
  SEEDS="${SEEDS:-0 1}"
  PROTOCOLS="${PROTOCOLS:-xsub xview}"
  # tiny presets: the random CLIP text tower (no MiniLM), 3 frames, a few steps
  TRAIN_OVR=(model.text_encoder=clip data.skeleton_frames=12 train.epochs=1 train.max_steps=2 train.batch_size=4
             train.eval_batch_size=8)
  VIDEO_OVR=(data.num_frames=3)
  NBOOT=200
else
  SEEDS="${SEEDS:-0 1 2 3 4}"
  PROTOCOLS="${PROTOCOLS:-xsub xview}"
  TRAIN_OVR=()
  VIDEO_OVR=()
  NBOOT=5000
fi
ARMS="${ARMS:-vifi ski ski_feat}"
WORLD="${WORLD:-$OUT/world}"
START=$(date +%s)
say() { echo "=== [$(( $(date +%s) - START ))s] $*"; }
# A finished SkeletonCLIP / SKI-VLM run: final/ (model/ in runs from before issue 14; the loaders read both).
trained() { [ -f "$1/final/model_config.json" ] || [ -f "$1/model/model_config.json" ]; }
mkdir -p "$OUT"

if [ ! -f "$WORLD/world.json" ]; then
  if [ "$TINY" = 1 ]; then
    ski-lvlm data synthetic --out "$WORLD" --classes "wave left hand,wave right hand,raise left hand,raise right hand,sit down,stand up" \
      --novel "wave right hand,stand up" --subjects 3 --replications 2 --size 64 --workers 1 --no-progress
  else
    ski-lvlm data synthetic --out "$WORLD" --seed 0 --no-progress
  fi
fi
[ -f "$WORLD/xview_zsl_novel_test.csv" ] || ski-lvlm data protocols "$WORLD"

# protocol -> train manifest, its classes, the scored manifest, its classes
protocol_files() {
  case "$1" in
    xsub) echo zsl_base_train.csv zsl_base_classes.csv zsl_novel_test.csv zsl_novel_classes.csv ;;
    xview) echo xview_zsl_base_train.csv zsl_base_classes.csv xview_zsl_novel_test.csv zsl_novel_classes.csv ;;
    zslval) echo zslval_base_train.csv zslval_base_classes.csv zslval_novel_test.csv zslval_novel_classes.csv ;;
    xview_zslval) echo xview_zslval_base_train.csv zslval_base_classes.csv xview_zslval_novel_test.csv zslval_novel_classes.csv ;;
    full) echo train.csv classes.csv test.csv classes.csv ;;
    xview_full) echo xview_train.csv classes.csv xview_test.csv classes.csv ;;
    full_val) echo train_fit.csv classes.csv train_val.csv classes.csv ;;
    xview_full_val) echo xview_train_fit.csv classes.csv xview_train_val.csv classes.csv ;;
    *) echo "unknown protocol $1" >&2; return 1 ;;
  esac
}

# arm -> "config overrides..." (config under train/configs/ski_vlm/)
arm_spec() {
  case "$1" in
    vifi) echo tiny_cpu_vifi.yaml ;;
    ski) echo tiny_cpu.yaml ;;
    ski_feat) echo tiny_cpu_feat.yaml ;;
    ski_orig) echo tiny_cpu_original.yaml ;;
    *:*) local rest="${1#*:}"; echo "${rest%%:*}" $( [ "$rest" != "${rest#*:}" ] && echo "${rest#*:}" | tr ',' ' ' ) ;;
    *) echo "unknown arm $1 (use NAME:CONFIG.yaml[:k=v,...])" >&2; return 1 ;;
  esac
}

train_seed() {  # protocol seed
  local p="$1" s="$2" run="$OUT/$1/seed$2"
  read -r TRAIN CLASSES TEST TEST_CLASSES <<< "$(protocol_files "$p")"
  local data=(data.root="$WORLD" data.train_csv="$TRAIN" data.classes_csv="$CLASSES" data.val_csv=null
              data.novel_csv="$TEST" data.novel_classes_csv="$TEST_CLASSES" train.seed="$s")
  local models=() arm spec cfg teacher rescore=0
  for arm in $ARMS; do
    spec=($(arm_spec "$arm")); cfg="train/configs/ski_vlm/${spec[0]}"; arm="${arm%%:*}"
    teacher=()
    if ! grep -q "^  teacher: null" "$cfg"; then
      local kind=clip; grep -q "^  kind: ce" "$cfg" && kind=ce
      local tdir="$run/skeleton_clip_$kind"
      if ! trained "$tdir"; then
        say "$p seed $s: SkeletonCLIP ($kind) teacher"
        ski-lvlm train skeleton-clip --config train/configs/skeleton_clip/tiny_cpu.yaml "${data[@]}" \
          loss.kind="$kind" train.output_dir="$tdir" "${TRAIN_OVR[@]}"
      fi
      teacher=(model.teacher="$tdir/final")
      [[ " ${models[*]} " == *" skeleton_clip_$kind="* ]] || models+=("skeleton_clip_$kind=$tdir/final")
    fi
    if [ ! -f "$run/$arm/results.json" ]; then
      say "$p seed $s: $arm (${spec[*]})"
      ski-lvlm train ski-vlm --config "$cfg" "${data[@]}" "${teacher[@]}" train.output_dir="$run/$arm" \
        "${TRAIN_OVR[@]}" "${VIDEO_OVR[@]}" "${spec[@]:1}"
    fi
    models+=("$arm=$run/$arm/final")
    [ -f "$run/zero_shot/scores_$arm.jsonl" ] || rescore=1
  done
  if [ "$rescore" = 1 ]; then  # every model again, so an arm added later is scored next to the others
    local flags=(); for m in "${models[@]}"; do flags+=(--model "$m"); done
    ski-lvlm eval zero-shot --manifest "$WORLD/$TEST" --classes "$WORLD/$TEST_CLASSES" --out "$run/zero_shot" \
      "${flags[@]}" > /dev/null
  fi
}

compare_protocol() {  # protocol: every arm against the first one
  local p="$1" base="" arm
  for arm in $ARMS; do
    arm="${arm%%:*}"
    if [ -z "$base" ]; then base="$arm"; continue; fi
    local a=() b=() s
    for s in $SEEDS; do a+=("$OUT/$p/seed$s/zero_shot#$base"); b+=("$OUT/$p/seed$s/zero_shot#$arm"); done
    a[0]="$base=${a[0]}"; b[0]="$arm=${b[0]}"
    ski-lvlm eval compare --a "${a[@]}" --b "${b[@]}" --out "$OUT/$p/compare_$arm" --metric zero_shot_top1 \
      --n-boot "$NBOOT" --n-perm "$NBOOT" > /dev/null
    TABLE+=("$p=$OUT/$p/compare_$arm")
  done
}

TABLE=()
for p in $PROTOCOLS; do
  for s in $SEEDS; do train_seed "$p" "$s"; done
  compare_protocol "$p"
done

if [ "$LVLM" = 1 ]; then
  LVLM_LIMIT="${LVLM_LIMIT:-120}"
  LVLM_ARMS="${LVLM_ARMS:-p0:data.p_inject=0 p0.5:data.p_inject=0.5}"
  read -r -a LVLM_OVR <<< "${LVLM_OVERRIDES:-train.epochs=1 train.prealign_steps=200}"
  ski-lvlm models prepare smollm2-135m > /dev/null
  for s in $SEEDS; do
    run="$OUT/lvlm/seed$s"
    trained "$run/tower" || ski-lvlm train ski-vlm --config train/configs/ski_vlm/tiny_cpu_lvlm_tower.yaml \
      data.root="$WORLD" train.output_dir="$run/tower" train.seed="$s"
    trained "$OUT/xsub/seed$s/skeleton_clip_clip" || ski-lvlm train skeleton-clip \
      --config train/configs/skeleton_clip/tiny_cpu.yaml data.root="$WORLD" train.output_dir="$OUT/xsub/seed$s/skeleton_clip_clip" train.seed="$s"
    for arm in $LVLM_ARMS; do
      name="${arm%%:*}"; ovr=(); [ "$arm" != "$name" ] && read -r -a ovr <<< "$(echo "${arm#*:}" | tr ',' ' ')"
      say "lvlm seed $s: $name (${ovr[*]})"
      [ -d "$run/$name/final" ] || ski-lvlm train lvlm --config train/configs/lvlm/instruct_smol.yaml \
        train.output_dir="$run/$name" data.train_json="$WORLD/instructions_train.json" train.seed="$s" \
        model.video_encoder="ski_vlm:$run/tower/final" \
        model.skeleton_encoder="skeleton_clip:$OUT/xsub/seed$s/skeleton_clip_clip/final" "${LVLM_OVR[@]}" "${ovr[@]}"
      [ -f "$run/captions_$name/results.json" ] || ski-lvlm eval captions --model "$run/$name/final" \
        --eval-set "$WORLD/Charades_v1_test.csv" --phrases "$WORLD/class_phrases.json" --qa "$WORLD/qa.json" \
        --limit "$LVLM_LIMIT" --meteor off --out "$run/captions_$name" --no-progress > /dev/null
    done
  done
  base=""
  for arm in $LVLM_ARMS; do  # every arm against the first
    name="${arm%%:*}"
    if [ -z "$base" ]; then base="$name"; continue; fi
    a=(); b=()
    for s in $SEEDS; do a+=("$OUT/lvlm/seed$s/captions_$base"); b+=("$OUT/lvlm/seed$s/captions_$name"); done
    a[0]="$base=${a[0]}"; b[0]="$name=${b[0]}"
    cmp="$OUT/lvlm/compare"; [ "$name" = p0.5 ] || cmp="$OUT/lvlm/compare_$name"  # p0.5: the first pair's folder
    ski-lvlm eval compare --a "${a[@]}" --b "${b[@]}" --out "$cmp" --n-boot "$NBOOT" --n-perm "$NBOOT" > /dev/null
    TABLE+=("lvlm=$cmp")
  done
fi

ski-lvlm eval compare-table --out "$OUT/table.md" "${TABLE[@]}"
say "done: $OUT/table.md"
