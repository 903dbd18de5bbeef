"""Precompute video (and skeleton) features into a resumable, identity-checked cache.

    ski-lvlm data features --instructions WORLD/instructions_train.json --out runs/features/train \\
        --video-encoder clip:ski-tiny-ViT --frames 16 --max-frames 16 --skeleton-encoder random:tiny

    ski-lvlm data features --manifest data/charades_test/manifest.csv --out feats/charades \\
        --video-encoder clip:ViT-L-14:openai --frames 100 --max-frames 100 --device cuda --batch-size 16

Video encoders: ``clip:ARCH[:PRETRAINED]`` (open_clip; PRETRAINED = tag or local file) or
``ski_vlm:FOLDER`` (image tower of a trained SKI-VLM/VideoCLIP folder). Skeleton encoders (optional):
``skeleton_clip:FOLDER`` (a SkeletonCLIP or SKI-VLM folder) or ``random:PRESET[:SEED]`` (smoke tests).

Video features are Video-ChatGPT's: min(total, --frames) frames at segment middles, penultimate-layer
patch tokens, --max-frames temporal + n_patch spatial mean-pooled tokens. A killed run is resumed by
running the same command again (finished shards are kept); a folder made with another encoder or other
settings is refused. Unreadable items stop the run with their name, or with --skip-bad are listed in
report.json and the cache manifest.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ski_lvlm.data.feature_cache import BadItemError, FeatureItem, StaleCacheError, extract_features
from ski_lvlm.data.instruction_sets import load_instruction_set, to_records
from ski_lvlm.data.keys import sample_key
from ski_lvlm.data.manifest import ManifestDataset
from ski_lvlm.models.encoders import load_skeleton_encoder, load_video_encoder
from ski_lvlm.utils.errors import UserError, cli_entry
from ski_lvlm.utils.io import atomic_write_json, check_writable_parent
from ski_lvlm.utils.runtime import pick_device, resolve_dtype


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ski-lvlm data features", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", help="video_path,skeleton_path,label CSV")
    src.add_argument("--instructions", help="instruction records with video / skeleton, as train lvlm reads them")
    p.add_argument("--out", required=True, help="cache folder (created, or resumed when the settings match)")
    p.add_argument("--video-encoder", default="clip:ski-tiny-ViT", help="clip:ARCH[:PRETRAINED] or ski_vlm:FOLDER")
    p.add_argument("--frames", type=int, default=100, help="frames sampled per video (fewer when the video is shorter)")
    p.add_argument("--max-frames", type=int, default=100, help="temporal tokens, zero-padded (Video-ChatGPT: 100)")
    p.add_argument("--sampling", default="segment_middle", choices=["segment_middle", "uniform"])
    p.add_argument("--layer", type=int, default=-2, help="transformer block whose patch tokens are pooled (-2)")
    p.add_argument("--skeleton-encoder", default=None, help="skeleton_clip:FOLDER or random:PRESET[:SEED] (optional)")
    p.add_argument("--skeleton-frames", type=int, default=None,
                   help="skeleton frames (default: the checkpoint's training setting, else 300 as SKI)")
    p.add_argument("--skeleton-mode", choices=["pad", "resize"], default=None,
                   help="pad/crop or linearly resize to --skeleton-frames (default: the checkpoint's, else pad)")
    p.add_argument("--no-skeleton-center", action="store_true", help="do not centre skeletons on the spine joint")
    p.add_argument("--batch-size", type=int, default=8, help="videos encoded together")
    p.add_argument("--shard-size", type=int, default=256, help="items per safetensors shard")
    p.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"], help="storage dtype")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    p.add_argument("--workers", type=int, default=2, help="decoding threads")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per video before it counts as bad")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable items (listed in report.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def collect_items(args: argparse.Namespace, with_skeleton: bool) -> list[FeatureItem]:
    """Unique items (by video) of the manifest or instruction file; ids are video file stems."""
    try:
        if args.manifest:
            ds = ManifestDataset(args.manifest)
            rows = [ds.record(i) for i in range(len(ds))]
            pairs = [(r.video_path, r.skeleton_path) for r in rows]
            source = args.manifest
        else:
            recs = to_records(load_instruction_set(args.instructions))  # read as `train lvlm` reads it
            pairs = [(r["video_path"], r["skeleton_path"]) for r in recs]
            source = args.instructions
    except (ValueError, OSError) as e:  # a malformed manifest / instruction file (the errors name it), or none
        raise UserError(str(e)) from None
    items: dict[str, FeatureItem] = {}
    for k, (video, skel) in enumerate(pairs):
        if not video:
            raise UserError(f"{source}: item {k} has no video path")
        key = sample_key({"video_path": video})
        item = FeatureItem(key, video, skel if with_skeleton else None)
        prev = items.get(key)
        if prev is not None and prev.video != video:
            raise UserError(f"{source}: two videos share the id {key!r}: {prev.video} and {video} "
                            "(cache ids are video file stems)")
        if prev is None or (item.skeleton and not prev.skeleton):
            items[key] = item
    if not items:
        raise UserError(f"{source}: no items")
    return list(items.values())


@cli_entry("ski-lvlm data features")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problems = []
    for name in ("frames", "max_frames", "batch_size", "shard_size", "skeleton_frames"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')}: must be >= 1")
    if args.max_frames < args.frames:
        problems.append(f"--max-frames ({args.max_frames}) must be >= --frames ({args.frames})")
    src = Path(args.manifest or args.instructions)
    if not src.is_file():
        problems.append(f"{src}: not found")
    problems += check_writable_parent(args.out)
    if problems:
        raise UserError("\n  ".join(problems))
    try:
        device = pick_device(args.device)
    except (RuntimeError, ValueError) as e:
        raise UserError(str(e)) from None

    items = collect_items(args, with_skeleton=args.skeleton_encoder is not None)
    try:
        video = load_video_encoder(args.video_encoder, frames=args.frames, max_frames=args.max_frames, device=device,
                                   sampling=args.sampling, layer=args.layer)
        skeleton = None
        if args.skeleton_encoder:
            skeleton = load_skeleton_encoder(args.skeleton_encoder, num_frames=args.skeleton_frames,
                                             center=False if args.no_skeleton_center else None,
                                             mode=args.skeleton_mode, device=device)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        raise UserError(f"cannot load encoder: {e}") from None

    print(f"{len(items)} videos from {src}; video encoder {args.video_encoder}"
          f"{f', skeleton encoder {args.skeleton_encoder}' if skeleton else ''}; device {device}")
    try:
        summary = extract_features(items, args.out, video, skeleton, batch_size=args.batch_size,
                                   shard_size=args.shard_size, dtype=resolve_dtype(args.dtype), workers=args.workers,
                                   skip_bad=args.skip_bad, timeout=args.timeout, progress=not args.no_progress)
    except StaleCacheError as e:
        raise UserError(str(e)) from None
    except BadItemError as e:
        raise UserError(f"{e}\n  (items finished so far are kept; fix or remove the item, or pass --skip-bad, "
                        f"and rerun the same command to resume)") from None
    except FileExistsError as e:
        raise UserError(str(e)) from None

    report = {"source": str(src), "out": str(args.out), "video_encoder": args.video_encoder,
              "skeleton_encoder": args.skeleton_encoder, **summary,
              "items_with_skeleton": sum(1 for it in items if it.skeleton)}
    atomic_write_json(Path(args.out) / "report.json", report)
    rate = f"{summary['videos_per_s']:.2f} videos/s" if summary["videos_per_s"] else "n/a"
    print(f"encoded {summary['encoded']} videos in {summary['seconds']:.1f} s ({rate}); "
          f"{summary['already_done']} already cached; {len(summary['bad'])} bad"
          + (f"; {len(summary['missing_skeleton'])} without a skeleton file (video features only)"
             if summary["missing_skeleton"] else ""))
    for b in summary["bad"][:10]:
        print(f"  bad: {b['id']}: {b['error']}")
    print(f"cache: {os.path.abspath(args.out)} (report.json lists the run)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

