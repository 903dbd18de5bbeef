# Sourced by scripts/train_skeleton_clip.sh and scripts/train_ski_vlm.sh after they set MODULE (the recipe,
# e.g. train.ski_vlm), NAME (for the log line) and PORT (default rendezvous port). Splits EFFECTIVE_BATCH into
# PER_GPU_BATCH x NUM_GPUS x gradient accumulation and execs the chosen launcher; see those scripts' headers.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
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
echo "[$NAME] $NUM_GPUS GPU(s) x batch $PER_GPU_BATCH x accum $ACCUM = $EFFECTIVE_BATCH (launcher ${LAUNCHER:-accelerate})"
case "${LAUNCHER:-accelerate}" in
  accelerate) exec accelerate launch --num_processes "$NUM_GPUS" --num_machines 1 --main_process_port "${MASTER_PORT:-$PORT}" \
                --dynamo_backend no -m "$MODULE" "${ARGS[@]}" ;;
  deepspeed)  exec deepspeed --num_gpus "$NUM_GPUS" --master_port "${MASTER_PORT:-$PORT}" --module "$MODULE" "${ARGS[@]}" ;;
  python)     exec python -m "$MODULE" "${ARGS[@]}" ;;
  *) echo "LAUNCHER must be accelerate, deepspeed or python" >&2; exit 2 ;;
esac
