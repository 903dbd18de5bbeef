"""Caption many videos with a trained / exported SKI-LVLM; results go to a JSONL file (resumable).

    ski-lvlm caption clips/*.mp4 --model exports/lvlm_instruct --out captions.jsonl
    ski-lvlm caption WORLD/videos --model exports/lvlm_instruct --out captions.jsonl --batch-size 16
    ski-lvlm caption a.mp4 --model exports/lvlm_instruct --prompt "What is the person doing?"

VIDEO arguments are files or folders (searched recursively for .mp4/.avi/.mkv/.webm/.mov/...).
Each line of --out is {"video", "caption", "prompt", "model", "seconds"} or, for a video that cannot be
decoded, {"video", "error", "reason", ...}: a bad file is recorded, never a crash. Videos already in
--out (same path) are skipped, so rerunning the command resumes; --retry-errors retries recorded
errors. Without --out the lines are printed. --model defaults to $SKI_LVLM_MODEL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ski_lvlm.utils.errors import UserError, cli_entry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ski-lvlm caption", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders")
    p.add_argument("--model", default=os.environ.get("SKI_LVLM_MODEL"),
                   help="export folder (`ski-lvlm export`) or a run's final/ folder (default: $SKI_LVLM_MODEL)")
    p.add_argument("--out", type=Path, default=None, help="JSONL file to append to (resumable); default: stdout")
    p.add_argument("--prompt", default=None, help="question to ask (default: 'Describe the video in detail.')")
    p.add_argument("--batch-size", type=int, default=8, help="videos per generate call")
    p.add_argument("--max-new-tokens", type=int, default=64, help="longest caption in tokens")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (deterministic)")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling when temperature > 0")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (temperature > 0)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default=None, choices=("fp32", "bf16", "fp16"), help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--fast", choices=("auto", "on", "off"), default="auto",
                   help="static-cache compiled decoding (auto: on for CUDA)")
    p.add_argument("--retry-errors", action="store_true", help="caption again videos recorded with an error")
    return p


def _done(out: Path | None, retry_errors: bool) -> set[str]:
    """Videos already in ``out``; a torn last line (killed mid-write) is ignored and rewritten later."""
    if out is None or not out.is_file():
        return set()
    done = set()
    for n, line in enumerate(out.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            print(f"ski-lvlm caption: {out}:{n}: unreadable line ignored", file=sys.stderr)
            continue
        if "caption" in rec or not retry_errors:
            done.add(rec.get("video"))
    return done


@cli_entry("ski-lvlm caption")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not args.model:
        raise UserError("--model is required (an export folder; or set SKI_LVLM_MODEL)")
    if not Path(args.model).is_dir():
        raise UserError(f"--model {args.model}: folder not found")
    if args.batch_size < 1 or args.max_new_tokens < 1:
        raise UserError("--batch-size and --max-new-tokens must be >= 1")
    from tqdm import tqdm

    from ski_lvlm.export import CorruptExportError
    from ski_lvlm.inference import Captioner, find_videos

    videos = [str(v) for v in find_videos(args.videos)]
    missing_dirs = [v for v in args.videos if not Path(v).exists()]
    if not videos:
        raise UserError(f"no videos found in {args.videos}")
    done = _done(args.out, args.retry_errors)
    todo = list(dict.fromkeys(v for v in videos if v not in done))
    skipped = len(set(videos)) - len(todo)
    if missing_dirs:
        print(f"ski-lvlm caption: {len(missing_dirs)} path(s) do not exist; recorded as errors", file=sys.stderr)
    if not todo:
        print(f"all {len(set(videos))} videos already in {args.out}; nothing to do")
        return 0
    try:
        cap = Captioner.from_pretrained(args.model, device=args.device, dtype=args.dtype,
                                        fast={"auto": None, "on": True, "off": False}[args.fast])
    except (CorruptExportError, FileNotFoundError, ValueError) as e:
        raise UserError(f"--model {args.model}: {e}") from None
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.is_file() and args.out.stat().st_size and not args.out.read_bytes().endswith(b"\n"):
            with open(args.out, "a", encoding="utf-8") as f:
                f.write("\n")  # a torn last line stays on its own line
    sink = open(args.out, "a", encoding="utf-8") if args.out is not None else sys.stdout
    n_ok = n_err = 0
    try:
        bar = tqdm(total=len(todo), desc="caption", unit="video", dynamic_ncols=True, file=sys.stderr)
        for r in cap.caption_iter(todo, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  top_p=args.top_p, batch_size=args.batch_size, errors="record", seed=args.seed):
            rec = {"video": r.video, "model": str(args.model), "prompt": args.prompt or "default",
                   "seconds": round(r.seconds, 4)}
            if r.ok:
                rec["caption"] = r.text
                n_ok += 1
            else:
                rec.update(error=r.error, reason=r.reason)
                n_err += 1
            sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
            sink.flush()
            bar.update(1)
        bar.close()
    finally:
        if sink is not sys.stdout:
            sink.close()
    where = f" -> {args.out}" if args.out else ""
    print(f"captioned {n_ok} videos, {n_err} errors, {skipped} already done{where}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
