"""ski-lvlm eval captions: caption (and QA) benchmark of a SKI-LVLM checkpoint, resumable.

    ski-lvlm eval captions --model runs/lvlm_instruct/final --eval-set WORLD/Charades_v1_test.csv \\
        --videos WORLD/videos --out runs/captions_instruct
    ski-lvlm eval captions --model export/ --eval-set Charades/Charades_v1_test.csv --videos Charades_v1_480 \\
        --out runs/charades_captions --batch-size 16

Eval sets (detected from the file):
* a Charades CSV (``Charades_v1_test.csv``, also the synthetic world's): references = the descriptions
  (``ski_lvlm.data.charades`` rule; the script when there is none); groups = the main (longest) action
  class, named through ``Charades_v1_classes.txt`` next to the CSV (or ``--classes``), and the scene;
* a caption JSON ``{video_id: [reference, ...]}`` or SKI's ``[{video_name, Q, A, references}]``;
* a QA JSON in Video-ChatGPT form ``[{video_id, q, a}]`` (or ``{video_name, Q, A}``); an item with
  ``options`` (a list, or a dict letter -> text) is multiple choice and ``a`` is its letter or text.
With a caption set, a ``qa.json`` next to it (the synthetic world's) is evaluated too (``--qa FILE`` picks
another, ``--qa none`` skips QA).

Video ``<id>`` is ``--videos/<id>.<ext>`` for ``ski_lvlm.data.video.VIDEO_EXTS`` (default: ``videos/`` next to the eval set).
The model sees video only: no skeleton is read, also for models trained with skeleton injection.
Generation is greedy, batched (left padding), with the KV cache, through ``ski_lvlm.inference.Captioner``
(the same path as ``ski-lvlm caption``); each video is encoded once by the model's own frozen tower with
``read_frames(path, config.num_frames, config.frame_sampling)``. ``--dtype bfloat16`` casts the model for
generation (faster on CPU, other numbers; ``auto`` = bf16 on CUDA, fp32 on CPU); the default, ``saved``,
keeps the weights' own dtype as before.
The work is ``ski_lvlm.evaluation.evaluate_captions``; this file only reads the command line.

Output in ``--out``:
* ``predictions.jsonl``: one line per finished item, appended and flushed as it is produced, so a run
  that stops (Ctrl-C, a crash, a kill) resumes where it stopped: finished items are never regenerated.
  A video that cannot be decoded gives a line with ``error`` (listed in the results, not a crash; rerun
  with ``--retry-errors`` to try those again).
* ``settings.json``: model and generation settings; a rerun with different settings into the same
  folder is refused (it would mix predictions) unless ``--overwrite``.
* ``results.json`` / ``results.md``: BLEU-1..4, METEOR (coco's METEOR 1.5 jar when Java is present),
  ROUGE-L, CIDEr-D overall (``ski_lvlm.metrics.captions.compute_caption_metrics``) and per action class / scene,
  QA scores, errors. Per-group numbers are the means of the per-item scores of the overall evaluation
  (CIDEr-D document frequencies from the whole test set, sentence-level BLEU), so tiny groups stay
  comparable; the overall row is the coco corpus-level score.
* ``judge_input_captions.jsonl``: finished captions in the ``ski-lvlm eval judge`` input format.

Grounding (``ski_lvlm.metrics.grounding``): with a ``class_phrases.json`` next to the eval set (the
synthetic world writes one; ``--phrases FILE`` picks another, ``--phrases none`` skips it) the results
also hold action accuracy (the caption names the clip's class and no other), side and tempo accuracy,
per-class action accuracy and closed-QA accuracy per question type (which hand/leg, how fast, anyone
else, where, ...). Without phrases (Charades data) these are reported as n/a, never guessed. The number
of distinct captions and the share of the most frequent one need no phrases and are always reported.

Open-ended QA is scored automatically (normalised exact match and SQuAD-style token F1, labelled as such)
and, with ``--judge-url``/``--judge-model`` (an OpenAI-compatible endpoint), by the LLM judge
(``ski_lvlm.metrics.qa.score_open_qa``: yes/no accuracy + 0-5 score). Multiple choice: accuracy with
``ski_lvlm.metrics.qa.mcq_accuracy``'s answer parsing.
"""


from __future__ import annotations

