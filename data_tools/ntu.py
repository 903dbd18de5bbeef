"""NTU RGB+D recipes: ``.skeleton`` folder -> npz (``ski-lvlm data ntu``); zero-shot manifests (``ski-lvlm data zsl``).

    ski-lvlm data ntu --skeletons nturgb+d_skeletons --out data/ntu60/NTU60_CS.npz --benchmark xsub
    ski-lvlm data zsl --split 48-12 --videos nturgb+d_rgb --skeletons nturgb+d_skeletons --out data/ntu60/zsl_48-12
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from ski_lvlm.data.ntu import (
    BENCHMARKS,
    SAMPLINGS,
    ZSL_SPLITS,
    ConvertOptions,
    build_zsl_manifests,
    convert_ntu,
    is_ntu60,
    load_missing_list,
    parse_ntu_name,
)
from ski_lvlm.data.skeleton import SkeletonFormatError
from ski_lvlm.utils.errors import UserError, cli_entry
from ski_lvlm.utils.io import atomic_write_text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ski-lvlm data ntu",
        description="Convert NTU RGB+D 60/120 .skeleton files to one npz (x_train, y_train, x_test, y_test, "
        "files_train, files_test; x float32 [N,3,T,25,2], y = action id - 1). Parallel and resumable: "
        "finished chunks are kept in OUT.parts/ until the npz is written, so rerunning the same command "
        "after a kill continues where it stopped.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--skeletons", required=True, type=Path, help="folder with *.skeleton files (searched recursively)")
    p.add_argument("--out", required=True, type=Path, help="output .npz file")
    p.add_argument("--benchmark", choices=BENCHMARKS, default="xsub",
                   help="xsub: by performer; xview: cameras 2,3 train; xset: even setups train")
    p.add_argument("--missing", action="append", type=Path, default=[],
                   help="extra list of sample names to skip (one per line; repeatable), e.g. the NTU120 list")
    p.add_argument("--no-default-missing", action="store_true",
                   help="do not skip the packaged NTU60 missing-skeleton list (302 samples)")
    p.add_argument("--only", choices=("all", "ntu60", "ntu120-extra"), default="all",
                   help="restrict to NTU60 samples (setups 1-17, actions 1-60) or to the NTU120 additions")
    p.add_argument("--frames", type=int, default=300, help="frames per sample T")
    p.add_argument("--sampling", choices=SAMPLINGS, default="pad300",
                   help="pad300: zero-pad/cut to T from the start (original SKI/CTR-GCN); uniform: T evenly "
                   "spaced frames over the valid length; random_crop: random 50-100%% window, then uniform")
    p.add_argument("--seed", type=int, default=0, help="seed for --sampling random_crop (per-file generators)")
    p.add_argument("--center-spine", action="store_true",
                   help="subtract body 0's spine-mid joint of its first frame (CTR-GCN seq_translation)")
    p.add_argument("--align-view", action="store_true", help="rotate so body 0 faces the camera in its first frame")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--chunk-size", type=int, default=64, help="files per cached chunk")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip malformed files and list them in OUT.bad.txt instead of stopping")
    p.add_argument("--keep-parts", action="store_true", help="keep OUT.parts/ after success")
    p.add_argument("--limit", type=int, default=None, help="convert only the first N files (smoke tests)")
    return p


@cli_entry("ski-lvlm data ntu")
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.skeletons.is_dir():
        raise UserError(f"--skeletons {args.skeletons}: not a folder")
    if args.out.suffix != ".npz":
        raise UserError(f"--out {args.out}: must end in .npz")
    if args.frames <= 0 or args.workers <= 0 or args.chunk_size <= 0:
        raise UserError("--frames, --workers and --chunk-size must be > 0")
    skip: set[str] = set() if args.no_default_missing else load_missing_list()
    for m in args.missing:
        if not m.is_file():
            raise UserError(f"--missing {m}: no such file")
        skip |= load_missing_list(m)

    files, skipped, unnamed = [], 0, 0
    for root, _, names in os.walk(args.skeletons):
        for fn in names:
            if not fn.endswith(".skeleton"):
                continue
            stem = fn.split(".")[0]
            try:
                n = parse_ntu_name(stem)
            except ValueError:
                unnamed += 1
                continue
            if args.only == "ntu60" and not is_ntu60(n) or args.only == "ntu120-extra" and is_ntu60(n):
                continue
            if stem in skip:
                skipped += 1
                continue
            files.append(os.path.join(root, fn))
    files.sort()
    if args.limit:
        files = files[: args.limit]
    if not files:
        raise UserError(f"{args.skeletons}: no .skeleton files with NTU names (SsssCcccPpppRrrrAaaa) found")
    print(f"{len(files)} files to convert; skipped {skipped} listed as missing"
          + (f", {unnamed} without an NTU name" if unnamed else ""), file=sys.stderr)

    opts = ConvertOptions(benchmark=args.benchmark, frames=args.frames, sampling=args.sampling,
                          center_spine=args.center_spine, align_view=args.align_view, seed=args.seed)
    bar = tqdm(total=len(files), unit="file", desc="ntu", dynamic_ncols=True)

    def progress(n: int) -> None:
        bar.update(n - bar.n)

    try:
        summary = convert_ntu(files, args.out, opts, workers=args.workers, chunk_size=args.chunk_size,
                              skip_bad=args.skip_bad, keep_parts=args.keep_parts, progress=progress)
    except SkeletonFormatError as e:
        raise UserError(f"{e} (rerun with --skip-bad to skip malformed files; finished chunks are kept)") from None
    finally:
        bar.close()
    if summary["bad"]:
        bad_path = args.out.with_name(args.out.name + ".bad.txt")
        atomic_write_text(bad_path, "".join(f"{p}\t{err}\n" for p, err in summary["bad"]))
        print(f"skipped {len(summary['bad'])} malformed files, listed in {bad_path}", file=sys.stderr)
    if summary["truncated_to_frames"]:
        print(f"note: {summary['truncated_to_frames']} samples were longer than {args.frames} frames and were cut",
              file=sys.stderr)
    print(f"wrote {args.out}: train {summary['train']}, test {summary['test']} ({args.benchmark}); "
          f"{summary['converted_now']} files converted in {summary['seconds']:.1f} s = "
          f"{summary['files_per_s']:.1f} files/s"
          + (f", {summary['from_cache']} from cache" if summary["from_cache"] else ""))
    return 0


def _zsl_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ski-lvlm data zsl",
        description="Write NTU zero-shot manifests (video_path,skeleton_path,label) for a packaged split: "
        "zsl_base_train.csv (base classes, training subjects), zsl_base_val.csv (base classes, test "
        "subjects), zsl_novel_test.csv (all samples of novel classes), plus zsl_base_classes.csv and "
        "zsl_novel_classes.csv. Paths are written relative to OUT.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--split", required=True, choices=list(ZSL_SPLITS),
                   help="55-5 and 48-12 are NTU60; 110-10 and 96-24 NTU120")
    p.add_argument("--videos", required=True, type=Path,
                   help="folder with the RGB videos (S..A..._rgb.avi or S..A....mp4)")
    p.add_argument("--skeletons", type=Path, default=None,
                   help="folder with .skeleton files (omit for video-only manifests)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--benchmark", choices=BENCHMARKS, default="xsub", help="how base classes split into train/val")
    p.add_argument("--missing", action="append", type=Path, default=[], help="extra missing-skeleton lists")
    p.add_argument("--no-default-missing", action="store_true", help="keep samples of the packaged NTU60 missing list")
    return p


@cli_entry("ski-lvlm data zsl")
def zsl_main(argv: list[str] | None = None) -> int:
    args = _zsl_parser().parse_args(argv)
    for flag, d in (("--videos", args.videos), ("--skeletons", args.skeletons)):
        if d is not None and not d.is_dir():
            raise UserError(f"{flag} {d}: not a folder")
    missing: set[str] = set() if args.no_default_missing else load_missing_list()
    for m in args.missing:
        if not m.is_file():
            raise UserError(f"--missing {m}: no such file")
        missing |= load_missing_list(m)
    counts = build_zsl_manifests(args.split, args.videos, args.skeletons, args.out, args.benchmark, missing)
    if counts["base_train"] == 0 or counts["novel_test"] == 0:
        raise UserError(f"split {args.split}: empty manifest(s) {json.dumps(counts)}; check --videos/--skeletons")
    print(f"wrote {args.out}: base_train {counts['base_train']}, base_val {counts['base_val']}, "
          f"novel_test {counts['novel_test']} (videos found {counts['videos_found']}, no skeleton "
          f"{counts['no_skeleton']}, in missing list {counts['missing_skeleton_list']}, "
          f"other dataset/classes {counts['other_dataset']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
