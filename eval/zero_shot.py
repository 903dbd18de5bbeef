"""Zero-shot action recognition on unseen classes: SkeletonCLIP, ViFi-CLIP and SKI-VLM side by side.

Run (synthetic world, after the quickstart's training stages)::

    ski-lvlm eval zero-shot --world data/world --out runs/zero_shot \\
        --model skeleton=runs/skeleton_clip/final --model vifi=runs/vifi_clip/final --model ski=runs/ski_vlm/final

Each ``--model LABEL=FOLDER`` is a model folder written by the training recipes (``model_config.json`` +
``model.safetensors``), or the run folder holding it (its ``final/``; ``model/`` in runs from before issue
14); ``FOLDER#teacher`` selects the co-trained SkeletonCLIP inside a SKI-VLM folder. Video models (ViFi-CLIP, SKI-VLM) are evaluated from video alone: the skeleton
column of the manifest is never read, so no skeleton file needs to exist. SkeletonCLIP is evaluated
skeleton-to-text (it has no video branch). Class prompts are rebuilt from the novel class names with the
templates the model was trained with.

Protocol (``original-system.md`` §4.6): every sample counts (no ``drop_last``); 1 view = the middle
frame of each of ``t`` segments; ``--views N`` adds N-1 seeded random-segment clips and averages the
softmax scores over views. Writes ``OUT/results.json``, ``OUT/results.md`` (the table, with chance
level), ``OUT/confusion_<label>.png`` per model and ``OUT/scores_<label>.jsonl`` (per-clip top-1/top-5
correctness, what ``ski-lvlm eval compare`` reads as ``OUT#<label>``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ski_lvlm.utils.errors import UserError, cli_entry

__all__ = ["build_parser", "main"]  # the evaluation itself: ski_lvlm.evaluation.zero_shot


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ski-lvlm eval zero-shot",
        description="Zero-shot action recognition on unseen classes. Video models use video only (no skeleton "
                    "file is read); SkeletonCLIP models use skeletons. Writes results.json, results.md and "
                    "confusion-matrix PNGs.",
        epilog="example: ski-lvlm eval zero-shot --world data/world --model ski=runs/ski_vlm/final --out runs/zs")
    p.add_argument("--model", action="append", required=True, metavar="LABEL=FOLDER",
                   help="a model or run folder (repeat for a side-by-side table); FOLDER#teacher evaluates the "
                        "skeleton teacher inside a SKI-VLM folder")
    p.add_argument("--world", help="a synthetic world / dataset folder: uses zsl_novel_test.csv + zsl_novel_classes.csv")
    p.add_argument("--manifest", help="video_path,skeleton_path,label CSV (instead of --world)")
    p.add_argument("--classes", help="id,name class CSV of that manifest")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: what the model was trained with)")
    p.add_argument("--views", type=int, default=1, help="temporal views per clip, scores averaged (default 1)")
    p.add_argument("--template", action="append", default=None,
                   help="prompt template with {} (repeatable; default: the model's training templates)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    return p


@cli_entry("ski-lvlm eval zero-shot")
def main(argv: list[str] | None = None) -> int:
    from ski_lvlm.utils.io import check_writable_parent
    from ski_lvlm.utils.runtime import pick_device

    args = build_parser().parse_args(argv)
    if args.world:
        manifest = Path(args.manifest or Path(args.world) / "zsl_novel_test.csv")
        classes = Path(args.classes or Path(args.world) / "zsl_novel_classes.csv")
    elif args.manifest and args.classes:
        manifest, classes = Path(args.manifest), Path(args.classes)
    else:
        raise UserError("give --world, or --manifest together with --classes")
    if args.views < 1 or (args.frames is not None and args.frames < 1):
        raise UserError("--views and --frames must be >= 1")
    models = {}
    for item in args.model:
        if "=" not in item:
            raise UserError(f"--model {item!r}: expected LABEL=FOLDER")
        label, folder = item.split("=", 1)
        if label in models:
            raise UserError(f"--model: label {label!r} given twice")
        models[label] = Path(folder)
    problems = check_writable_parent(args.out)
    if problems:
        raise UserError("; ".join(problems))
    device = pick_device(args.device)  # DeviceError is reported by cli_entry
    from ski_lvlm.evaluation.zero_shot import evaluate_zero_shot, markdown_table

    out = Path(args.out)
    results = evaluate_zero_shot(models, manifest, classes, out, device=device, num_frames=args.frames,
                                 views=args.views, batch_size=args.batch_size, templates=args.template,
                                 num_workers=args.num_workers)
    table = markdown_table(results)
    print(table)
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
