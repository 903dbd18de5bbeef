"""Instruction data: convert between formats, generate template QA, or write QA with an LLM endpoint.

    # Video-ChatGPT / LLAVIDAL / SKI list-of-lists / LLaVA -> toolkit LLaVA (format auto-detected)
    ski-lvlm data instructions convert VideoInstruct_Dataset.json train.json --video-template "videos/{id}.mp4"
    # ... and back (LLAVIDAL's pose placeholder is <human_pose>, SKI's is <pose>)
    ski-lvlm data instructions convert train.json llavidal.json --to llavidal --pose-token "<human_pose>"
    # ... or a `datasets` folder (Arrow, memory-mapped) that `train lvlm` reads: data.train_json=train_ds
    ski-lvlm data instructions convert train.json train_ds --to datasets

    # deterministic template QA from labels + captions (paths taken from the manifest)
    ski-lvlm data instructions generate --captions WORLD/captions.json --manifest WORLD/train.csv \\
        --classes WORLD/classes.csv --out WORLD/instructions_template.json --per-video 3 --seed 0

    # QA written by any OpenAI-compatible endpoint (ollama, vLLM, OpenAI); key from $OPENAI_API_KEY
    ski-lvlm data instructions llm-qa --captions WORLD/captions.json --manifest WORLD/train.csv \\
        --classes WORLD/classes.csv --out qa_llm.json base_url=http://127.0.0.1:11434/v1 model=llama3.1

Paths written into LLaVA records are relative to the output file's folder. ``llm-qa`` retries a
malformed answer ``attempts`` times, then lists the item in ``<out>.failures.json`` and goes on.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

from ski_lvlm.config import load_config
from ski_lvlm.data.manifest import ManifestDataset, ManifestFormatError
from ski_lvlm.data.instructions import (InstructionFormatError, QAWriterConfig, TemplateSample, make_record,
                                        template_qa, to_llava, to_llavidal, to_ski_qa, to_videochatgpt,
                                        write_qa_with_llm)
from ski_lvlm.utils.errors import UserError, cli_entry
from ski_lvlm.utils.io import atomic_write_json

FORMATS = ("auto", "llava", "videochatgpt", "llavidal", "ski-qa")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ski-lvlm data instructions", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("convert", help="convert between instruction formats")
    c.add_argument("input", help="input JSON")
    c.add_argument("output", help="output JSON")
    c.add_argument("--from", dest="src", default="auto", choices=FORMATS, help="input format (default: detect)")
    c.add_argument("--to", dest="dst", default="llava", choices=FORMATS[1:] + ("datasets",),
                   help="output format (default llava; datasets: a `datasets` folder for train lvlm, paths made "
                        "absolute)")
    c.add_argument("--video-template", default="{id}.mp4",
                   help="video path for formats without one, from the id (default '{id}.mp4')")
    c.add_argument("--skeleton-template", default=None, help="skeleton path from the id, e.g. 'skeletons/{id}.skeleton'")
    c.add_argument("--pose-token", default="<human_pose>", help="pose placeholder written by --to llavidal")

    for name, doc in (("generate", "deterministic template QA from labels and captions"),
                      ("llm-qa", "QA written by an OpenAI-compatible chat endpoint")):
        g = sub.add_parser(name, help=doc)
        g.add_argument("--captions", help="{id: [caption, ...]} JSON")
        g.add_argument("--labels", help="{id: [label name, ...]} JSON (labels in temporal order)")
        g.add_argument("--manifest", help="video_path,skeleton_path,label CSV: the samples (+ paths, labels)")
        g.add_argument("--classes", help="id,name CSV naming the manifest's labels")
        g.add_argument("--out", required=True, help="output JSON")
        g.add_argument("--format", default="llava", choices=["llava", "videochatgpt"], help="output format")
        g.add_argument("--video-template", default="{id}.mp4", help="video path when there is no manifest")
        g.add_argument("--skeleton-template", default=None, help="skeleton path when there is no manifest")
        if name == "generate":
            g.add_argument("--per-video", type=int, default=3, help="QA pairs per video (default 3)")
            g.add_argument("--seed", type=int, default=0)
        else:
            g.add_argument("--config", help="YAML with QAWriterConfig fields (base_url, model, attempts, ...)")
            g.add_argument("overrides", nargs="*", help="key=value overrides, e.g. base_url=http://127.0.0.1:8000/v1")
    return p


def _load_json(path: str) -> object:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: not found")
    try:
        return json.loads(p.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise UserError(f"{p}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None


def _read_classes(path: str) -> dict[int, str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"id", "name"} <= rows[0].keys():
        raise UserError(f"{path}: expected an id,name CSV")
    return {int(r["id"]): r["name"] for r in rows}


def _samples(args: argparse.Namespace) -> tuple[list[TemplateSample], dict[str, tuple[str | None, str | None]], list[str]]:
    """Samples with labels/captions, their absolute (video, skeleton) paths when known, all label names."""
    captions = _load_json(args.captions) if args.captions else {}
    labels = _load_json(args.labels) if args.labels else {}
    for name, obj in (("--captions", captions), ("--labels", labels)):
        if not isinstance(obj, dict) or not all(isinstance(v, list) for v in obj.values()):
            raise UserError(f"{name}: expected a JSON object {{id: [text, ...]}}")
    paths: dict[str, tuple[str | None, str | None]] = {}
    names: list[str] = sorted({x for v in labels.values() for x in v})
    if args.manifest:
        classes = _read_classes(args.classes) if args.classes else None
        if classes:
            names = list(classes.values())
        try:
            ds = ManifestDataset(args.manifest)
        except (ManifestFormatError, OSError) as e:
            raise UserError(str(e)) from None
        order = []
        for i in range(len(ds)):
            r = ds.record(i)
            if r.key in paths:
                continue
            paths[r.key] = (r.video_path, r.skeleton_path)
            order.append(r.key)
            if classes is not None and r.key not in labels and r.label >= 0:
                if r.label not in classes:
                    raise UserError(f"{args.manifest}: row {i}: label {r.label} not in {args.classes}")
                labels[r.key] = [classes[r.label]]
    else:
        order = list(dict.fromkeys(list(captions) + list(labels)))
    samples = [TemplateSample(k, list(labels.get(k, [])), list(captions.get(k, []))) for k in order]
    samples = [s for s in samples if s.labels or s.captions]
    if not samples:
        raise UserError("no sample has labels or captions (give --captions and/or --labels or --manifest --classes)")
    return samples, paths, names


def _write_qa(args: argparse.Namespace, qa: list[dict], paths: dict) -> int:
    out = Path(args.out)
    if args.format == "videochatgpt":
        atomic_write_json(out, qa)
        return len(qa)
    out_dir = out.resolve().parent
    recs = []
    for it in qa:
        vid = it["video_id"]
        if vid in paths:
            video, skel = (os.path.relpath(p, out_dir) if p else None for p in paths[vid])
        else:
            video = args.video_template.format(id=vid)
            skel = args.skeleton_template.format(id=vid) if args.skeleton_template else None
        recs.append(make_record(vid, [(it["q"], it["a"])], video, skel))
    atomic_write_json(out, recs)
    return len(recs)


@cli_entry("ski-lvlm data instructions")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "convert":
        data = _load_json(args.input)
        try:
            records = to_llava(data, args.src, args.video_template, args.skeleton_template, source=args.input)
        except InstructionFormatError as e:
            raise UserError(str(e)) from None
        if args.dst == "datasets":
            from ski_lvlm.data.instruction_sets import save_instruction_set

            n = save_instruction_set(records, args.output, root=Path(args.input).parent)
            print(f"{args.input}: {len(records)} records -> {args.output} (datasets folder, {n} rows)")
            return 0
        out = {"llava": lambda r: r, "videochatgpt": to_videochatgpt, "ski-qa": to_ski_qa,
               "llavidal": lambda r: to_llavidal(r, args.pose_token)}[args.dst](records)
        atomic_write_json(args.output, out)
        print(f"{args.input}: {len(records)} records -> {args.output} ({args.dst}, {len(out)} items)")
        return 0

    if args.classes and not args.manifest:
        raise UserError("--classes needs --manifest (it names the manifest's labels)")
    samples, paths, names = _samples(args)
    if args.cmd == "generate":
        if args.per_video < 1:
            raise UserError("--per-video: must be >= 1")
        qa = template_qa(samples, seed=args.seed, per_video=args.per_video, all_labels=names)
        n = _write_qa(args, qa, paths)
        print(f"{len(samples)} videos -> {len(qa)} QA pairs -> {args.out} ({args.format}, {n} items)")
        return 0

    from ski_lvlm.llm_client import ChatClient

    cfg = load_config(QAWriterConfig, args.config, args.overrides)
    client = ChatClient(cfg.base_url, cfg.model, api_key_env=cfg.api_key_env, timeout=cfg.timeout,
                        max_retries=cfg.max_retries)
    qa, failures = write_qa_with_llm(samples, client, num_questions=cfg.num_questions, attempts=cfg.attempts,
                                     progress=True, temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=cfg.seed)
    n = _write_qa(args, qa, paths) if qa else 0
    fail_path = Path(str(args.out) + ".failures.json")
    atomic_write_json(fail_path, {"endpoint": cfg.base_url, "model": cfg.model, "failed": failures,
                                  "ok_videos": len(samples) - len(failures)})
    print(f"{len(samples)} videos: {len(samples) - len(failures)} answered, {len(failures)} failed "
          f"(listed in {fail_path}); {len(qa)} QA pairs -> {args.out if qa else '(nothing written)'} ({n} items)")
    if not qa:
        raise UserError(f"no usable answer from {cfg.base_url} (model {cfg.model}); see {fail_path}")
    return 0
