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

Video ``<id>`` is ``--videos/<id>.{mp4,avi,webm,mkv,mov}`` (default: ``videos/`` next to the eval set).
The model sees video only: no skeleton is read, also for models trained with skeleton injection.
Generation is greedy, batched (left padding), with the KV cache; each video is encoded once by the
model's own frozen tower with ``read_frames(path, config.num_frames, config.frame_sampling)``.

Output in ``--out``:
* ``predictions.jsonl``: one line per finished item, appended and flushed as it is produced, so a run
  that stops (Ctrl-C, a crash, a kill) resumes where it stopped: finished items are never regenerated.
  A video that cannot be decoded gives a line with ``error`` (listed in the results, not a crash; rerun
  with ``--retry-errors`` to try those again).
* ``settings.json``: model and generation settings; a rerun with different settings into the same
  folder is refused (it would mix predictions) unless ``--overwrite``.
* ``results.json`` / ``results.md``: BLEU-1..4, METEOR (coco's METEOR 1.5 jar when Java is present),
  ROUGE-L, CIDEr-D overall (``ski_lvlm.metrics.compute_caption_metrics``) and per action class / scene,
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
import json
import os
import re
import string
import time
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ski_lvlm.utils.errors import UserError, cli_entry

PROG = "ski-lvlm eval captions"
VIDEO_EXTS = (".mp4", ".avi", ".webm", ".mkv", ".mov")
MC_SUFFIX = "Answer with the letter of the correct option."
CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")

__all__ = ["EvalItem", "load_eval_set", "find_video", "read_predictions", "generate_batch", "run_generation",
           "score_predictions", "results_markdown", "qa_token_f1", "read_video_frames", "main"]


# --------------------------------------------------------------------------------------------------
# eval set
# --------------------------------------------------------------------------------------------------
@dataclass
class EvalItem:
    """One question about one video: a caption request, an open-ended question or a multiple choice."""

    id: str
    kind: str  # "caption" | "qa" | "mc"
    video_id: str
    question: str
    references: list[str]
    """Caption references; for QA the reference answer (one element)."""
    options: dict[str, str] | None = None
    groups: dict[str, str] = field(default_factory=dict)
    """Grouping keys for the per-group tables, e.g. {"action": "wave left hand", "scene": "Kitchen"}."""

    def prompt(self) -> str:
        if self.kind != "mc":
            return self.question
        opts = "\n".join(f"{k}. {v}" for k, v in self.options.items())
        return f"{self.question}\n{opts}\n{MC_SUFFIX}"


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None


def _caption_items_from_charades(path: Path, classes: Path | None, question: str) -> tuple[list[EvalItem], dict]:
    from ski_lvlm.data.charades import (CharadesFormatError, caption_eval_set, main_action, read_charades_classes,
                                        read_charades_csv)

    try:
        videos, report = read_charades_csv(path)
    except CharadesFormatError as e:
        raise UserError(str(e)) from None
    names: dict[str, str] = {}
    classes = classes or (path.parent / "Charades_v1_classes.txt")
    if classes.is_file():
        try:
            names = read_charades_classes(classes)
        except CharadesFormatError as e:
            raise UserError(str(e)) from None
    refs, counts = caption_eval_set(videos)
    items = []
    for v in videos:
        if v.id not in refs:
            continue
        act = main_action(v)
        groups = {"action": names.get(act.cls, act.cls) if act else "(no action)", "scene": v.scene or "(no scene)"}
        items.append(EvalItem(v.id, "caption", v.id, question, refs[v.id], groups=groups))
    info = {"format": "charades_csv", "classes_file": str(classes) if names else None,
            "reference_counts": dict(counts), "parse": report.to_dict()}
    return items, info


def _qa_items(records: list, path: Path) -> list[EvalItem]:
    from ski_lvlm.metrics.qa import normalize_options

    items, per_video = [], Counter()
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise UserError(f"{path}: record {i}: expected an object")
        vid = r.get("video_id", r.get("video_name", r.get("video")))
        q = r.get("q", r.get("Q", r.get("question")))
        a = r.get("a", r.get("A", r.get("answer")))
        if vid is None or q is None or a is None:
            raise UserError(f"{path}: record {i}: needs video_id, q and a (have {sorted(r)})")
        vid = Path(str(vid)).stem if str(vid).lower().endswith(VIDEO_EXTS) else str(vid)
        options = None
        if r.get("options") is not None:
            try:
                options = normalize_options(r["options"])
            except ValueError as e:
                raise UserError(f"{path}: record {i}: options: {e}") from None
        kind = "mc" if options else "qa"
        k = per_video[(vid, kind)]
        per_video[(vid, kind)] += 1
        items.append(EvalItem(f"{vid}#{kind}{k}", kind, vid, str(q), [str(a)], options=options))
    return items


def load_eval_set(path: str | Path, *, classes: str | Path | None = None, question: str | None = None,
                  qa: str | Path | None = "auto") -> tuple[list[EvalItem], dict]:
    """Read an eval set (Charades CSV, caption JSON or QA JSON) into items, plus a description of it.

    ``qa``: ``"auto"`` = also read ``qa.json`` next to a caption set when it exists; a path; or None.
    """
    from ski_lvlm.data.charades import DESCRIBE_QUESTION

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: eval set not found")
    question = question or DESCRIBE_QUESTION
    items: list[EvalItem]
    if path.suffix.lower() == ".csv":
        items, info = _caption_items_from_charades(path, Path(classes) if classes else None, question)
    elif path.suffix.lower() in (".json", ".jsonl"):
        data = _load_json(path) if path.suffix.lower() == ".json" else \
            [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if isinstance(data, dict) and all(isinstance(v, (list, str)) for v in data.values()):
            items = []
            for vid, refs in data.items():
                refs = [refs] if isinstance(refs, str) else [str(x) for x in refs]
                if refs:
                    items.append(EvalItem(str(vid), "caption", str(vid), question, refs))
            info = {"format": "caption_json"}
        elif isinstance(data, list) and data and isinstance(data[0], dict) and "references" in data[0]:
            items = [EvalItem(str(r["video_name"]), "caption", str(r["video_name"]), question,
                              [str(x) for x in r["references"]]) for r in data]
            info = {"format": "caption_benchmark_json"}
        elif isinstance(data, list):
            items = _qa_items(data, path)
            info = {"format": "qa_json"}
            qa = None
        else:
            raise UserError(f"{path}: expected {{id: [references]}}, a caption benchmark list or a QA list")
    else:
        raise UserError(f"{path}: unknown eval-set type (expected .csv, .json or .jsonl)")
    if qa == "auto":
        qa = path.parent / "qa.json" if (path.parent / "qa.json").is_file() and path.name != "qa.json" else None
    if qa:
        qa = Path(qa)
        if not qa.is_file():
            raise UserError(f"{qa}: QA file not found")
        data = _load_json(qa)
        if not isinstance(data, list):
            raise UserError(f"{qa}: expected a list of {{video_id, q, a}} records")
        groups = {it.video_id: it.groups for it in items if it.kind == "caption"}
        qa_items = _qa_items(data, qa)
        for it in qa_items:
            it.groups = dict(groups.get(it.video_id, {}))
        items += qa_items
        info["qa_file"] = str(qa)
    ids = Counter(it.id for it in items)
    dup = [k for k, n in ids.items() if n > 1]
    if dup:
        raise UserError(f"{path}: duplicate item ids {dup[:5]}")
    if not items:
        raise UserError(f"{path}: no items to evaluate")
    info["path"] = str(path)
    info["counts"] = dict(Counter(it.kind for it in items))
    return items, info


def find_video(videos_dir: Path, video_id: str) -> Path | None:
    """``videos_dir/<id>.<ext>`` for the usual extensions (or ``<id>`` itself when it has one)."""
    direct = videos_dir / video_id
    if direct.suffix.lower() in VIDEO_EXTS and direct.is_file():
        return direct
    for ext in VIDEO_EXTS:
        p = videos_dir / f"{video_id}{ext}"
        if p.is_file():
            return p
    return None


# --------------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------------
def read_predictions(path: Path) -> dict[str, dict]:
    """Finished items of ``predictions.jsonl`` (:func:`ski_lvlm.metrics.scores.read_predictions`)."""
    from ski_lvlm.metrics.scores import read_predictions as read

    try:
        return read(path)
    except ValueError as e:
        raise UserError(str(e)) from None


def generate_batch(model, processor, prompts: Sequence[str], video_features, max_new_tokens: int) -> list[str]:
    """Greedy generation for a batch of prompts with one video each (left padding, KV cache)."""
    import torch

    inputs = processor(list(prompts))  # left-padded {input_ids, attention_mask}
    device = video_features.device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    with torch.inference_mode():
        out = model.generate(**inputs, video_features=video_features, max_new_tokens=max_new_tokens,
                             do_sample=False, use_cache=True)
    return processor.batch_decode(out[:, inputs["input_ids"].shape[1]:])


def read_video_frames(path: Path, num_frames: int, sampling: str, timeout: float | None = 60.0):
    """``read_frames`` with the default backend, then PyAV when that one fails to decode.

    decord rejects some valid files (seen: H.264 at 48x32 px, "DECORDArrayCopyFromTo: The size must exactly
    match"); both backends pick the same frame indices, so the fallback gives the same frames.
    """
    from ski_lvlm.data.video import VideoDecodeError, default_backend, read_frames

    try:
        return read_frames(path, num_frames, sampling=sampling, timeout=timeout)
    except VideoDecodeError:
        if default_backend() == "pyav":
            raise
        return read_frames(path, num_frames, sampling=sampling, timeout=timeout, backend="pyav")


class VideoFeatures:
    """Frozen-tower features per video, decoded once and kept in a small LRU (QA reuses the caption video)."""

    def __init__(self, model, videos_dir: Path, capacity: int = 64, decode_timeout: float | None = 60.0):
        self.model, self.videos_dir, self.capacity, self.timeout = model, videos_dir, capacity, decode_timeout
        self.cache: OrderedDict[str, Any] = OrderedDict()
        self.num_frames = int(model.config.num_frames)
        self.sampling = getattr(model.config, "frame_sampling", "segment_middle") or "segment_middle"

    def get(self, video_id: str):
        """``[n_v, d_v]`` features, or raises ``ValueError``/``VideoDecodeError`` with the reason."""
        import torch

        if video_id in self.cache:
            self.cache.move_to_end(video_id)
            return self.cache[video_id]
        path = find_video(self.videos_dir, video_id)
        if path is None:
            raise FileNotFoundError(f"no video {video_id}.{{{','.join(e[1:] for e in VIDEO_EXTS)}}} in {self.videos_dir}")
        frames = read_video_frames(path, self.num_frames, self.sampling, self.timeout)  # [t, H, W, 3] uint8
        device = next(self.model.parameters()).device
        x = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].to(device)  # [1, t, 3, H, W] uint8
        with torch.inference_mode():
            feats = self.model.encode_video(x)[0]  # [n_v, d_v]
        self.cache[video_id] = feats
        if len(self.cache) > self.capacity:
            self.cache.popitem(last=False)
        return feats


def run_generation(items: Sequence[EvalItem], pred_path: Path, model, processor, videos_dir: Path, *,
                   batch_size: int = 8, max_new_tokens: int = 64, retry_errors: bool = False,
                   progress: bool = True, generate: Callable | None = None) -> dict:
    """Generate every unfinished item, appending one JSON line per item (flushed + fsynced per batch).

    Returns counts ``{"done_before", "generated", "errors_new"}``.
    """
    import torch
    from tqdm import tqdm

    generate = generate or generate_batch
    done = read_predictions(pred_path)
    if retry_errors:
        done = {k: v for k, v in done.items() if not v.get("error")}
    pending = [it for it in items if it.id not in done]
    # group by video so a video is decoded once and stays in the LRU while its questions are asked
    order = {vid: i for i, vid in enumerate(dict.fromkeys(it.video_id for it in pending))}
    pending.sort(key=lambda it: order[it.video_id])
    feats = VideoFeatures(model, videos_dir)
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
                    ok.append((it, feats.get(it.video_id)))
                except Exception as e:  # a bad video is a recorded error, not the end of the run
                    rows.append(_record(it, None, error=f"{type(e).__name__}: {e}"))
            if ok:
                tic = time.time()
                video = torch.stack([x for _, x in ok])  # [b, n_v, d_v]
                texts = generate(model, processor, [it.prompt() for it, _ in ok], video, max_new_tokens)
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


# --------------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------------
def _norm_answer(s: str) -> list[str]:
    s = s.lower()
    s = "".join(ch if ch not in string.punctuation else " " for ch in s)
    return [w for w in s.split() if w not in ("a", "an", "the")]


def qa_token_f1(prediction: str, answer: str) -> tuple[float, float]:
    """(normalised exact match, token F1) SQuAD-style: lower-case, no punctuation/articles."""
    p, a = _norm_answer(prediction or ""), _norm_answer(answer)
    em = float(p == a)
    common = Counter(p) & Counter(a)
    same = sum(common.values())
    if not p or not a or same == 0:
        return em, float(p == a)
    prec, rec = same / len(p), same / len(a)
    return em, 2 * prec * rec / (prec + rec)


def _group_means(per_item: dict[str, dict], groups: dict[str, dict[str, str]], key: str) -> dict[str, dict]:
    by: dict[str, list[dict]] = defaultdict(list)
    for iid, scores in per_item.items():
        g = groups.get(iid, {}).get(key)
        if g is not None:
            by[g].append(scores)
    out = {}
    for g in sorted(by):
        rows = by[g]
        out[g] = {"n": len(rows)}
        for m in rows[0]:
            out[g][m] = sum(r[m] for r in rows) / len(rows)
    return out


def _grounding(caps: list[EvalItem], preds: dict[str, dict], phrases) -> dict:
    """Action/side/tempo accuracy (with phrases) and caption diversity (always) of finished captions.

    The truth of a clip: its ``action`` group when that is a class of the phrase file (Charades CSVs),
    else the class its references agree on; its tempo is the one its references agree on.
    """
    from ski_lvlm.metrics.grounding import caption_diversity, caption_grounding, out_of_vocabulary, reference_truth

    captions = [preds[it.id]["prediction"] or "" for it in caps]
    oov = out_of_vocabulary(captions, [r for it in caps for r in it.references])
    if phrases is None:
        return {**caption_diversity(captions), **oov, "phrases": None, "per_class": {},
                **{k: None for k in ("action_accuracy", "side_accuracy", "tempo_accuracy", "tempo_accuracy_all")},
                "note": "n/a: the eval set has no class_phrases.json (action, side and tempo accuracy need the "
                        "phrases that identify each class; give --phrases FILE)"}
    records = []
    for it, cap in zip(caps, captions):
        action, tempo = reference_truth(it.references, phrases)
        given = it.groups.get("action")
        records.append({"caption": cap, "action": given if given in phrases.classes else action, "tempo": tempo})
    return {**caption_grounding(records, phrases), **oov, "phrases": phrases.path}


def _closed_qa(qas: list[EvalItem], preds: dict[str, dict], em_f1: dict, phrases) -> dict:
    """Accuracy per closed question type, next to the token F1 of the same questions."""
    from ski_lvlm.metrics.grounding import closed_qa_accuracy

    if phrases is None:
        return {"per_type": {}, "accuracy": None,
                "note": "n/a: no class_phrases.json (question types and answer readers come from it)"}
    return closed_qa_accuracy([{"question": it.question, "prediction": preds[it.id]["prediction"],
                                "answer": it.references[0], "token_f1": em_f1[it.id][1]} for it in qas], phrases)


def score_predictions(items: Sequence[EvalItem], preds: dict[str, dict], *, meteor: str = "auto",
                      judge: dict | None = None, out: Path | None = None, phrases=None) -> dict:
    """Caption metrics (overall + per group), grounding, QA / MC scores and the error list of finished predictions.

    ``phrases``: a :class:`ski_lvlm.metrics.grounding.Phrases` (None: grounding scores are n/a).
    """
    from ski_lvlm.metrics.captions import compute_caption_metrics

    res: dict[str, Any] = {"n_items": len(items), "n_finished": sum(it.id in preds for it in items)}
    errors = [{"id": it.id, "video_id": it.video_id, "error": preds[it.id]["error"]}
              for it in items if it.id in preds and preds[it.id].get("error")]
    res["errors"] = errors
    res["n_errors"] = len(errors)

    def good(kind: str) -> list[EvalItem]:
        return [it for it in items if it.kind == kind and it.id in preds and not preds[it.id].get("error")]

    caps = good("caption")
    if caps:
        cand = {it.id: [preds[it.id]["prediction"] or ""] for it in caps}
        refs = {it.id: it.references for it in caps}
        m = compute_caption_metrics(cand, refs, meteor=meteor)
        groups = {it.id: it.groups for it in caps}
        keys = sorted({k for it in caps for k in it.groups})
        res["captions"] = {"n": len(caps), "scores": m["scores"], "tokenizer": m["tokenizer"], "meteor": m["meteor"],
                           "per_group": {k: _group_means(m["per_item"], groups, k) for k in keys},
                           "per_item": m["per_item"]}
        res["grounding"] = _grounding(caps, preds, phrases)
    qas = good("qa")
    if qas:
        em_f1 = {it.id: qa_token_f1(preds[it.id]["prediction"] or "", it.references[0]) for it in qas}
        n = len(qas)
        res["qa_open"] = {"n": n, "automatic": {
            "exact_match": 100 * sum(v[0] for v in em_f1.values()) / n,
            "token_f1": 100 * sum(v[1] for v in em_f1.values()) / n,
            "note": "automatic string scores (normalised exact match, SQuAD token F1), not the LLM judge"},
            "judge": None}
        res["qa_closed"] = _closed_qa(qas, preds, em_f1, phrases)
        if judge:
            res["qa_open"]["judge"] = _judge_qa(qas, preds, judge, out)
    mcs = good("mc")
    if mcs:
        from ski_lvlm.metrics.qa import mcq_accuracy

        recs = [{"id": it.id, "prediction": preds[it.id]["prediction"], "options": it.options,
                 "answer": it.references[0]} for it in mcs]
        try:
            res["mc"] = mcq_accuracy(recs)
        except ValueError as e:
            raise UserError(f"multiple choice: {e}") from None
    return res


def _judge_qa(qas: list[EvalItem], preds: dict[str, dict], judge: dict, out: Path | None) -> dict:
    from ski_lvlm.llm_client import ChatClient
    from ski_lvlm.metrics.judge import Judge, JudgeItem, JudgmentCache
    from ski_lvlm.metrics.qa import score_open_qa

    try:
        client = ChatClient(judge["url"], judge["model"], timeout=judge.get("timeout", 60.0))
    except ValueError as e:
        raise UserError(f"--judge-url: {e}") from None
    cache = JudgmentCache(out / "judge_cache.jsonl") if out else None
    j = Judge(client, cache=cache, gen={"temperature": 0.0})
    items = [JudgeItem(it.id, it.question, it.references[0], preds[it.id]["prediction"] or "") for it in qas]
    s = score_open_qa(items, j, concurrency=judge.get("concurrency", 4))
    s.pop("judgments", None)
    s["judge_model"], s["judge_url"] = judge["model"], client.base_url
    return s


def _f(v, scale: float = 100.0, nd: int = 1) -> str:
    return "-" if v is None else f"{scale * v:.{nd}f}"


def results_markdown(res: dict) -> str:
    """The results as Markdown tables (caption scores x100, as papers print them)."""
    lines = [f"# Caption / QA benchmark: `{res.get('model', '?')}`", "",
             f"Eval set `{res.get('eval_set', {}).get('path', '?')}`; {res['n_finished']}/{res['n_items']} items "
             f"finished, {res['n_errors']} errors. Input: video only (no skeleton).", ""]
    c = res.get("captions")
    if c:
        lines += [f"## Captions ({c['n']} videos; x100; tokenizer {c['tokenizer']})", "",
                  "| " + " | ".join(CAPTION_METRICS) + " |", "|" + "---:|" * len(CAPTION_METRICS),
                  "| " + " | ".join(_f(c["scores"].get(k)) for k in CAPTION_METRICS) + " |", ""]
        if c["scores"].get("METEOR") is None:
            lines += [f"METEOR: {c['meteor']['note']}", ""]
        for key, table in c["per_group"].items():
            ms = [k for k in CAPTION_METRICS if table and k in next(iter(table.values()))]
            lines += [f"### Per {key} (mean of per-item scores, x100)", "",
                      f"| {key} | n | " + " | ".join(ms) + " |", "|---|---:|" + "---:|" * len(ms)]
            for g, row in table.items():
                lines.append(f"| {g} | {row['n']} | " + " | ".join(_f(row[k]) for k in ms) + " |")
            lines.append("")
    g = res.get("grounding")
    if g:
        lines += grounding_markdown(g)
    q = res.get("qa_open")
    if q:
        a = q["automatic"]
        lines += [f"## Open-ended QA ({q['n']} questions)", "", "| score | value |", "|---|---:|",
                  f"| exact match % (automatic) | {a['exact_match']:.1f} |", f"| token F1 % (automatic) | {a['token_f1']:.1f} |"]
        j = q.get("judge")
        if j:
            lines += [f"| judge accuracy % ({j['judge_model']}) | {_f(j.get('accuracy'), 1)} |",
                      f"| judge score 0-5 ({j['judge_model']}) | {_f(j.get('mean_0_5'), 1, 2)} |",
                      f"| judge failures | {j.get('n_failed', 0)} |"]
        else:
            lines.append("| LLM judge | not run (no --judge-url) |")
        lines += ["", a["note"] + ".", ""]
        qc = res.get("qa_closed") or {}
        if qc.get("per_type"):
            lines += [f"### Closed questions: accuracy per type ({qc['n']} questions, {qc['n_unscored']} unscored)", "",
                      "| type | n | accuracy % | token F1 % |", "|---|---:|---:|---:|"]
            lines += [f"| {t} | {r['n']} | {_f(r['accuracy'])} | {_f(r['token_f1'])} |"
                      for t, r in qc["per_type"].items()]
            lines.append("")
        elif qc.get("note"):
            lines += [f"Closed questions: {qc['note']}.", ""]
    mc = res.get("mc")
    if mc:
        lines += [f"## Multiple choice ({mc['n']} questions)", "",
                  f"Accuracy {_f(mc['accuracy'], 1)}% ({mc['n_correct']}/{mc['n']}, {mc['n_unparsed']} unparsed answers).", ""]
    if res["errors"]:
        lines += ["## Errors", ""] + [f"- `{e['id']}`: {e['error']}" for e in res["errors"][:50]]
        if len(res["errors"]) > 50:
            lines.append(f"- ... and {len(res['errors']) - 50} more (results.json)")
        lines.append("")
    return "\n".join(lines)


def grounding_markdown(g: dict) -> list[str]:
    """The grounding scores as Markdown lines (n/a where the eval set has no phrases)."""
    na = "n/a"
    pct = lambda v: na if v is None else _f(v)  # noqa: E731
    lines = [f"## Grounding ({g['n']} captions)", "",
             "| action acc % | side acc % (n) | tempo acc % among named (n) | tempo acc % of all | "
             "distinct captions | top caption share % |", "|---:|---:|---:|---:|---:|---:|",
             f"| {pct(g.get('action_accuracy'))} | {pct(g.get('side_accuracy'))} ({g.get('n_side', na)}) | "
             f"{pct(g.get('tempo_accuracy'))} ({g.get('n_tempo_named', na)}) | {pct(g.get('tempo_accuracy_all'))} | "
             f"{g['distinct_captions']} | {pct(g.get('top_caption_share'))} |", ""]
    if g.get("top_caption") is not None:
        lines += [f"Most frequent caption: \"{g['top_caption']}\"", ""]
        if g.get("oov_word_share") is not None:
            lines += [f"Words outside the references' vocabulary: {100 * g['oov_word_share']:.2f} % "
                      f"({', '.join(g['oov_words']) or 'none'})", ""]
    if g.get("note"):
        lines += [g["note"] + ".", ""]
    else:
        lines += [f"Action: the caption names the clip's class and no other (no action named: "
                  f"{pct(g.get('no_action_share'))}%, ambiguous: {pct(g.get('ambiguous_share'))}%). Side: among "
                  "captions naming left/right/both for clips whose class has a side. Phrases: "
                  f"`{g.get('phrases')}`.", ""]
    if g.get("per_class"):
        lines += ["| class | n | action acc % |", "|---|---:|---:|"]
        lines += [f"| {c} | {r['n']} | {_f(r['action_accuracy'])} |" for c, r in g["per_class"].items()]
        lines.append("")
    return lines


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _read_phrases(arg: str, eval_set: Path):
    from ski_lvlm.metrics.grounding import find_phrases, load_phrases

    if arg == "none":
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


def _settings(args, model_dir: Path) -> dict:
    return {"model": str(model_dir.resolve()), "prompt": args.prompt, "max_new_tokens": args.max_new_tokens,
            "decoding": "greedy", "input": "video only"}


@cli_entry(PROG)
def main(argv: list[str] | None = None) -> int:
    from ski_lvlm.utils.io import atomic_write_json, atomic_write_text, check_writable_parent

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
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        problems.append(f"--model {model_dir}: not a SKI-LVLM model folder (no config.json)")
    if problems:
        raise UserError("; ".join(problems))
    eval_set = Path(args.eval_set)
    items, info = load_eval_set(eval_set, classes=args.classes, question=args.prompt,
                                qa=None if args.qa == "none" else args.qa)
    if args.limit:
        items = items[: args.limit]
    phrases = _read_phrases(args.phrases, eval_set)
    videos_dir = Path(args.videos) if args.videos else eval_set.parent / "videos"
    if not videos_dir.is_dir():
        raise UserError(f"--videos {videos_dir}: not a folder")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pred_path, settings_path = out / "predictions.jsonl", out / "settings.json"
    settings = _settings(args, model_dir)
    if args.overwrite:
        pred_path.unlink(missing_ok=True)
    elif settings_path.is_file() and pred_path.is_file():
        old = json.loads(settings_path.read_text())
        diff = [k for k in settings if old.get(k) != settings[k]]
        if diff:
            raise UserError(f"{out}: holds predictions made with other settings ({', '.join(diff)}: "
                            f"{[old.get(k) for k in diff]}); use another --out or --overwrite")
    atomic_write_json(settings_path, settings)

    done = read_predictions(pred_path)
    pending = [it for it in items if it.id not in done or (args.retry_errors and done[it.id].get("error"))]
    counts = {"done_before": len(items) - len(pending), "generated": 0, "errors_new": 0}
    run_info: dict = {}
    if pending:
        import torch

        from ski_lvlm.models.lvlm import load
        from ski_lvlm.utils.runtime import pick_device

        try:
            device = pick_device(args.device)
        except RuntimeError as e:
            raise UserError(str(e)) from None
        print(f"{PROG}: {len(pending)} of {len(items)} items to generate ({counts['done_before']} done before)")
        model, processor = load(model_dir, device=device)
        if model.video_tower is None:
            raise UserError(f"{model_dir}: the model has no video tower (config.video_encoder); it cannot read videos")
        torch.manual_seed(0)
        c = run_generation(pending, pred_path, model, processor, videos_dir, batch_size=args.batch_size,
                           max_new_tokens=args.max_new_tokens, retry_errors=args.retry_errors,
                           progress=not args.no_progress)
        counts.update(generated=c["generated"], errors_new=c["errors_new"])
    if (model_dir / "run_info.json").is_file():
        run_info = json.loads((model_dir / "run_info.json").read_text())

    preds = read_predictions(pred_path)
    judge = {"url": args.judge_url, "model": args.judge_model} if args.judge_url else None
    res = score_predictions(items, preds, meteor=args.meteor, judge=judge, out=out, phrases=phrases)
    res.update(model=str(model_dir), eval_set=info, videos=str(videos_dir), settings=settings, run=counts,
               training={k: run_info.get(k) for k in ("stage", "llm_adapter", "steps", "p_inject", "final_loss")}
               if run_info else None)
    atomic_write_json(out / "results.json", res)
    md = results_markdown(res)
    atomic_write_text(out / "results.md", md)
    caps = [r for r in preds.values() if r.get("kind") == "caption" and not r.get("error")]
    atomic_write_text(out / "judge_input_captions.jsonl",
                      "".join(json.dumps({k: r[k] for k in ("id", "question", "answer", "prediction")},
                                         ensure_ascii=False) + "\n" for r in caps))
    print(md)
    print(f"{PROG}: {counts['generated']} generated now, {counts['done_before']} reused, {res['n_errors']} errors; "
          f"wrote {out / 'results.json'}, {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
