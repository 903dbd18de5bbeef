#!/usr/bin/env bash
# Phase 2: SKI-VLM (ViFi-CLIP + SkeletonCLIP teacher) on 1..N GPUs with the paper's NTU settings
# (16 frames, ViT-B/16, effective batch 64, lr 2.2e-5, 2 epochs, alpha 10). Run scripts/train_skeleton_clip.sh first (the teacher).
#
#   NUM_GPUS=8 scripts/train_ski_vlm.sh train/configs/ski_vlm/ntu_48_12.yaml data.root=data/ntu60/zsl_48-12
#   NUM_GPUS=1 scripts/train_ski_vlm.sh train/configs/ski_vlm/ntu_48_12.yaml   # same effective batch by accumulation
#   LAUNCHER=deepspeed NUM_GPUS=4 scripts/train_ski_vlm.sh ...    # the deepspeed launcher (sets the rank env vars)
#   LAUNCHER=python scripts/train_ski_vlm.sh train/configs/ski_vlm/tiny_cpu.yaml data.root=data/world model.teacher=runs/skeleton_clip/final
#   NUM_GPUS=8 scripts/train_ski_vlm.sh train/configs/ski_vlm/ntu_48_12.yaml model.teacher=null loss.alpha=0 train.output_dir=runs/ntu_48_12/vifi_clip   # ViFi-CLIP baseline
#   ... --resume                                                           # continue after preemption (SIGTERM-safe)
#
# Environment: NUM_GPUS (default: all visible GPUs, at least 1), PER_GPU_BATCH (default 8),
# EFFECTIVE_BATCH (default 64; train.grad_accum = EFFECTIVE_BATCH / (PER_GPU_BATCH * NUM_GPUS)),
# LAUNCHER (accelerate | deepspeed | python), MASTER_PORT (default 29512).
# Mixed precision comes from the config (train.precision: bf16 on Ampere+, fp16 otherwise); CPU runs fp32.
set -euo pipefail
MODULE=train.ski_vlm NAME=train_ski_vlm PORT=29512
source "$(dirname "$0")/_launch.sh" "$@"
