"""The run report of ``ski-lvlm eval all``: what a run folder holds, and report.md / report.html from results.

:func:`discover` reads the run-folder convention (README, "The run report"); :func:`build_report` turns
the zero-shot, caption and probe results (each ``(results or None, why not)``) into a
:class:`ski_lvlm.reporting.Report` with tables, plots and caption examples. A part that is missing becomes a
"not run" note with its reason; nothing here runs a model.
"""

from __future__ import annotations

import datetime as _dt
import json
import traceback
from pathlib import Path
from typing import Any

from ski_lvlm.metrics.captions import CAPTION_METRICS
from ski_lvlm.utils.run_layout import (FINAL_DIR, TRAIN_LOG, ModelFolderError, find_train_log, resolve_model_dir,
                                      run_recipe)

__all__ = ["ASSETS", "discover", "build_report", "short_error"]

PROG = "ski-lvlm eval all"
ASSETS = "report_assets"


# --------------------------------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------------------------------
def _zero_shot_model(folder: Path) -> bool:
    """False for a video model trained without a held-out class list (``data.novel_csv: null``), such as
    the LVLM's video tower: it saw every class, so its accuracy on the "unseen" classes would not be
    zero-shot."""
    import yaml

    cfg_file = folder / "config.yaml"
    if not cfg_file.is_file():
        return True
    data = (yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}).get("data") or {}
    return "novel_csv" not in data or data["novel_csv"] is not None


def discover(run: Path, world: Path | None = None) -> dict[str, Any]:
    """What a run folder holds: VLM model folders, LVLM runs, the world, earlier results.

    A SkeletonCLIP / SKI-VLM run's model is ``RUN/<name>/final/`` (``model/`` in runs from before issue 14);
    an LVLM run has ``final/config.json`` or, unfinished, a ``train_log.jsonl``."""
    vlm, lvlm = {}, {}
    for sub in sorted(p for p in run.iterdir() if p.is_dir()):
        if sub.name in ("zero_shot", "captions", "probe", ASSETS, "world"):
            continue
        try:
            model = resolve_model_dir(sub)
        except ModelFolderError:
            model = None
        if model is not None and _zero_shot_model(sub):
            vlm[sub.name] = model
        if (sub / FINAL_DIR / "config.json").is_file() or (
                model is None and run_recipe(sub) not in ("skeleton-clip", "ski-vlm") and (sub / TRAIN_LOG).is_file()):
            lvlm[sub.name] = sub
    world = world or (run / "world")
    return {"vlm": vlm, "lvlm": lvlm, "world": world if world.is_dir() else None}


def short_error(e: BaseException) -> str:
    last = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    where = f" ({Path(last[0].filename).name}:{last[0].lineno})" if last else ""
    return f"{type(e).__name__}: {e}{where}"


# --------------------------------------------------------------------------------------------------
# evaluation steps (reuse or run)
# --------------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------------
# report sections
# --------------------------------------------------------------------------------------------------
def _rel(run: Path, p: Path) -> str:
    return p.resolve().relative_to(run.resolve()).as_posix()


