"""Eval sets of the caption / QA benchmark: files -> :class:`EvalItem` lists (lmms-eval's "docs").

Detected from the file:

* a Charades CSV (``Charades_v1_test.csv``, also the synthetic world's): references = the descriptions
  (``ski_lvlm.data.charades`` rule; the script when there is none); groups = the main (longest) action
  class, named through ``Charades_v1_classes.txt`` next to the CSV (or ``classes``), and the scene;
* a caption JSON ``{video_id: [reference, ...]}`` or SKI's ``[{video_name, Q, A, references}]``;
* a QA JSON in Video-ChatGPT form ``[{video_id, q, a}]`` (or ``{video_name, Q, A}``); an item with
  ``options`` (a list, or a dict letter -> text) is multiple choice and ``a`` is its letter or text.

With a caption set, a ``qa.json`` next to it (the synthetic world's) is read too (``qa`` picks another).
Readers raise :class:`~ski_lvlm.utils.errors.UserError` naming the file and record, since a broken eval set
is the user's to fix.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ski_lvlm.data.video import VIDEO_EXTS
from ski_lvlm.utils.errors import UserError

__all__ = ["EvalItem", "MC_SUFFIX", "load_eval_set"]

MC_SUFFIX = "Answer with the letter of the correct option."


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
    from ski_lvlm.data.charades import (caption_eval_set, main_action, read_charades_classes,
                                        read_charades_csv)

    videos, report = read_charades_csv(path)  # a CharadesFormatError names the file and line
    names: dict[str, str] = {}
    classes = classes or (path.parent / "Charades_v1_classes.txt")
    if classes.is_file():
        names = read_charades_classes(classes)
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