import argparse
from pathlib import Path

from ski_lvlm.utils.errors import UserError, cli_entry

PROG = "ski-lvlm eval captions"

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Caption / QA benchmark of a SKI-LVLM model (a run's final/ folder or an export). Video only; "
                    "greedy batched generation; resumable predictions.jsonl; coco caption metrics overall and "
                    "per action class / scene; QA exact-match/F1 (+ LLM judge with --judge-url).",
        epilog="example: ski-lvlm eval captions --model runs/lvlm_instruct/final --eval-set WORLD/Charades_v1_test.csv "
               "--out runs/captions")
    p.add_argument("--model", required=True, help="model folder: RUN/final or an exported model")
    p.add_argument("--eval-set", required=True,
                   help="Charades CSV, caption JSON {id: [refs]} or QA JSON [{video_id, q, a(, options)}]")
    p.add_argument("--videos", default=None, help="folder with <id>.mp4 etc. (default: videos/ next to the eval set)")
    p.add_argument("--classes", default=None, help="Charades_v1_classes.txt (default: next to the CSV)")
    p.add_argument("--qa", default="auto", help="QA JSON to evaluate too; 'auto' (default) = qa.json next to the eval set; 'none' = no QA")
    p.add_argument("--phrases", default="auto",
                   help="class_phrases.json for the grounding scores; 'auto' (default) = the one next to the eval "
                        "set; 'none' = report them as n/a")
    p.add_argument("--out", required=True, help="output folder (a rerun into it resumes)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate call (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="new tokens per answer (default 64)")
    p.add_argument("--prompt", default=None, help="caption question (default: the SKI/Charades description question)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N items (smoke tests)")
    p.add_argument("--meteor", choices=["auto", "java", "off"], default="auto",
                   help="METEOR through the METEOR 1.5 jar when Java is present (auto, default), required (java) or skipped (off)")
    p.add_argument("--judge-url", default=None, help="OpenAI-compatible endpoint for judging open-ended QA")
    p.add_argument("--judge-model", default=None, help="judge model name (with --judge-url)")
    p.add_argument("--retry-errors", action="store_true", help="try items whose video failed before again")
    p.add_argument("--overwrite", action="store_true", help="discard earlier predictions in --out")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--dtype", choices=["saved", "auto", "fp32", "bf16", "fp16"], default="saved",
                   help="generation dtype, spelled as in `ski-lvlm caption`: saved (default) = the weights' own dtype; "
                        "auto = bf16 on CUDA, fp32 on CPU; bf16 is about 2x faster on CPUs with AMX (other numbers)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


@cli_entry(PROG)
def main(argv: list[str] | None = None) -> int:
    from ski_lvlm.evaluation.captions import evaluate_captions
    from ski_lvlm.evaluation.markdown import results_markdown
    from ski_lvlm.utils.io import check_writable_parent

    args = build_parser().parse_args(argv)
    problems = check_writable_parent(args.out)
    if args.batch_size < 1:
        problems.append("--batch-size: must be >= 1")
    if args.max_new_tokens < 1:
        problems.append("--max-new-tokens: must be >= 1")
    if args.limit is not None and args.limit < 1:
        problems.append("--limit: must be >= 1")
    if bool(args.judge_url) != bool(args.judge_model):
        problems.append("--judge-url and --judge-model go together")
    if not (Path(args.model) / "config.json").is_file():
        problems.append(f"--model {args.model}: not a SKI-LVLM model folder (no config.json)")
    if problems:
        raise UserError("; ".join(problems))
    res = evaluate_captions(
        args.model, args.eval_set, args.out, videos=args.videos, classes=args.classes,
        qa=None if args.qa == "none" else args.qa, phrases=args.phrases, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, prompt=args.prompt, limit=args.limit, meteor=args.meteor,
        judge={"url": args.judge_url, "model": args.judge_model} if args.judge_url else None,
        retry_errors=args.retry_errors, overwrite=args.overwrite, device=args.device,
        dtype=None if args.dtype == "saved" else args.dtype, progress=not args.no_progress)
    out, counts = Path(args.out), res["run"]
    print(results_markdown(res))
    print(f"{PROG}: {counts['generated']} generated now, {counts['done_before']} reused, {res['n_errors']} errors; "
          f"wrote {out / 'results.json'}, {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
