"""ski-lvlm eval all: evaluate everything in a run folder and write report.md + report.html into it.

    ski-lvlm eval all --run runs/quickstart
    ski-lvlm eval all --run runs/quickstart --judge-url http://127.0.0.1:11434/v1 --judge-model llama3.1
    ski-lvlm eval all --run runs/paper --eval-set Charades/Charades_v1_test.csv --videos Charades_v1_480

Run-folder convention (what the quickstart writes; every part is optional)::

    RUN/world/                  the synthetic world (or --world DIR; also the default caption eval set:
                                world/Charades_v1_test.csv + world/videos + world/qa.json)
    RUN/<name>/final/           a SkeletonCLIP / ViFi-CLIP / SKI-VLM model folder (model_config.json),
                                e.g. RUN/skeleton_clip, RUN/ski_vlm; <name> labels it; train_log.jsonl = its log
                                (runs from before issue 14: model/ and metrics.jsonl, still read)
    RUN/<name>/final/           a SKI-LVLM run (ski-lvlm train lvlm train.output_dir=RUN/<name>): train_log.jsonl,
                                final/config.json, final/run_info.json (p_inject says whether skeletons were injected)
    RUN/zero_shot/              written here: ski-lvlm eval zero-shot on the novel classes
                                (results.json, results.md, confusion_<name>.png)
    RUN/captions/<name>/        written here: ski-lvlm eval captions per LVLM run (predictions.jsonl, results.*)
    RUN/probe/<name>/           written here: ski-lvlm eval probe of each LVLM run's video pathway (probe.json):
                                lvlm:RUN/<name>/final on WORLD/train.csv -> WORLD/test.csv
    RUN/report_assets/          written here: plots and frame strips
    RUN/report.md, RUN/report.html

Results already computed are reused: the zero-shot evaluation reruns only when a model is missing from
RUN/zero_shot/results.json (or with --rerun); the caption benchmark resumes from its predictions.jsonl
and loads no model when every item is done; a probe is reused when its key (tower weights hash, frame
settings, manifests) matches, also across runs that share one video pathway. A part that is missing or fails becomes a "not run" note
in the report (with the reason); the command still writes the report. The report itself is built by
``ski_lvlm.evaluation.run_report``; this file decides what to reuse or run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ski_lvlm.evaluation.run_report import PROG, build_report, discover, short_error
from ski_lvlm.utils.errors import UserError, cli_entry

__all__ = ["build_parser", "main", "run_zero_shot", "run_captions", "run_probes"]


def _library_error(e: BaseException) -> str | None:
    """The message of an error the user can act on (bad input, bad config), else None (a bug: traceback)."""
    from ski_lvlm.config import ConfigError

    return str(e) if isinstance(e, (UserError, ConfigError)) else None


def run_zero_shot(run: Path, found: dict, args) -> tuple[dict | None, str | None]:
    """RUN/zero_shot/results.json (reused when it covers every model), or the reason it is missing."""
    out = run / "zero_shot"
    res_path = out / "results.json"
    old = json.loads(res_path.read_text()) if res_path.is_file() else None
    if not found["vlm"]:
        return (old, None) if old else (None, "no SkeletonCLIP / SKI-VLM model folder (RUN/<name>/final/) in the run")
    if old and not args.rerun and set(found["vlm"]) <= set(old.get("models", {})):
        return old, None
    if args.skip_eval:
        return (old, None) if old else (None, "results missing and --skip-eval given")
    if found["world"] is None or not (found["world"] / "zsl_novel_test.csv").is_file():
        return (old, None) if old else (None, "no world with zsl_novel_test.csv (give --world)")
    from ski_lvlm.evaluation.zero_shot import evaluate_zero_shot
    from ski_lvlm.utils.runtime import pick_device

    w = found["world"]
    print(f"{PROG}: zero-shot evaluation of {', '.join(found['vlm'])}")
    try:
        evaluate_zero_shot(found["vlm"], w / "zsl_novel_test.csv", w / "zsl_novel_classes.csv", out,
                           device=pick_device(args.device))
    except Exception as e:  # one broken part must not cost the whole report
        msg = _library_error(e)
        return old, f"ski-lvlm eval zero-shot: {msg}" if msg else f"ski-lvlm eval zero-shot failed: {short_error(e)}"
    return json.loads(res_path.read_text()), None  # as a rerun would read it back


def run_captions(run: Path, name: str, run_dir: Path, found: dict, args) -> tuple[dict | None, str | None]:
    out = run / "captions" / name
    res_path = out / "results.json"
    final = run_dir / "final"
    old = json.loads(res_path.read_text()) if res_path.is_file() else None
    if args.skip_eval:
        return (old, None) if old else (None, "results missing and --skip-eval given")
    if not (final / "config.json").is_file():
        return old, f"{run_dir.name}/final/ missing (training not finished?)"
    eval_set = Path(args.eval_set) if args.eval_set else (found["world"] / "Charades_v1_test.csv" if found["world"] else None)
    if eval_set is None or not eval_set.is_file():
        return old, "no caption eval set (give --eval-set, or --world with Charades_v1_test.csv)"
    from ski_lvlm.evaluation.captions import evaluate_captions

    print(f"{PROG}: caption / QA benchmark of {name}")
    try:
        evaluate_captions(final, eval_set, out, videos=args.videos, batch_size=args.batch_size,
                          max_new_tokens=args.max_new_tokens, limit=args.limit, meteor=args.meteor,
                          judge={"url": args.judge_url, "model": args.judge_model} if args.judge_url else None,
                          overwrite=args.rerun, device=args.device,
                          dtype=None if args.dtype == "saved" else args.dtype, progress=False)
    except Exception as e:
        msg = _library_error(e)
        return old, f"ski-lvlm eval captions: {msg}" if msg else f"ski-lvlm eval captions failed: {short_error(e)}"
    return json.loads(res_path.read_text()), None


def run_probes(run: Path, found: dict, args) -> dict[str, tuple[dict | None, str | None]]:
    """RUN/probe/<name>/probe.json per LVLM run: a linear probe of the video tokens its projector reads.

    The tokens come from the run's own tower and frame settings (``lvlm:RUN/<name>/final``), so a run
    that trained its tower is probed with the trained weights. Runs with the same pathway share one fit.
    """
    from ski_lvlm.metrics.probe import load_probe_encoder, probe_key, run_probe
    from ski_lvlm.utils.io import atomic_write_json
    from ski_lvlm.utils.runtime import pick_device

    out: dict[str, tuple[dict | None, str | None]] = {}
    w = found["world"]
    splits = (w / "train.csv", w / "test.csv", w / "classes.csv") if w else None
    fitted: dict[str, dict] = {}  # key (as JSON) -> result of this invocation
    for name, run_dir in found["lvlm"].items():
        path = run / "probe" / name / "probe.json"
        old = json.loads(path.read_text()) if path.is_file() else None
        if args.skip_eval:
            out[name] = (old, None) if old else (None, "results missing and --skip-eval given")
            continue
        if not (run_dir / "final" / "config.json").is_file():
            out[name] = (old, f"{run_dir.name}/final/ missing (training not finished?)")
            continue
        if splits is None or not all(p.is_file() for p in splits):
            out[name] = (old, "no world with train.csv, test.csv and classes.csv (give --world)")
            continue
        spec = f"lvlm:{run_dir / 'final'}"
        try:
            encoder = load_probe_encoder(spec, device=pick_device(args.device))
            key = probe_key(encoder.identity(), *splits, C=args.probe_c, val_from_train=False)
            key_s = json.dumps(key, sort_keys=True)
            if old and old.get("key") == key and not args.rerun:
                out[name] = (old, None)
                fitted.setdefault(key_s, old)
                continue
            if key_s in fitted:
                res = {**fitted[key_s], "encoder_spec": spec, "features": encoder.description,
                       "shared_with": fitted[key_s]["encoder_spec"]}
            else:
                print(f"{PROG}: linear probe of {name}'s video tokens")
                res = {**run_probe(encoder, *splits, C=args.probe_c, progress=False), "encoder_spec": spec}
                fitted[key_s] = res
            atomic_write_json(path, res)
            out[name] = (res, None)
        except Exception as e:  # one broken part must not cost the whole report
            out[name] = (old, f"ski-lvlm eval probe failed: {short_error(e)}")
    return out


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Run (or reuse) the zero-shot evaluation, the caption/QA benchmark and the video-token probe of "
                    "every model in a run folder and write RUN/report.md and RUN/report.html (tables, loss curves, per-class accuracy, "
                    "confusion matrices, caption examples with video frames). Missing parts are reported as "
                    "'not run'.",
        epilog="example: ski-lvlm eval all --run runs/quickstart")
    p.add_argument("--run", required=True, help="run folder (layout in the module docstring / README)")
    p.add_argument("--world", default=None, help="world / dataset folder (default RUN/world)")
    p.add_argument("--eval-set", default=None, help="caption eval set (default WORLD/Charades_v1_test.csv)")
    p.add_argument("--videos", default=None, help="videos of the caption eval set (default: videos/ next to it)")
    p.add_argument("--limit", type=int, default=None, help="caption/QA items per LVLM run (smoke runs)")
    p.add_argument("--batch-size", type=int, default=8, help="caption generation batch size (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="caption generation length in tokens (default 64)")
    p.add_argument("--meteor", choices=["auto", "java", "off"], default="auto", help="METEOR: auto = when Java is present (default), java = required, off")
    p.add_argument("--judge-url", default=None, help="OpenAI-compatible endpoint for judging open-ended QA")
    p.add_argument("--judge-model", default=None, help="judge model name")
    p.add_argument("--examples", type=int, default=10,
                   help="caption examples with frame strips, test videos drawn at random with seed 0 (default 10)")
    p.add_argument("--probe-c", type=float, default=1.0, help="inverse L2 strength of the video-token probe (default 1.0)")
    p.add_argument("--rerun", action="store_true", help="recompute the zero-shot results and regenerate all captions (needed after changing "
                        "--max-new-tokens or the prompt; otherwise earlier results are kept)")
    p.add_argument("--skip-eval", action="store_true", help="only write the report from results already on disk")
    p.add_argument("--embed-images", action="store_true", help="put the images into report.html (base64)")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--dtype", choices=["saved", "auto", "fp32", "bf16", "fp16"], default="saved",
                   help="caption generation dtype, spelled as in `ski-lvlm caption`: saved (default) = the weights' own dtype; "
                        "auto = bf16 on CUDA, fp32 on CPU; bf16 is about 2x faster on CPUs with AMX (other numbers)")
    return p


@cli_entry(PROG)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run = Path(args.run)
    if not run.is_dir():
        raise UserError(f"--run {run}: not a folder")
    if bool(args.judge_url) != bool(args.judge_model):
        raise UserError("--judge-url and --judge-model go together")
    if args.world and not Path(args.world).is_dir():
        raise UserError(f"--world {args.world}: not a folder")
    bad = [f"--{k.replace('_', '-')}" for k in ("batch_size", "max_new_tokens", "limit")
           if getattr(args, k) is not None and getattr(args, k) < 1]
    if bad:
        raise UserError(f"{', '.join(bad)}: must be >= 1")
    found = discover(run, Path(args.world) if args.world else None)
    zs = run_zero_shot(run, found, args)
    caps = {name: run_captions(run, name, d, found, args) for name, d in found["lvlm"].items()}
    probes = run_probes(run, found, args)
    rep = build_report(run, found, zs, caps, args.examples, probes)
    rep.write(run / "report.md", run / "report.html", embed_images=args.embed_images)
    missing = [b[1] for s in rep.sections for b in s.blocks if isinstance(b, tuple) and b[0] == "notrun"]
    print(f"{PROG}: wrote {run / 'report.md'} and {run / 'report.html'}"
          + (f" ({len(missing)} part(s) not run: " + "; ".join(missing) + ")" if missing else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