def section_overview(rep, run: Path, found: dict, zs: dict | None = None,
                     caps: dict[str, tuple[dict | None, str | None]] | None = None,
                     probes: dict[str, tuple[dict | None, str | None]] | None = None) -> None:
    from ski_lvlm.reporting import fmt_pct

    s = rep.section("Overview")
    key = []
    if zs:
        for label, m in zs.get("models", {}).items():
            key.append(["zero-shot top-1 % (unseen classes)", label, fmt_pct(m.get("top1")),
                        f"chance {fmt_pct(zs.get('chance'))}"])
    for name, (pr, _w) in (probes or {}).items():
        if pr:
            key.append(["video-token probe top-1 %", name, fmt_pct(pr.get("accuracy")),
                        f"chance {fmt_pct(pr.get('chance'))}, {pr.get('n_test')} test clips"])
    for name, (res, _w) in (caps or {}).items():
        c = (res or {}).get("captions")
        if c:
            p = (res.get("training") or {}).get("p_inject", "?")
            key.append(["caption CIDEr-D / BLEU-4 / ROUGE-L (x100)", f"{name} (p_inject {p})",
                        " / ".join(fmt_pct(c["scores"].get(k)) for k in ("CIDEr-D", "BLEU-4", "ROUGE-L")),
                        f"{c['n']} videos"])
        g = (res or {}).get("grounding") or {}
        if g.get("action_accuracy") is not None:
            key.append(["caption action accuracy %", name, fmt_pct(g["action_accuracy"]),
                        f"{g['n_action']} videos, {g['distinct_captions']} distinct captions"])
        q = (res or {}).get("qa_open")
        if q:
            key.append(["open QA token F1 % (automatic)", name, f"{q['automatic']['token_f1']:.1f}", f"{q['n']} questions"])
    if key:
        s.table(["result", "model", "value", "reference"], key, caption="Key numbers", align="llrl")
    w = found["world"]
    if w and (w / "world.json").is_file():
        info = json.loads((w / "world.json").read_text())
        counts = info.get("counts", {})
        s.text(f"World `{w}`: {len(info.get('classes', []))} classes ({len(info.get('base_classes', []))} seen, "
               f"{len(info.get('novel_classes', []))} unseen), "
               + ", ".join(f"{k} {v}" for k, v in counts.items() if isinstance(v, (int, float))) + ".")
    elif w:
        s.text(f"World / dataset folder `{w}`.")
    else:
        s.not_run("no world folder (RUN/world or --world)")
    from ski_lvlm.evaluation.zero_shot import kind_label

    rows = []
    for n, folder in found["vlm"].items():
        try:
            cfg = json.loads((folder / "model_config.json").read_text())
        except (OSError, json.JSONDecodeError):
            cfg = {}
        rows.append([n, kind_label(cfg), _rel(run, folder)])
    for n, d in found["lvlm"].items():
        info = _run_info(d)
        kind = f"SKI-LVLM {info.get('stage', '?')} ({info.get('llm_adapter', '?')}), p_inject {info.get('p_inject', '?')}"
        rows.append([n, kind, f"{n}/{FINAL_DIR}" if (d / FINAL_DIR).is_dir() else f"{n}/ (no {FINAL_DIR}/)"])
    if rows:
        s.table(["part", "kind", "folder"], rows, align="lll")
    else:
        s.not_run("no trained models found in the run folder")


def _run_info(d: Path) -> dict:
    p = d / FINAL_DIR / "run_info.json"
    try:
        return json.loads(p.read_text()) if p.is_file() else {}
    except json.JSONDecodeError:
        return {}


