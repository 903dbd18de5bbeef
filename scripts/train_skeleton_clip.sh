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
MODULE=train.skeleton_clip NAME=train_skeleton_clip PORT=29511
source "$(dirname "$0")/_launch.sh" "$@"
