"""Benchmark: ``ski_lvlm.data.video.read_frames`` vs. a plain ``decord.VideoReader(path).get_batch(indices)``.

    .venv/bin/python scripts/bench/video_decode.py                  # generated 320x240 clips
    .venv/bin/python scripts/bench/video_decode.py --videos a.mp4 b.avi --frames 16 100 --repeats 9

Both sides decode the same files and the same indices (``sample_indices(len(vr), n, "segment_middle")``)
and return a numpy ``[t, H, W, 3]`` array; runs are interleaved (ours, baseline, ours, ...) so machine load
hits both equally (the order alternates every repeat). Prints per-setting medians of wall time and of
process CPU time (user+sys of all threads; steadier on a loaded machine) and the median ratio
ours/baseline (target <= 1.0).
Our reader additionally does file checks, a decode deadline (worker thread) and error classification.
torch is imported first, as in every training process: our reader then takes decord's buffer through
DLPack instead of copying it (``--no-torch`` measures the copying path).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ski_lvlm.data.video import read_frames, sample_indices, write_video


def make_videos(folder: Path, n: int, frames: int, height: int, width: int, seed: int = 0) -> list[Path]:
    """Moving-gradient clips with noise, so the encoder produces realistic P-frames (not all-skip)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    out = []
    for k in range(n):
        clip = np.empty((frames, height, width, 3), np.uint8)
        for t in range(frames):
            base = (xx * 255 // width + 3 * t + 40 * k) % 256
            clip[t, ..., 0] = base
            clip[t, ..., 1] = (yy * 255 // height + 2 * t) % 256
            clip[t, ..., 2] = ((xx + yy + 5 * t) % 64) * 4
        clip = np.clip(clip.astype(np.int16) + rng.integers(-12, 13, clip.shape), 0, 255).astype(np.uint8)
        p = folder / f"bench_{k}.mp4"
        write_video(p, clip, fps=30)
        out.append(p)
    return out


def baseline(path: Path, n: int) -> np.ndarray:
    import decord

    vr = decord.VideoReader(str(path))
    idx = sample_indices(len(vr), n, "segment_middle")
    return vr.get_batch(idx.tolist()).asnumpy()


def ours(path: Path, n: int) -> np.ndarray:
    return read_frames(path, n, "segment_middle", backend="decord")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", nargs="*", type=Path, default=None, help="files to use (default: generate)")
    ap.add_argument("--num-videos", type=int, default=3)
    ap.add_argument("--length", type=int, default=300, help="frames per generated clip")
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--frames", type=int, nargs="+", default=[16, 100], help="frames sampled per read")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--no-torch", action="store_true", help="do not import torch (our reader then copies)")
    args = ap.parse_args(argv)
    if not args.no_torch:
        import torch  # noqa: F401  - as in a training process

        torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        videos = args.videos or make_videos(Path(tmp), args.num_videos, args.length, args.height, args.width)
        for v in videos:  # warm the page cache and check both sides agree
            a, b = ours(v, 16), baseline(v, 16)
            assert a.shape == b.shape and np.array_equal(a, b), f"{v}: readers disagree"
        results = {}
        for n in args.frames:
            t_ours, t_base, c_ours, c_base = [], [], [], []
            for rep in range(args.repeats):
                for v in videos:
                    pair = [(ours, t_ours, c_ours), (baseline, t_base, c_base)]
                    for fn, acc, cpu in pair if rep % 2 == 0 else pair[::-1]:
                        c0, t0 = time.process_time(), time.perf_counter()
                        fn(v, n)
                        acc.append(time.perf_counter() - t0)
                        cpu.append(time.process_time() - c0)
            med = statistics.median
            results[n] = {
                "ours_ms": 1000 * med(t_ours),
                "baseline_ms": 1000 * med(t_base),
                "median_pair_ratio": med([a / b for a, b in zip(t_ours, t_base)]),
                "ours_cpu_ms": 1000 * med(c_ours),
                "baseline_cpu_ms": 1000 * med(c_base),
                "cpu_ratio": med(c_ours) / med(c_base),
            }
            r = results[n]
            print(f"{n:4d} frames: wall ours {r['ours_ms']:7.1f} ms vs decord get_batch {r['baseline_ms']:7.1f} ms "
                  f"(median paired ratio {r['median_pair_ratio']:.3f});  CPU ours {r['ours_cpu_ms']:7.1f} ms vs "
                  f"{r['baseline_cpu_ms']:7.1f} ms (ratio {r['cpu_ratio']:.3f})")
        overall = statistics.median(r["median_pair_ratio"] for r in results.values())
        setting = f"torch {'not ' if args.no_torch else ''}loaded"
        print(f"median ratio ours/baseline: {overall:.3f}  ({len(videos)} videos x {args.repeats} repeats, "
              f"{args.width}x{args.height}x{args.length} generated, {setting})" if not args.videos else
              f"median ratio ours/baseline: {overall:.3f} ({setting})")
        if args.json:
            args.json.write_text(json.dumps({"results": results, "median_ratio": overall, "torch": not args.no_torch},
                                            indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