def section_zero_shot(rep, run: Path, zs: dict | None, why: str | None) -> None:
    from ski_lvlm.reporting import Image, fmt_pct, plot_grouped_bars

    s = rep.section("Zero-shot action recognition (unseen classes)")
    if zs is None:
        s.not_run(why or "no zero-shot results")
        return
    if why:
        s.not_run(f"results not updated, showing those on disk: {why}")
    models = zs.get("models", {})
    s.text(f"{zs.get('num_classes', '?')} unseen classes, {zs.get('num_samples', '?')} clips (`{zs.get('manifest', '?')}`). "
           "Video models are evaluated from video only; SkeletonCLIP reads skeletons.")
    from ski_lvlm.evaluation.zero_shot import KIND_LABEL

    rows = [[label, m.get("display") or KIND_LABEL.get(m.get("kind"), m.get("kind", "?")), m.get("input", "?"), fmt_pct(m.get("top1")), fmt_pct(m.get("top5")),
             fmt_pct(m.get("mean_class_acc")), m.get("views", 1)] for label, m in models.items()]
    rows.append(["chance", "-", "-", fmt_pct(zs.get("chance")), fmt_pct(zs.get("chance_top5")), fmt_pct(zs.get("chance")), "-"])
    s.table(["model", "kind", "input at test", "top-1 %", "top-5 %", "mean class acc %", "views"], rows, align="lllrrrr")
    classes = zs.get("classes") or []
    if classes and models:
        out = run / ASSETS / "zero_shot_per_class.png"
        try:
            plot_grouped_bars(classes, {lb: [m.get("per_class", {}).get(c) for c in classes] for lb, m in models.items()},
                              out, title="Per-class top-1 accuracy (unseen classes)", ylabel="accuracy",
                              hline=zs.get("chance"), ymax=1.0)
            s.image(_rel(run, out), "per-class accuracy", width=640)
        except Exception as e:
            s.not_run(f"per-class plot failed: {short_error(e)}")
        s.table(["class"] + list(models),
                [[c] + [fmt_pct(m.get("per_class", {}).get(c), 0) for m in models.values()] for c in classes],
                caption="Per-class top-1 %")
    imgs = [(label, run / "zero_shot" / f"confusion_{label}.png") for label in models]
    have = [(label, p) for label, p in imgs if p.is_file()]
    sub = rep.section("Confusion matrices", level=3)
    if not have:
        sub.not_run("no confusion_<model>.png in RUN/zero_shot")
    else:
        sub.gallery([Image(_rel(run, p), f"confusion matrix {label}", width=380) for label, p in have])


def section_training(rep, run: Path, found: dict) -> None:
    from ski_lvlm.reporting import Image, plot_curves, read_jsonl

    s = rep.section("Training curves")
    images, notes = [], []
    # each part's run folder is RUN/<name>; its log is train_log.jsonl (metrics.jsonl in old phase-1/2 runs)
    groups = [("lvlm", "SKI-LVLM", {n: find_train_log(d) for n, d in found["lvlm"].items()}),
              ("vlm", "SkeletonCLIP / SKI-VLM", {n: find_train_log(run / n) for n in found["vlm"]})]
    for key, title, logs in groups:
        series = {}
        for name, path in logs.items():
            if path is None:
                continue
            recs = [r for r in read_jsonl(path) if isinstance(r.get("loss"), (int, float)) and "step" in r]
            if recs:
                series[name] = ([r["step"] for r in recs], [r["loss"] for r in recs])
        if not series:
            continue
        out = run / ASSETS / f"loss_{key}.png"
        n = max(len(x) for x, _ in series.values())
        try:
            plot_curves(series, out, title=f"{title}: training loss", smooth=10 if n > 60 else 0)
        except Exception as e:
            s.not_run(f"{title}: plot failed: {short_error(e)}")
            continue
        images.append(Image(_rel(run, out), f"loss curves {key}", width=520))
        notes += [f"{n}: loss {y[0]:.3f} (step {x[0]}) -> {y[-1]:.3f} (step {x[-1]}), {len(x)} log points"
                  for n, (x, y) in series.items()]
    if not images:
        s.not_run("no train_log.jsonl (or an old run's metrics.jsonl) with loss records in the run folder")
        return
    s.gallery(images)
    s.items(notes)


