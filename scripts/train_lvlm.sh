#!/usr/bin/env bash
# Launch SKI-LVLM training (train/lvlm.py) on 1 GPU, N GPUs (DeepSpeed) or several nodes (DeepSpeed hostfile).
#
#   scripts/train_lvlm.sh --config CFG [key=value ...]                      # 1 process (GPU, or CPU for tiny runs)
#   scripts/train_lvlm.sh --gpus 8 --config CFG [key=value ...]             # 8 GPUs on this node, DeepSpeed
#   scripts/train_lvlm.sh --hostfile hosts --gpus 8 --config CFG [...]      # every node in `hosts`, 8 GPUs each
#     hosts: one line per node, e.g. "node1 slots=8" / "node2 slots=8"; run from node1 with passwordless ssh to
#     all nodes and the repo + .venv + data at the same paths. --master-addr/--master-port override the defaults.
#
# 7B reference settings (train/configs/lvlm/*_7b_*.yaml):
#   backbone   Vicuna-7B v1.1 / LLaMA-7B (chat_template vicuna_v1_1) or Qwen2-7B-Instruct (its own ChatML template)
#   video      CLIP ViT-L/14 (openai), 100 frames -> 100 temporal + 256 spatial = 356 tokens of 1024-d; precompute them once:
#                ski-lvlm data features --instructions DATA/instructions_train.json --out FEATS \
#                    --video-encoder clip:ViT-L-14:openai --frames 100 --max-frames 100 \
#                    --skeleton-encoder skeleton_clip:runs/skeleton_clip/final --device cuda
#              and pass data.feature_cache=FEATS (same encoders -> the identity check passes)
#   align      frozen LLM, linear projectors, lr 1e-3, 1 epoch                      (align_7b_vicuna.yaml)
#   instruct   LoRA r=64 alpha=128 on all linear layers, projectors trained (lr 2e-5), LoRA lr 2e-4, 3 epochs,
#              p_inject 0.5, ZeRO-2, bf16, gradient checkpointing, 8 GPUs x batch 4 = 32  (instruct_7b_vicuna.yaml)
#   example    scripts/train_lvlm.sh --gpus 8 --config train/configs/lvlm/instruct_7b_vicuna.yaml \
#                  train.output_dir=runs/lvlm7b_instruct data.train_json=DATA/instructions_train.json data.feature_cache=FEATS \
#                  model.init_from=runs/lvlm7b_align/final model.llm=/models/vicuna-7b-v1.1
#   memory     ZeRO-2 LoRA 7B bf16 fits 40-80 GB cards at batch 4 with gradient checkpointing; on smaller cards use
#              train.deepspeed=train/configs/deepspeed/zero3.json (or zero3_offload.json), or QLoRA on one card:
#              train.llm_adapter=qlora train.deepspeed=null
# A killed run resumes when the same command is run again (resume=true reads OUT/checkpoints/latest).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GPUS=1
HOSTFILE=""
MASTER_ADDR_ARG=""
MASTER_PORT="${MASTER_PORT:-29511}"
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --gpus) GPUS="$2"; shift 2 ;;
    --hostfile) HOSTFILE="$2"; shift 2 ;;
    --master-addr) MASTER_ADDR_ARG="$2"; shift 2 ;;
    --master-port) MASTER_PORT="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
source "$ROOT/scripts/_env.sh"
cd "$ROOT"
if [ -n "$HOSTFILE" ]; then
  [ -f "$HOSTFILE" ] || { echo "hostfile not found: $HOSTFILE" >&2; exit 2; }
  EXTRA=()
  [ -n "$MASTER_ADDR_ARG" ] && EXTRA+=(--master_addr "$MASTER_ADDR_ARG")
  exec deepspeed --hostfile "$HOSTFILE" --num_gpus "$GPUS" --master_port "$MASTER_PORT" "${EXTRA[@]}" \
    --module train.lvlm "${ARGS[@]}"
elif [ "$GPUS" -gt 1 ]; then
  exec deepspeed --num_gpus "$GPUS" --master_port "$MASTER_PORT" --module train.lvlm "${ARGS[@]}"
else
  exec python -m train.lvlm "${ARGS[@]}"
fi
