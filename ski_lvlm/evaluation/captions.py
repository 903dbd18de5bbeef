"""The caption / QA benchmark of a SKI-LVLM checkpoint, resumable: the library half of ``ski-lvlm eval captions``.

    res = evaluate_captions("runs/lvlm_instruct/final", "WORLD/Charades_v1_test.csv", "runs/captions")

Generation goes through :class:`~ski_lvlm.inference.Captioner` (greedy, batched with the processor's left
padding, KV cache), the same path as ``ski-lvlm caption``, the demo and the server; each video is encoded
once by the model's own frozen tower with the training-time frame count and sampling. The model sees video
only: no skeleton is read, also for models trained with skeleton injection.

Files in ``out``:

* ``predictions.jsonl``: one line per finished item, appended and fsynced per batch, so a run that stops
  (Ctrl-C, a crash, a kill) resumes where it stopped; a video that cannot be decoded gives a line with
  ``error`` (``retry_errors`` tries those again).
* ``settings.json``: model and generation settings; a rerun with other settings into the same folder is
  refused (it would mix predictions) unless ``overwrite``.
* ``results.json`` / ``results.md`` (:mod:`ski_lvlm.evaluation.scoring`, :mod:`ski_lvlm.evaluation.markdown`)
  and ``judge_input_captions.jsonl`` (finished captions in the ``ski-lvlm eval judge`` input format).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

from ski_lvlm.evaluation.sets import EvalItem, load_eval_set
from ski_lvlm.utils.errors import UserError

__all__ = ["evaluate_captions", "run_generation", "read_predictions"]


def read_predictions(path: Path) -> dict[str, dict]:
    """Finished items of ``predictions.jsonl`` (:func:`ski_lvlm.metrics.scores.read_predictions`)."""
    from ski_lvlm.metrics.scores import read_predictions as read

    try:
        return read(path)
    except ValueError as e:
        raise UserError(str(e)) from None


def _drop_torn_tail(path: Path) -> None:
    """Cut a half-written last line (the process was killed mid-write) so appends start on a new line."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        f.truncate(data.rfind(b"\n") + 1)