def section_captions(rep, run: Path, caps: dict[str, tuple[dict | None, str | None]], found: dict) -> None:
    from ski_lvlm.reporting import fmt_pct

    s = rep.section("Video captioning")
    if not caps:
        s.not_run("no SKI-LVLM run (RUN/<name>/final/) in the run folder")
        return
    rows, done = [], {}
    for name, (res, why) in caps.items():
        if res is None or "captions" not in res:
            s.not_run(f"{name}: {why or 'no finished captions'}")
            continue
        if why:
            s.not_run(f"{name}: results not updated, showing those on disk: {why}")
        done[name] = res
        c, tr = res["captions"], res.get("training") or _run_info(found["lvlm"].get(name, run))
        rows.append([name, tr.get("p_inject", "?") if tr else "?", tr.get("steps", "?") if tr else "?", c["n"],
                     res["n_errors"]] + [fmt_pct(c["scores"].get(k)) for k in CAPTION_METRICS])
    if not rows:
        return
    first = next(iter(done.values()))
    s.text(f"Eval set `{first.get('eval_set', {}).get('path', '?')}`; greedy decoding, at most "
           f"{first.get('settings', {}).get('max_new_tokens', '?')} new tokens; the model sees video only (also "
           "when it was trained with skeleton injection). Scores x100 (coco-caption conventions; CIDEr-D x100 too).")
    s.table(["run", "p_inject", "steps", "videos", "errors"] + list(CAPTION_METRICS), rows,
            caption="Caption metrics (x100); p_inject = probability of skeleton injection during training")
    meteor_notes = {r["captions"]["meteor"]["note"] for r in done.values() if r["captions"]["scores"].get("METEOR") is None}
    if meteor_notes:
        s.text("METEOR: " + "; ".join(sorted(meteor_notes)))
    inj = {n: (r.get("training") or {}).get("p_inject") for n, r in done.items()}
    with_s = [n for n, p in inj.items() if isinstance(p, (int, float)) and p > 0]
    without = [n for n, p in inj.items() if p == 0]
    if with_s and without:
        a, b = done[with_s[0]]["captions"]["scores"], done[without[0]]["captions"]["scores"]
        s.text(f"**With vs without skeleton injection**: `{with_s[0]}` (p_inject {inj[with_s[0]]}) vs `{without[0]}` "
               f"(p_inject 0): CIDEr-D {fmt_pct(a.get('CIDEr-D'))} vs {fmt_pct(b.get('CIDEr-D'))}, "
               f"BLEU-4 {fmt_pct(a.get('BLEU-4'))} vs {fmt_pct(b.get('BLEU-4'))}, "
               f"ROUGE-L {fmt_pct(a.get('ROUGE-L'))} vs {fmt_pct(b.get('ROUGE-L'))}.")
    else:
        s.text("With vs without skeleton injection: needs one run with p_inject > 0 and one with p_inject = 0 "
               "(found: " + (", ".join(f"{n}={p}" for n, p in inj.items()) or "none") + ").")
    keys = sorted({k for r in done.values() for k in r["captions"].get("per_group", {})})
    for key in keys:
        groups = sorted({g for r in done.values() for g in r["captions"]["per_group"].get(key, {})})
        trows = []
        for g in groups:
            cells, n = [], "-"
            for r in done.values():
                row = r["captions"]["per_group"].get(key, {}).get(g)
                n = row["n"] if row else n
                cells += [fmt_pct(row.get("CIDEr-D")) if row else "-", fmt_pct(row.get("BLEU-4")) if row else "-"]
            trows.append([g, n] + cells)
        heads = [key, "n"] + [f"{n} {m}" for n in done for m in ("CIDEr-D", "BLEU-4")]
        s.table(heads, trows, caption=f"Per {key} (mean of per-item scores, x100)")


