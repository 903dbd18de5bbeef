"""Charades annotations -> caption benchmark, QA and instruction sets, a manifest and a report.

    ski-lvlm data charades --csv Charades_v1_test.csv --classes Charades_v1_classes.txt \\
        --videos Charades_v1_480 --out data/charades_test

Writes into ``--out`` (paths inside are relative to that folder):
    caption_eval.json       {video_id: [reference description, ...]}  (rule: ski_lvlm.data.charades)
    caption_benchmark.json  [{video_name, Q, A, references}]  (SKI's test_set_captions.json shape)
    qa.json                 Video-ChatGPT [{video_id, q, a}] template QA (actions, descriptions, objects, scene)
    instructions.json       the same QA as toolkit LLaVA records
    manifest.csv            video_path,skeleton_path,label (label = the longest action's class id, -1 if none)
    classes.csv             id,name from the classes file (c092 -> 92)
    report.json             parse report, empty-field counts, videos not found, reference sources
Videos not found under ``--videos`` are left out of every set (listed in the report) unless
``--keep-missing`` is given; the original LLAVIDAL evaluator silently scored them as zeros.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
from pathlib import Path

from ski_lvlm.data.charades import (DESCRIBE_QUESTION, caption_benchmark, caption_eval_set,
                                    main_action, read_charades_classes, read_charades_csv)
from ski_lvlm.data.instructions import TemplateSample, from_videochatgpt, template_qa
from ski_lvlm.data.video import VIDEO_EXTS, find_video
from ski_lvlm.utils.errors import UserError, cli_entry
from ski_lvlm.utils.io import atomic_dir, check_writable_parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ski-lvlm data charades", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", required=True, help="Charades_v1_test.csv or Charades_v1_train.csv")
    p.add_argument("--classes", required=True, help="Charades_v1_classes.txt ('c000 Holding some clothes' lines)")
    p.add_argument("--videos", required=True, help="folder with <id>.mp4 (or .avi/.mkv/.mov/.webm) videos")
    p.add_argument("--out", required=True, help="output folder (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed CSV rows (listed in report.json) instead of failing")
    p.add_argument("--keep-missing", action="store_true", help="keep videos whose file is not found in every set")
    p.add_argument("--no-script-fallback", action="store_true",
                   help="do not use the script as the reference when a video has no description")
    p.add_argument("--question", default=DESCRIBE_QUESTION, help="question of the caption benchmark")
    p.add_argument("--per-video", type=int, default=3, help="template QA pairs per video (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the template QA draw (default 0)")
    return p


def _check_inputs(args: argparse.Namespace, csv_path: Path, classes_path: Path, videos_dir: Path, out: Path) -> None:
    """Raise one :class:`UserError` listing every missing input and bad option."""
    problems = [f"{p}: not found" for p in (csv_path, classes_path) if not p.is_file()]
    if not videos_dir.is_dir():
        problems.append(f"{videos_dir}: video folder not found")
    if args.per_video < 1:
        problems.append("--per-video: must be >= 1")
    problems += check_writable_parent(out)
    if out.exists() and not args.overwrite:
        problems.append(f"{out}: already exists (pass --overwrite to replace it)")
    if problems:
        raise UserError("\n  ".join(problems))


def _find_videos(videos, videos_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """Video id -> file under ``videos_dir``, and the ids with no file (in CSV order)."""
    found: dict[str, Path] = {}
    missing_videos = []
    for v in videos:
        path = find_video(videos_dir, v.id)
        if path is None:
            missing_videos.append(v.id)
        else:
            found[v.id] = path
    return found, missing_videos


def _template_samples(kept, classes: dict[str, str], refs: dict[str, list[str]]) -> list[TemplateSample]:
    """Per video: its action labels in time order, its references, and object/scene facts for QA."""
    samples = []
    for v in kept:
        labels = [classes[a.cls] for a in sorted(v.actions, key=lambda a: (a.start, a.end))]
        facts = []
        if v.objects:
            facts.append(("Which objects does the person interact with?",
                          "The person interacts with " + ", ".join(v.objects) + "."))
        if v.scene:
            facts.append(("Where does this video take place?", f"It takes place in a {v.scene.lower()}."))
        samples.append(TemplateSample(v.id, labels, refs.get(v.id, []), facts))
    return samples


def _csv_text(header: list[str], rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _write_outputs(out: Path, overwrite: bool, json_files: dict[str, object], text_files: dict[str, str]) -> None:
    """Write the JSON files (indented, UTF-8) and the CSV texts into ``out`` atomically."""
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for name, obj in json_files.items():
            (tmp / name).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        for name, text in text_files.items():
            (tmp / name).write_text(text, encoding="utf-8")


@cli_entry("ski-lvlm data charades")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    csv_path, classes_path, videos_dir, out = Path(args.csv), Path(args.classes), Path(args.videos), Path(args.out)
    _check_inputs(args, csv_path, classes_path, videos_dir, out)
    classes = read_charades_classes(classes_path)  # a CharadesFormatError names the file and line
    videos, report = read_charades_csv(csv_path, skip_bad=args.skip_bad)
    if not videos:
        raise UserError(f"{csv_path}: no usable rows")

    unknown = sorted({a.cls for v in videos for a in v.actions if a.cls not in classes})
    if unknown:
        raise UserError(f"{csv_path}: action classes not in {classes_path}: {', '.join(unknown[:10])}")

    found, missing_videos = _find_videos(videos, videos_dir)
    kept = videos if args.keep_missing else [v for v in videos if v.id in found]
    if not kept:
        raise UserError(f"none of the {len(videos)} videos of {csv_path} were found in {videos_dir} "
                        f"(expected <id>{'|'.join(VIDEO_EXTS)})")

    refs, ref_counts = caption_eval_set(kept, fallback_to_script=not args.no_script_fallback)
    out_abs = out.resolve()
    # video paths relative to --out; a missing video kept with --keep-missing gets <videos>/<id>.mp4
    rel = {v.id: os.path.relpath(found.get(v.id, videos_dir / f"{v.id}.mp4").resolve(), out_abs) for v in kept}

    samples = _template_samples(kept, classes, refs)
    qa = template_qa(samples, seed=args.seed, per_video=args.per_video, all_labels=list(classes.values()))
    no_qa = sorted({s.video_id for s in samples} - {q["video_id"] for q in qa})
    instructions = from_videochatgpt(qa, video_template="{id}")
    for rec in instructions:
        rec["video"] = rel[rec["id"]]
    manifest_rows = []
    for v in kept:
        act = main_action(v)
        manifest_rows.append([rel[v.id], "", act.index if act else -1])

    report_obj = {
        "csv": str(csv_path), "classes": str(classes_path), "videos_dir": str(videos_dir),
        "parse": report.to_dict(), "num_classes": len(classes),
        "videos_in_csv": len(videos), "videos_found": len(found), "videos_missing": missing_videos,
        "missing_videos_kept": bool(args.keep_missing), "videos_written": len(kept),
        "references": dict(ref_counts), "caption_eval_videos": len(refs),
        "videos_without_actions": sum(1 for v in kept if not v.actions),
        "qa_items": len(qa), "videos_without_qa": no_qa, "seed": args.seed, "per_video": args.per_video,
    }
    _write_outputs(
        out, args.overwrite,
        {"caption_eval.json": refs, "caption_benchmark.json": caption_benchmark(refs, args.question), "qa.json": qa,
         "instructions.json": instructions, "report.json": report_obj},
        {"manifest.csv": _csv_text(["video_path", "skeleton_path", "label"], manifest_rows),
         "classes.csv": _csv_text(["id", "name"], ([int(c[1:]), n] for c, n in classes.items()))},
    )

    miss = {k: n for k, n in report.missing.items() if n}
    print(f"{csv_path}: {report.rows} videos parsed, {len(report.skipped)} rows skipped; empty fields: "
          f"{', '.join(f'{k}={n}' for k, n in miss.items()) or 'none'}")
    print(f"videos: {len(found)} found, {len(missing_videos)} missing"
          f"{' (kept)' if args.keep_missing and missing_videos else ' (left out)' if missing_videos else ''}")
    print(f"caption eval: {len(refs)} videos ({ref_counts.get('from_script', 0)} from script, "
          f"{ref_counts.get('no_reference', 0)} without reference); QA: {len(qa)} items")
    print(f"wrote {out}/{{caption_eval,caption_benchmark,qa,instructions,report}}.json, manifest.csv, classes.csv")
    return 0
