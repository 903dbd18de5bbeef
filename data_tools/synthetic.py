"""Generate the synthetic ADL world: skeletons, videos, captions, QA, instructions, splits.

    ski-lvlm data synthetic --out runs/world          # default: 20 classes x 9 subjects x 2 reps = 360 clips
    ski-lvlm data synthetic --out /tmp/tiny --classes "wave left hand,wave right hand,sit down,stand up" \\
        --subjects 2 --replications 1 --workers 1     # a tiny world for tests
    ski-lvlm data synthetic --out runs/world --novel "clap,bow" --overwrite
    ski-lvlm data synthetic --config my_world.yaml fps=15 size=64   # YAML + key=value overrides

Everything is validated before a single file is written; the world is generated into a temporary
sibling folder and renamed into place only when complete, so a failure leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ski_lvlm.config import load_config
from ski_lvlm.synthetic.actions import CLASS_NAMES, DEFAULT_NOVEL
from ski_lvlm.synthetic.world import SyntheticConfig, generate_world
from ski_lvlm.utils.errors import cli_entry


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ski-lvlm data synthetic",
        description="Generate the deterministic synthetic ADL world (NTU .skeleton files, H.264 videos, "
                    "captions, QA, LLaVA instructions, Charades CSV, zero-shot splits).",
        epilog="classes: " + "; ".join(CLASS_NAMES) + "\ndefault novel: " + "; ".join(DEFAULT_NOVEL),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", help="folder to create (the WORLD)")
    p.add_argument("--seed", type=int, help="master seed (default 0)")
    p.add_argument("--classes", type=_names, help="comma-separated subset of class names (default: all 20)")
    p.add_argument("--novel", type=_names, help="comma-separated unseen classes (default: the 4 default novel classes)")
    p.add_argument("--subjects", type=int, help="number of performers (default 9; every third is a test subject)")
    p.add_argument("--replications", type=int, help="clips per class and subject (default 2)")
    p.add_argument("--per-class", type=int, help="clips per class (default subjects x replications)")
    p.add_argument("--size", type=int, help="video size in pixels, even (default 112)")
    p.add_argument("--fps", type=float, help="frames per second (default 30)")
    p.add_argument("--second-person", type=float, help="probability of a bystander (default 0.3)")
    p.add_argument("--no-videos", action="store_true", help="skip rendering videos (skeletons + annotations only)")
    p.add_argument("--workers", type=int, help="worker processes (default 2; output does not depend on it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--config", help="YAML file with SyntheticConfig fields")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. min_frames=24")
    return p


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


@cli_entry("ski-lvlm data synthetic")
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flags = {"out": args.out, "seed": args.seed, "classes": args.classes, "novel": args.novel,
             "subjects": args.subjects, "replications": args.replications, "per_class": args.per_class,
             "size": args.size, "fps": args.fps, "second_person": args.second_person, "workers": args.workers}
    overrides = [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    if args.no_videos:
        overrides.append("videos=false")
    if args.overwrite:
        overrides.append("overwrite=true")
    cfg = load_config(SyntheticConfig, args.config, overrides + list(args.overrides))

    t0 = time.perf_counter()
    record = generate_world(cfg, progress=not args.no_progress)
    wall = time.perf_counter() - t0
    out = Path(cfg.out)
    c = record["counts"]
    print(f"synthetic world -> {out}")
    print(f"  {c['clips']} clips of {len(record['classes'])} classes ({len(record['base_classes'])} base, "
          f"{len(record['novel_classes'])} novel: {', '.join(record['novel_classes'])}), seed {cfg.seed}")
    print(f"  subjects: train {record['subjects']['train']}, test {record['subjects']['test']}")
    print("  splits: " + ", ".join(f"{k} {c[k]}" for k in ("train", "test", "zsl_base_train", "zsl_base_val",
                                                             "zsl_novel_test")))
    f = record["frames"]
    video = (f"videos {cfg.size}x{cfg.size} H.264 at {cfg.fps:g} fps" if cfg.videos else "no videos")
    print(f"  frames per clip {f['min']}-{f['max']} (mean {f['mean']}), {video}")
    print(f"  {c['captions']} captions, {c['qa']} QA pairs (test subjects), instructions "
          f"{c['instructions_train']} train / {c['instructions_test']} test")
    parts = {name: sum(p.stat().st_size for p in (out / name).rglob("*") if p.is_file())
             for name in ("skeletons", "videos") if (out / name).exists()}
    parts["skeletons.npz"] = (out / "skeletons.npz").stat().st_size
    print(f"  size on disk {_size(record['bytes'])} (" + ", ".join(f"{k} {_size(v)}" for k, v in parts.items()) + ")")
    print(f"  generated in {wall:.1f} s with {cfg.workers} worker{'s' * (cfg.workers != 1)}")
    print(f"  settings, class lists, counts: {out / 'world.json'}")
    print(f"  manifests: {out / 'train.csv'}, {out / 'test.csv'}, {out / 'zsl_base_train.csv'}, "
          f"{out / 'zsl_base_val.csv'}, {out / 'zsl_novel_test.csv'}")
    print(f"  look at it: ski-lvlm data montage {out} --out {out / 'montage.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
