"""ski-lvlm eval probe: a linear probe of a video encoder's features on a labelled train/test split.

    ski-lvlm eval probe --world data/world --encoder lvlm:runs/quickstart/lvlm_instruct --out runs/probe_lvlm
    ski-lvlm eval probe --world data/world --encoder embedding:runs/quickstart/ski_vlm/final --out runs/probe_emb
    ski-lvlm eval probe --world data/world --encoder ski_vlm:runs/quickstart/ski_vlm/final --tokens temporal \\
        --val-from-train --out runs/probe_val
    ski-lvlm eval probe --train ntu/train.csv --test ntu/test.csv --classes ntu/classes.csv \\
        --encoder clip:ViT-B-32:openai --frames 8 --out runs/probe_ntu

Encoders (``ski_lvlm.metrics.probe``): ``embedding:FOLDER`` (a SKI-VLM / ViFi-CLIP folder's pooled video
embedding, what zero-shot uses), ``clip:ARCH[:WEIGHTS]`` / ``ski_vlm:FOLDER`` (the LVLM video pathway with
that tower: pooled tokens ``[n_v, d_v]``, flattened), ``lvlm:FOLDER`` (that pathway exactly as an LVLM
run or export has it) and ``cache:FOLDER`` (a ``ski-lvlm data features`` cache). The probe standardises
the features and fits multinomial logistic regression with a fixed ``C`` on the train manifest.

``--val-from-train`` never reads the test manifest: it holds out every third training subject (clip
names ``...PNNN...``) as validation, so settings are chosen on training subjects only.

Writes ``OUT/probe.json`` (atomically): ``accuracy`` (top-1), ``per_class``, ``mean_class_accuracy``,
``train_accuracy``, ``n_train``, ``n_test``, ``dim``, ``chance``, ``features`` (what they are),
``encoder_spec``, ``key`` (encoder weights hash + settings + manifest hashes; ``--reuse`` keeps an
existing probe.json whose key matches).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ski_lvlm.utils.errors import UserError, cli_entry

PROG = "ski-lvlm eval probe"


def build_parser() -> argparse.ArgumentParser:
    from ski_lvlm.metrics.probe import DEFAULT_C, TOKEN_CHOICES

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Linear probe (standardised features, logistic regression) of a video encoder: how much of "
                    "the labels its features hold. Fits on the train manifest, reports top-1 on the test manifest "
                    "(or on held-out training subjects with --val-from-train). Writes OUT/probe.json.",
        epilog="example: ski-lvlm eval probe --world runs/quickstart/world --encoder lvlm:runs/quickstart/lvlm_instruct "
               "--out runs/probe")
    p.add_argument("--encoder", required=True,
                   help="embedding:FOLDER | clip:ARCH[:WEIGHTS] | ski_vlm:FOLDER | lvlm:FOLDER | cache:FOLDER")
    p.add_argument("--world", help="world / dataset folder: uses train.csv, test.csv and classes.csv in it")
    p.add_argument("--train", help="video_path,skeleton_path,label manifest to fit on (instead of --world)")
    p.add_argument("--test", help="manifest to score on (instead of --world)")
    p.add_argument("--classes", help="id,name class CSV of both manifests (instead of --world)")
    p.add_argument("--val-from-train", action="store_true",
                   help="score on every third training subject instead of the test manifest (which is not read)")
    p.add_argument("--out", required=True, help="output folder for probe.json")
    p.add_argument("--tokens", choices=TOKEN_CHOICES, default="all",
                   help="token encoders: all pooled rows (default), the per-frame rows only, or the per-patch rows only")
    p.add_argument("--frames", type=int, default=None,
                   help="frames per clip (default: the LVLM recipe's 8 for clip:/ski_vlm:, the run's own for lvlm:, "
                        "the training setting for embedding:)")
    p.add_argument("--max-frames", type=int, default=None, help="temporal token rows for clip:/ski_vlm: (default = --frames)")
    p.add_argument("--sampling", choices=["segment_middle", "uniform"], default=None,
                   help="frame positions (default: segment_middle, or the run's own for lvlm:)")
    p.add_argument("--layer", type=int, default=-2, help="tower block whose patch tokens are pooled (default -2)")
    p.add_argument("--C", type=float, default=DEFAULT_C, help=f"inverse L2 strength of the probe (default {DEFAULT_C})")
    p.add_argument("--batch-size", type=int, default=8, help="videos per tower call (default 8)")
    p.add_argument("--reuse", action="store_true", help="keep OUT/probe.json when it was made with the same key")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _splits(args) -> tuple[Path, Path | None, Path]:
    if args.world:
        w = Path(args.world)
        train, test, classes = (Path(args.train or w / "train.csv"), Path(args.test or w / "test.csv"),
                                Path(args.classes or w / "classes.csv"))
    elif args.train and args.classes and (args.test or args.val_from_train):
        train, test, classes = Path(args.train), Path(args.test) if args.test else None, Path(args.classes)
    else:
        raise UserError("give --world, or --train and --classes with --test (or --val-from-train)")
    missing = [str(p) for p in (train, classes) + (() if args.val_from_train else (test,)) if not p.is_file()]
    if missing:
        raise UserError(f"not found: {', '.join(missing)}")
    return train, None if args.val_from_train else test, classes


@cli_entry(PROG)
def main(argv: list[str] | None = None) -> int:
    from ski_lvlm.data.feature_cache import StaleCacheError
    from ski_lvlm.data.video import VideoDecodeError
    from ski_lvlm.metrics.probe import load_probe_encoder, probe_key, run_probe
    from ski_lvlm.utils.io import atomic_write_json, check_writable_parent
    from ski_lvlm.utils.runtime import pick_device

    args = build_parser().parse_args(argv)
    problems = check_writable_parent(args.out)
    if args.frames is not None and args.frames < 1:
        problems.append("--frames: must be >= 1")
    if args.max_frames is not None and args.max_frames < (args.frames or 1):
        problems.append("--max-frames: must be >= --frames")
    if not args.C > 0:
        problems.append("--C: must be > 0")
    if args.batch_size < 1:
        problems.append("--batch-size: must be >= 1")
    if problems:
        raise UserError("; ".join(problems))
    train, test, classes = _splits(args)
    device = pick_device(args.device)  # DeviceError is reported by cli_entry
    try:
        encoder = load_probe_encoder(args.encoder, tokens=args.tokens, num_frames=args.frames,
                                     max_frames=args.max_frames, sampling=args.sampling, layer=args.layer,
                                     device=device, batch_size=args.batch_size)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(f"--encoder {args.encoder}: {e}") from None
    out = Path(args.out) / "probe.json"
    if args.reuse and out.is_file():
        old = json.loads(out.read_text(encoding="utf-8"))
        key = probe_key(encoder.identity(), train, test, classes, C=args.C, val_from_train=args.val_from_train)
        if old.get("key") == key:
            print(f"{PROG}: {out} has the same encoder and data; kept (top-1 {100 * old['accuracy']:.1f}%)")
            return 0
    try:
        res = run_probe(encoder, train, test, classes, C=args.C, val_from_train=args.val_from_train,
                        progress=not args.no_progress)
    except (ValueError, KeyError, VideoDecodeError, StaleCacheError) as e:
        raise UserError(str(e)) from None
    res["encoder_spec"] = args.encoder
    atomic_write_json(out, res)
    print(f"{PROG}: top-1 {100 * res['accuracy']:.1f}% on {res['n_test']} clips ({res['split']}); chance "
          f"{100 * res['chance']:.1f}%, train {100 * res['train_accuracy']:.1f}%, {res['n_train']} training clips, "
          f"{res['dim']}-d features")
    print(f"  features: {res['features']}")
    print(f"{PROG}: wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
