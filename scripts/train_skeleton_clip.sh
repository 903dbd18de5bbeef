#!/usr/bin/env bash
# Phase 1: SkeletonCLIP on 1..N GPUs with the paper's NTU settings (effective batch 64, lr 2.2e-5, 100 epochs).
#
#   NUM_GPUS=8 scripts/train_skeleton_clip.sh train/configs/skeleton_clip/ntu_48_12.yaml data.root=data/ntu60/zsl_48-12
#   NUM_GPUS=1 scripts/train_skeleton_clip.sh train/configs/skeleton_clip/ntu_48_12.yaml   # same effective batch by accumulation
#   LAUNCHER=deepspeed NUM_GPUS=4 scripts/train_skeleton_clip.sh ...    # the deepspeed launcher (sets the rank env vars)
#   LAUNCHER=python scripts/train_skeleton_clip.sh train/configs/skeleton_clip/tiny_cpu.yaml data.root=data/world
#   ... --resume                                                           # continue after preemption (SIGTERM-safe)
#
# Environment: NUM_GPUS (default: all visible GPUs, at least 1), PER_GPU_BATCH (default 8),
# EFFECTIVE_BATCH (default 64; train.grad_accum = EFFECTIVE_BATCH / (PER_GPU_BATCH * NUM_GPUS)),
# LAUNCHER (accelerate | deepspeed | python), MASTER_PORT (default 29511).
# Mixed precision comes from the config (train.precision: bf16 on Ampere+, fp16 otherwise); CPU runs fp32.
set -euo pipefail
source "$(dirname "$0")/_env.sh"
MODULE=train.skeleton_clip
CONFIG=${1:?usage: NUM_GPUS=N $0 CONFIG.yaml [key=value ...] [--resume]}
shift
NUM_GPUS=${NUM_GPUS:-$(python -c 'import torch; print(max(1, torch.cuda.device_count()))')}
PER_GPU_BATCH=${PER_GPU_BATCH:-8}
EFFECTIVE_BATCH=${EFFECTIVE_BATCH:-64}
ACCUM=$(( EFFECTIVE_BATCH / (PER_GPU_BATCH * NUM_GPUS) ))
if [ "$ACCUM" -lt 1 ] || [ $(( ACCUM * PER_GPU_BATCH * NUM_GPUS )) -ne "$EFFECTIVE_BATCH" ]; then
  echo "EFFECTIVE_BATCH=$EFFECTIVE_BATCH is not a multiple of PER_GPU_BATCH*NUM_GPUS=$((PER_GPU_BATCH * NUM_GPUS))" >&2
  exit 2
fi
ARGS=(--config "$CONFIG" "train.batch_size=$PER_GPU_BATCH" "train.grad_accum=$ACCUM" "$@")
echo "[train_skeleton_clip] $NUM_GPUS GPU(s) x batch $PER_GPU_BATCH x accum $ACCUM = $EFFECTIVE_BATCH (launcher ${LAUNCHER:-accelerate})"
case "${LAUNCHER:-accelerate}" in
  accelerate) exec accelerate launch --num_processes "$NUM_GPUS" --num_machines 1 --main_process_port "${MASTER_PORT:-29511}" \
                --dynamo_backend no -m "$MODULE" "${ARGS[@]}" ;;
  deepspeed)  exec deepspeed --num_gpus "$NUM_GPUS" --master_port "${MASTER_PORT:-29511}" --module "$MODULE" "${ARGS[@]}" ;;
  python)     exec python -m "$MODULE" "${ARGS[@]}" ;;
  *) echo "LAUNCHER must be accelerate, deepspeed or python" >&2; exit 2 ;;
esac