def section_grounding(rep, caps: dict[str, tuple[dict | None, str | None]],
                      probes: dict[str, tuple[dict | None, str | None]]) -> None:
    """Per LVLM run: does the caption name the clip's action, side and tempo, and do its video tokens hold it?"""
    from ski_lvlm.reporting import fmt_pct

    s = rep.section("Grounded captions and the video pathway")
    if not caps:
        s.not_run("no SKI-LVLM run (RUN/<name>/final/) in the run folder")
        return
    na = "n/a"
    pct = lambda v: na if v is None else fmt_pct(v)  # noqa: E731
    rows, tops, notes = [], [], set()
    for name, (res, _why) in caps.items():
        pr, pwhy = probes.get(name, (None, "not run"))
        g = (res or {}).get("grounding")
        if g is None:
            g = {}
            notes.add("no grounding scores in the caption results (rerun `ski-lvlm eval all` without --skip-eval)"
                      if res else "no caption results")
        if g.get("note"):
            notes.add(g["note"])
        rows.append([name, pct(pr.get("accuracy")) if pr else na, pct(g.get("action_accuracy")),
                     f"{pct(g.get('side_accuracy'))} ({g.get('n_side', na)})",
                     f"{pct(g.get('tempo_accuracy'))} ({g.get('n_tempo_named', na)})", pct(g.get("tempo_accuracy_all")),
                     g.get("distinct_captions", na), pct(g.get("top_caption_share")), pct(g.get("oov_word_share"))])
        if g.get("top_caption") is not None:
            tops.append(f"`{name}`: \"{g['top_caption']}\"")
        if pwhy:
            s.not_run(f"{name}: probe: {pwhy}")
    s.table(["run", "probe top-1 %", "action acc %", "side acc % (n)", "tempo acc % among named (n)",
             "tempo acc % of all", "distinct captions", "top caption share %", "words outside refs %"], rows,
            caption="Probe: a linear classifier on the run's video tokens (train subjects -> test subjects). "
                    "Action: the caption names the clip's class and no other; side: among captions that name "
                    "left/right/both for clips whose class has a side; tempo: among captions that name one, and "
                    "as a share of all clips whose references name one.")
    for n in sorted(notes):
        s.text(n[:1].upper() + n[1:] + ".")
    if tops:
        s.text("Most frequent caption per run:")
        s.items(tops)
    probe_rows = [[name, pr.get("features", "?"), pr.get("n_train"), pr.get("n_test"), fmt_pct(pr.get("accuracy")),
                   fmt_pct(pr.get("train_accuracy")), fmt_pct(pr.get("chance"))]
                  for name, (pr, _w) in probes.items() if pr]
    if probe_rows:
        s.table(["run", "features", "train clips", "test clips", "top-1 %", "train top-1 %", "chance %"], probe_rows,
                caption="Linear probe of each run's video pathway (standardised features, logistic regression)",
                align="llrrrrr")
    per_class = {n: (r or {}).get("grounding", {}).get("per_class") for n, (r, _w) in caps.items()}
    per_class = {n: v for n, v in per_class.items() if v}
    classes = sorted({c for v in per_class.values() for c in v})
    if classes:
        s.table(["class"] + list(per_class),
                [[c] + [fmt_pct((v.get(c) or {}).get("action_accuracy"), 0) for v in per_class.values()]
                 for c in classes], caption="Caption action accuracy % per class")


def section_qa(rep, caps: dict[str, tuple[dict | None, str | None]]) -> None:
    s = rep.section("Question answering")
    rows = []
    for name, (res, _why) in caps.items():
        if not res or not (res.get("qa_open") or res.get("mc")):
            continue
        q, mc = res.get("qa_open") or {}, res.get("mc") or {}
        a, j = q.get("automatic") or {}, q.get("judge")
        rows.append([name, q.get("n", 0), f"{a['exact_match']:.1f}" if a else "-", f"{a['token_f1']:.1f}" if a else "-",
                     (f"{j['accuracy']:.1f} / {j['mean_0_5']:.2f} ({j['judge_model']})"
                      if j and j.get("accuracy") is not None else ("failed" if j else "not run (no judge endpoint)")),
                     f"{mc['accuracy']:.1f} (n={mc['n']})" if mc.get("accuracy") is not None else "no MC items"])
    if not rows:
        s.not_run("no QA items evaluated (the eval set has no qa.json next to it, or no LVLM run)")
        return
    s.table(["run", "open QA n", "exact match % (auto)", "token F1 % (auto)", "judge acc % / score 0-5",
             "multiple choice acc %"], rows, align="lrrrll",
            caption="Open-ended QA: automatic string scores (normalised exact match, token F1) are not LLM-judge "
                    "scores; the judge columns need --judge-url/--judge-model.")
    closed = {n: (r or {}).get("qa_closed") for n, (r, _w) in caps.items()}
    types = sorted({t for c in closed.values() if c for t in c.get("per_type", {})})
    if types:
        from ski_lvlm.reporting import fmt_pct

        trows = []
        for t in types:
            cells = [(c or {}).get("per_type", {}).get(t) for c in closed.values()]
            n = next((c["n"] for c in cells if c), "-")
            trows.append([t, n] + [f"{fmt_pct(c['accuracy'])} / {fmt_pct(c.get('token_f1'))}" if c else "-"
                                   for c in cells])
        s.table(["question type", "n"] + [f"{n} acc % / F1 %" for n in closed], trows,
                caption="Closed questions: accuracy per type (the answer names the reference's side, tempo, room, "
                        "yes/no, class or body part), next to the token F1 of the same answers")
    else:
        notes = {c["note"] for c in closed.values() if c and c.get("note")}
        s.text("Closed questions: " + ("; ".join(sorted(notes)) if notes else "no per-type scores in the results") + ".")


