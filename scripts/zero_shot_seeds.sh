#!/usr/bin/env bash
# Zero-shot table over several training seeds: one run can be lucky, so this is the number to quote.
#
#   scripts/zero_shot_seeds.sh                          # seeds 1024 0 1 on a fresh default world (~3 min per seed, 2 CPU cores)
#   SEEDS="1 2 3 4 5" OUT=/tmp/seeds scripts/zero_shot_seeds.sh
#   WORLD=runs/quickstart/world scripts/zero_shot_seeds.sh   # reuse an existing world
#
# For every seed: SkeletonCLIP -> ViFi-CLIP baseline -> SKI-VLM (teacher = that seed's SkeletonCLIP), with the
# shipped tiny_cpu*.yaml configs and train.seed=SEED, then `ski-lvlm eval zero-shot` on the unseen classes.
# Writes $OUT/seed_<s>/... and prints (and writes to $OUT/summary.md) top-1 per seed, mean and sd.
source "$(dirname "$0")/_env.sh"
OUT="${OUT:-runs/zero_shot_seeds}"
SEEDS="${SEEDS:-1024 0 1}"
WORLD="${WORLD:-$OUT/world}"
mkdir -p "$OUT"

if [ ! -f "$WORLD/world.json" ]; then
  ski-lvlm data synthetic --out "$WORLD" --seed 0
fi

for s in $SEEDS; do
  run="$OUT/seed_$s"
  echo "=== seed $s -> $run"
  ski-lvlm train skeleton-clip --config train/configs/skeleton_clip/tiny_cpu.yaml \
    data.root="$WORLD" train.output_dir="$run/skeleton_clip" train.seed="$s"
  ski-lvlm train ski-vlm --config train/configs/ski_vlm/tiny_cpu_vifi.yaml \
    data.root="$WORLD" train.output_dir="$run/vifi_clip" train.seed="$s"
  ski-lvlm train ski-vlm --config train/configs/ski_vlm/tiny_cpu.yaml \
    data.root="$WORLD" model.teacher="$run/skeleton_clip/final" train.output_dir="$run/ski_vlm" train.seed="$s"
  ski-lvlm eval zero-shot --world "$WORLD" --out "$run/zero_shot" \
    --model skeleton_clip="$run/skeleton_clip/final" --model vifi_clip="$run/vifi_clip/final" \
    --model ski_vlm="$run/ski_vlm/final"
done

python - "$OUT" $SEEDS <<'EOF'
import json
import statistics
import sys
from pathlib import Path

out, seeds = Path(sys.argv[1]), sys.argv[2:]
results = {s: json.loads((out / f"seed_{s}" / "zero_shot" / "results.json").read_text()) for s in seeds}
first = next(iter(results.values()))
names = list(first["models"])
lines = [f"Unseen-class top-1 % over training seeds ({first['num_samples']} clips, {first['num_classes']} classes)", "",
         "| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd |",
         "|---|" + "---:|" * (len(seeds) + 2)]
for name in names:
    accs = [100 * results[s]["models"][name]["top1"] for s in seeds]
    sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
    lines.append(f"| {first['models'][name]['display']} | " + " | ".join(f"{a:.1f}" for a in accs)
                 + f" | **{statistics.mean(accs):.1f}** | {sd:.1f} |")
lines.append(f"| chance | " + " | ".join(f"{100 * first['chance']:.1f}" for _ in seeds) + f" | {100 * first['chance']:.1f} | - |")
text = "\n".join(lines) + "\n"
(out / "summary.md").write_text(text)
print(text)
EOF
