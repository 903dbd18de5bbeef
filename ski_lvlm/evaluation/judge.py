"""Reading predictions files for the LLM judge, and its results as Markdown (``ski-lvlm eval judge``).

:func:`load_predictions` accepts JSONL or JSON (a list, or a dict keyed by id) with ``id``, ``question``,
``answer`` and ``prediction`` (``question2``/``prediction2`` for consistency), and the Video-ChatGPT/SKI
field names (``video_name``, ``Q``, ``A``, ``pred``, ``Q1``, ``Q2``, ``pred1``, ``pred2``), because
predictions come from other codebases too. The judging itself is :mod:`ski_lvlm.metrics.judge`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ski_lvlm.metrics.judge import JudgeItem
from ski_lvlm.utils.errors import UserError

__all__ = ["load_predictions", "results_markdown"]

_ALIASES = {
    "id": ("id", "video_id", "video_name", "video"),
    "question": ("question", "Q", "q", "Q1"),
    "answer": ("answer", "A", "a", "reference", "ref"),
    "prediction": ("prediction", "pred", "pred1"),
    "question2": ("question2", "Q2"),
    "prediction2": ("prediction2", "pred2"),
}


def _pick(rec: dict, field: str):
    for name in _ALIASES[field]:
        if name in rec and rec[name] is not None:
            return rec[name]
    return None


def load_predictions(path: Path) -> list[JudgeItem]:
    """Read a predictions file into JudgeItems; errors name the file and line/record."""
    if not path.is_file():
        raise UserError(f"{path}: predictions file not found")
    text = path.read_text(encoding="utf-8")
    records: list[tuple[str, object]] = []
    data = None
    if path.suffix != ".jsonl":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if path.suffix == ".json":
                raise UserError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if isinstance(data, dict) and _pick(data, "prediction") is None:  # {id: record, ...}
        data = [{"id": k, **v} if isinstance(v, dict) else v for k, v in data.items()]
    if isinstance(data, dict):
        data = [data]
    if isinstance(data, list):
        records = [(f"record {i}", r) for i, r in enumerate(data)]
    elif data is not None:
        raise UserError(f"{path}: expected a list of records, a dict keyed by id, or JSONL")
    else:
        for ln, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append((f"line {ln}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{ln}: invalid JSON: {e.msg}") from None
    items: list[JudgeItem] = []
    seen: set[str] = set()
    for where, r in records:
        if not isinstance(r, dict):
            raise UserError(f"{path}: {where}: expected an object, got {type(r).__name__}")
        vals = {f: _pick(r, f) for f in _ALIASES}
        missing = [f for f in ("id", "question", "answer", "prediction") if vals[f] is None]
        if missing:
            raise UserError(f"{path}: {where}: missing field(s) {missing} (have {sorted(r)})")
        rid = str(vals["id"])
        if rid in seen:
            raise UserError(f"{path}: {where}: duplicate id {rid!r} (ids must be unique)")
        seen.add(rid)
        items.append(JudgeItem(
            id=rid, question=str(vals["question"]), answer=str(vals["answer"]), prediction=str(vals["prediction"]),
            question2=None if vals["question2"] is None else str(vals["question2"]),
            prediction2=None if vals["prediction2"] is None else str(vals["prediction2"]),
        ))
    if not items:
        raise UserError(f"{path}: no predictions")
    return items


def _fmt(v, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def results_markdown(res: dict) -> str:
    """``results.md``: one row per criterion (x20 score, CI, 0-5 mean, counts), judge and bootstrap named."""
    j = res["judge"]
    lines = [
        f"# LLM-judge scores: {res['predictions']}",
        "",
        f"Judge `{j['model']}` at `{j['base_url']}`, temperature {j['temperature']}; {res['n_items']} items; "
        f"mean x20 (0-100) with a {res['bootstrap']['confidence']:.0%} bootstrap CI "
        f"({res['bootstrap']['n_boot']} resamples, seed {res['bootstrap']['seed']}). Failed items are "
        "excluded from the mean and counted. Scores from different judges are not comparable.",
        "",
        "| criterion | score (x20) | 95% CI | mean (0-5) | scored | failed | skipped |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in res["criteria_order"]:
        s = res["criteria"][c]
        ci = "-" if s["ci95_x20"] is None else f"{s['ci95_x20'][0]:.1f}-{s['ci95_x20'][1]:.1f}"
        lines.append(f"| {c} | {_fmt(s['score_x20'])} | {ci} | {_fmt(s['mean_0_5'], 2)} | {s['n_scored']} "
                     f"| {s['n_failed']} | {s['n_skipped']} |")
        if c == "qa":
            lines.append(f"| qa accuracy (% yes) | {_fmt(s.get('accuracy'))} | "
                         + ("-" if not s.get("ci95_accuracy") else
                            f"{s['ci95_accuracy'][0]:.1f}-{s['ci95_accuracy'][1]:.1f}")
                         + " | | | | |")
    if res["criteria"].get("average_x20") is not None:
        lines += ["", f"Average of the Video-ChatGPT criteria: **{res['criteria']['average_x20']:.1f}**"]
    return "\n".join(lines) + "\n"