def _record(it: EvalItem, prediction: str | None, *, error: str | None = None, seconds: float | None = None) -> dict:
    rec = {"id": it.id, "kind": it.kind, "video_id": it.video_id, "question": it.prompt(),
           "answer": it.references[0], "prediction": prediction}
    if it.kind == "caption":
        rec["references"] = it.references
    if it.options:
        rec["options"] = it.options
    if it.groups:
        rec["groups"] = it.groups
    if error:
        rec["error"] = error
    if seconds is not None:
        rec["seconds"] = round(seconds, 4)
    rec["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return rec


def _video_features(captioner, videos_dir: Path, video_id: str):
    """``[1, n_v, d_v]`` features of one video (the captioner caches them: QA reuses the caption's video)."""
    from ski_lvlm.data.video import VIDEO_EXTS, find_video

    path = find_video(videos_dir, video_id)
    if path is None:
        raise FileNotFoundError(f"no video {video_id}.{{{','.join(e[1:] for e in VIDEO_EXTS)}}} in {videos_dir}")
    return captioner.features(path)


def run_generation(items: Sequence[EvalItem], pred_path: Path, captioner, videos_dir: Path, *,
                   batch_size: int = 8, max_new_tokens: int = 64, retry_errors: bool = False,
                   progress: bool = True) -> dict:
    """Generate every unfinished item with ``captioner``, appending one JSON line per item.

    Items are grouped by video, so a video is decoded once and its features stay cached while its
    questions are asked. A bad video is a recorded error, not the end of the run.

    Returns:
        counts ``{"done_before", "generated", "errors_new"}``.
    """
    import torch
    from tqdm import tqdm

    done = read_predictions(pred_path)
    if retry_errors:
        done = {k: v for k, v in done.items() if not v.get("error")}
    pending = [it for it in items if it.id not in done]
    order = {vid: i for i, vid in enumerate(dict.fromkeys(it.video_id for it in pending))}
    pending.sort(key=lambda it: order[it.video_id])
    counts = {"done_before": len(done), "generated": 0, "errors_new": 0}
    pred_path.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_tail(pred_path)
    bar = tqdm(total=len(pending), desc="generate", disable=not progress or None, leave=False)
    with open(pred_path, "a", encoding="utf-8") as f:
        for start in range(0, len(pending), batch_size):
            chunk = pending[start:start + batch_size]
            ok, rows = [], []
            for it in chunk:
                try:
                    ok.append((it, _video_features(captioner, videos_dir, it.video_id)))
                except Exception as e:  # noqa: BLE001 - any unreadable video becomes an error line
                    rows.append(_record(it, None, error=f"{type(e).__name__}: {e}"))
            if ok:
                tic = time.time()
                video = torch.cat([x for _, x in ok])  # [b, n_v, d_v]
                convs = [[{"role": "user", "content": it.prompt()}] for it, _ in ok]
                texts = captioner.generate(convs, video, max_new_tokens=max_new_tokens)
                dt = (time.time() - tic) / len(ok)
                rows += [_record(it, t, seconds=dt) for (it, _), t in zip(ok, texts)]
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            counts["generated"] += sum(1 for r in rows if not r.get("error"))
            counts["errors_new"] += sum(1 for r in rows if r.get("error"))
            bar.update(len(chunk))
    bar.close()
    return counts


def _read_phrases(arg: str | Path | None, eval_set: Path):
    from ski_lvlm.metrics.grounding import find_phrases, load_phrases

    if arg is None or arg == "none":
        return None
    path = find_phrases(eval_set) if arg == "auto" else Path(arg)
    if path is None:
        return None
    if not path.is_file():
        raise UserError(f"--phrases {path}: file not found")
    try:
        return load_phrases(path)
    except ValueError as e:
        raise UserError(str(e)) from None


def _check_settings(out: Path, settings: dict, overwrite: bool) -> None:
    """Refuse to mix predictions made with other settings into one folder (or start over with ``overwrite``)."""
    pred_path, settings_path = out / "predictions.jsonl", out / "settings.json"
    if overwrite:
        pred_path.unlink(missing_ok=True)
    elif settings_path.is_file() and pred_path.is_file():
        old = json.loads(settings_path.read_text())
        diff = [k for k in dict.fromkeys([*settings, *old]) if old.get(k) != settings.get(k)]
        if diff:
            raise UserError(f"{out}: holds predictions made with other settings ({', '.join(diff)}: "
                            f"{[old.get(k) for k in diff]}); use another --out or --overwrite")


def _load_captioner(model_dir: Path, device: str, dtype: str | None):
    """The model as a :class:`Captioner` (no fast path: greedy numbers must match the plain ``generate``)."""
    from ski_lvlm.inference import Captioner

    captioner = Captioner.from_pretrained(model_dir, device=device, dtype=dtype or "saved", fast=False,
                                          feature_cache_size=64)
    if not captioner.takes_video:
        raise UserError(f"{model_dir}: the model has no video tower (config.video_encoder); it cannot read videos")
    return captioner


def evaluate_captions(model: str | Path, eval_set: str | Path, out: str | Path, *, videos: str | Path | None = None,
                      classes: str | Path | None = None, qa: str | Path | None = "auto",
                      phrases: str | Path | None = "auto", batch_size: int = 8, max_new_tokens: int = 64,
                      prompt: str | None = None, limit: int | None = None, meteor: str = "auto",
                      judge: dict | None = None, retry_errors: bool = False, overwrite: bool = False,
                      device: str = "auto", dtype: str | None = None, progress: bool = True) -> dict:
    """Generate what is missing in ``out/predictions.jsonl``, score everything and write the result files.

    Args:
        model: a run's ``final/`` folder or an export.
        videos: folder with ``<id>.<ext>`` (default: ``videos/`` next to the eval set).
        qa: ``"auto"`` = ``qa.json`` next to a caption set; a path; ``None`` = no QA.
        phrases: ``class_phrases.json`` for grounding; ``"auto"`` = next to the eval set; ``None`` = n/a.
        judge: ``{"url", "model"}`` of an OpenAI-compatible endpoint for open QA, or ``None``.
        dtype: generation dtype: ``None`` = the weights' own dtype as saved (float32 for CPU-trained runs,
            bf16 for most GPU-trained ones; what this benchmark always did), ``"float32"``, ``"bfloat16"``
            or ``"auto"`` (bf16 on CUDA, float32 on CPU).

    Returns:
        the results (also in ``results.json``); the model is not loaded when every item is done.
    """
    from ski_lvlm.evaluation.markdown import results_markdown
    from ski_lvlm.evaluation.scoring import score_predictions
    from ski_lvlm.inference import dtype_name
    from ski_lvlm.utils.io import atomic_write_json, atomic_write_text

    model_dir, eval_set, out = Path(model), Path(eval_set), Path(out)
    items, info = load_eval_set(eval_set, classes=classes, question=prompt, qa=qa)
    items = items[:limit] if limit else items
    phrase_table = _read_phrases(phrases, eval_set)
    videos_dir = Path(videos) if videos else eval_set.parent / "videos"
    if not videos_dir.is_dir():
        raise UserError(f"--videos {videos_dir}: not a folder")
    out.mkdir(parents=True, exist_ok=True)
    pred_path = out / "predictions.jsonl"
    settings = {"model": str(model_dir.resolve()), "prompt": prompt, "max_new_tokens": max_new_tokens,
                "decoding": "greedy", "input": "video only"}
    if dtype is not None:  # absent for the saved dtype, so folders from before the option still resume
        settings["dtype"] = dtype_name(dtype, device)
    _check_settings(out, settings, overwrite)
    atomic_write_json(out / "settings.json", settings)

    done = read_predictions(pred_path)
    pending = [it for it in items if it.id not in done or (retry_errors and done[it.id].get("error"))]
    counts = {"done_before": len(items) - len(pending), "generated": 0, "errors_new": 0}
    if pending:
        import torch

        print(f"ski-lvlm eval captions: {len(pending)} of {len(items)} items to generate "
              f"({counts['done_before']} done before)")
        captioner = _load_captioner(model_dir, device, dtype)
        torch.manual_seed(0)
        c = run_generation(pending, pred_path, captioner, videos_dir, batch_size=batch_size,
                           max_new_tokens=max_new_tokens, retry_errors=retry_errors, progress=progress)
        counts.update(generated=c["generated"], errors_new=c["errors_new"])
    run_info = json.loads((model_dir / "run_info.json").read_text()) if (model_dir / "run_info.json").is_file() else {}

    preds = read_predictions(pred_path)
    res = score_predictions(items, preds, meteor=meteor, judge=judge, out=out, phrases=phrase_table)
    res.update(model=str(model_dir), eval_set=info, videos=str(videos_dir), settings=settings, run=counts,
               training={k: run_info.get(k) for k in ("stage", "llm_adapter", "steps", "p_inject", "final_loss")}
               if run_info else None)
    atomic_write_json(out / "results.json", res)
    atomic_write_text(out / "results.md", results_markdown(res))
    caps = [r for r in preds.values() if r.get("kind") == "caption" and not r.get("error")]
    atomic_write_text(out / "judge_input_captions.jsonl",
                      "".join(json.dumps({k: r[k] for k in ("id", "question", "answer", "prediction")},
                                         ensure_ascii=False) + "\n" for r in caps))
    return res