def section_examples(rep, run: Path, caps: dict[str, tuple[dict | None, str | None]], n_examples: int) -> None:
    from ski_lvlm.reporting import Image, read_jsonl, save_frame_strip

    s = rep.section("Caption examples")
    preds = {}
    for name, (res, _w) in caps.items():
        p = run / "captions" / name / "predictions.jsonl"
        if res is not None and p.is_file():
            preds[name] = {r["id"]: r for r in read_jsonl(p) if r.get("kind") == "caption"}
    if not preds:
        s.not_run("no caption predictions")
        return
    first_name = next(iter(preds))
    first_res = caps[first_name][0]
    videos_dir = Path(first_res.get("videos", ""))
    import random

    ok = sorted((r for r in preds[first_name].values() if not r.get("error")), key=lambda r: r["id"])
    # a seeded random draw: the same videos in every report of this eval set, not hand-picked good ones
    chosen = random.Random(0).sample(ok, min(n_examples, len(ok)))
    if not chosen:
        s.not_run("every caption item failed")
        return
    s.text(f"{len(chosen)} test videos drawn at random (seed 0): 8 frames sampled uniformly, the references, "
           "and each run's caption.")
    from ski_lvlm.data.video import find_video, read_frames

    for r in chosen:
        vid = r["video_id"]
        img = None
        path = find_video(videos_dir, vid) if videos_dir.is_dir() else None
        note = None
        if path is not None:
            out = run / ASSETS / f"frames_{vid}.png"
            try:
                save_frame_strip(read_frames(path, 8, sampling="uniform"), out)
                img = Image(_rel(run, out), f"frames of {vid}")
            except Exception as e:
                note = f"frames not shown: {short_error(e)}"
        else:
            note = f"frames not shown: video {vid} not found in {videos_dir}"
        rows = [("reference" if i == 0 else f"reference {i + 1}", ref) for i, ref in enumerate(r.get("references") or [r.get("answer", "")])][:3]
        for name, p in preds.items():
            pr = p.get(r["id"])
            rows.append((f"prediction ({name})", "(missing)" if pr is None else (pr.get("prediction") or f"error: {pr.get('error')}")))
        if note:
            rows.append(("note", note))
        action = (r.get("groups") or {}).get("action")
        s.example(f"`{vid}`" + (f" ({action})" if action else ""), img, rows)


def build_report(run: Path, found: dict, zs: tuple[dict | None, str | None],
                 caps: dict[str, tuple[dict | None, str | None]], n_examples: int = 10,
                 probes: dict[str, tuple[dict | None, str | None]] | None = None):
    from ski_lvlm.reporting import Report

    rep = Report(f"SKI-LVLM run report: {run.name}", run)
    rep.meta.append(f"Run folder `{run.resolve()}`; written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by "
                    f"`{PROG} --run {run}`.")
    section_overview(rep, run, found, zs[0], caps, probes)
    section_zero_shot(rep, run, *zs)
    section_captions(rep, run, caps, found)
    section_grounding(rep, caps, probes or {})
    section_qa(rep, caps)
    section_training(rep, run, found)
    try:
        section_examples(rep, run, caps, n_examples)
    except Exception as e:
        rep.section("Caption examples").not_run(f"failed: {short_error(e)}")
    return rep
