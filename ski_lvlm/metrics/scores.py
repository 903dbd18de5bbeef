"""Per-clip score tables: the one format ``ski-lvlm eval compare`` reads, and the adapters that produce it.

A corpus number (top-1 72.2 %) cannot say whether another run's 75.0 % is better: that needs each clip's
score, so the same clips can be paired and resampled across runs. The format is ``scores.jsonl``, one
JSON object per line::

    {"clip": "S001C001P003R001A023", "zero_shot_top1": 1, "zero_shot_top5": 1}
    {"clip": "S001C001P003R001A024", "caption_action": 0, "qa_side": 1, "seed": 3}

* ``clip``: the clip id, the same in every run that is compared (a string; numbers are turned into one).
* Every other key is a metric, with a number per clip (``true``/``false`` count as 1/0; 0/1 correctness for
  accuracies, any per-item score otherwise). ``null`` or an absent key: not scored for this clip.
* ``seed`` (optional): the training seed of the run, the same on every line that has it.
* Lines of the same clip merge, so the score files of one run (zero-shot, probe, captions) can simply be
  concatenated; a metric given twice for one clip with two values is an error.

Producers:

* ``ski-lvlm eval zero-shot`` writes ``OUT/scores_<label>.jsonl`` per model (``zero_shot_top1``,
  ``zero_shot_top5``).
* ``ski-lvlm eval captions`` writes ``predictions.jsonl``; :func:`caption_clip_scores` scores it per clip
  with the eval set's ``class_phrases.json`` (:mod:`ski_lvlm.metrics.grounding`).
* Anything else (the probe, a new metric) writes ``scores.jsonl`` with :func:`write_scores`.

A run is named by ``PATH[#LABEL]`` (:func:`load_run`): a score file, a folder with ``scores.jsonl``, a
zero-shot folder with ``#LABEL`` (its ``scores_<LABEL>.jsonl``) or a caption-eval folder.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = ["RunScores", "read_scores", "write_scores", "read_predictions", "caption_clip_scores", "load_run",
           "seed_from_path", "SCORES_FILE"]

SCORES_FILE = "scores.jsonl"
_SEED_IN_PATH = re.compile(r"(?:^|[^a-z0-9])seed[_-]?(\d+)(?![0-9])", re.IGNORECASE)


@dataclass(frozen=True)
class RunScores:
    """One evaluated run: per-clip scores of each metric, and its training seed when known."""

    name: str
    """Where the scores came from (for tables and error messages)."""
    seed: int | None
    scores: dict[str, dict[str, float]]
    """metric -> clip id -> value (only the clips the metric scores)."""


def _number(value: Any, where: str, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    raise ValueError(f"{where}: metric {key!r} must be a finite number, true/false or null, got {value!r}")


def read_scores(path: str | Path) -> tuple[dict[str, dict[str, float]], int | None]:
    """``(metric -> clip -> value, seed or None)`` of a ``scores.jsonl``; ``ValueError`` names file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read score file: {e}") from None
    scores: dict[str, dict[str, float]] = {}
    seeds: set[int] = set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: invalid JSON ({e.msg})") from None
        if not isinstance(row, dict) or row.get("clip") is None:
            raise ValueError(f"{where}: expected an object with a \"clip\" id, got {line[:80]!r}")
        clip = str(row["clip"])
        for key, value in row.items():
            if key == "clip":
                continue
            if key == "seed":
                if value is not None:
                    if not isinstance(value, int) or isinstance(value, bool):
                        raise ValueError(f"{where}: seed must be an integer, got {value!r}")
                    seeds.add(value)
                continue
            v = _number(value, where, key)
            if v is None:
                continue
            old = scores.setdefault(key, {}).setdefault(clip, v)
            if old != v:
                raise ValueError(f"{where}: clip {clip!r} has two values of {key!r} ({old} and {v})")
    if len(seeds) > 1:
        raise ValueError(f"{path}: lines of one run with different seeds {sorted(seeds)}")
    if not scores:
        raise ValueError(f"{path}: no scores (expected lines like {{\"clip\": ID, \"metric\": value}})")
    return scores, (seeds.pop() if seeds else None)


def write_scores(path: str | Path, rows: Iterable[Mapping[str, Any]], seed: int | None = None) -> Path:
    """Write ``{"clip": id, metric: value, ...}`` rows as ``scores.jsonl`` (atomically); returns the path."""
    from ski_lvlm.utils.io import atomic_write_text

    lines = []
    for row in rows:
        row = dict(row)
        if seed is not None:
            row["seed"] = seed
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))
    return Path(path)


def seed_from_path(path: str | Path) -> int | None:
    """The seed a run's path names (``.../seed3/...``, ``ski_seed-3``), the last one when several do."""
    found = _SEED_IN_PATH.findall(str(path))
    return int(found[-1]) if found else None


# --------------------------------------------------------------------------------------------------
# caption evaluation -> per-clip scores
# --------------------------------------------------------------------------------------------------
def caption_clip_scores(records: Iterable[Mapping[str, Any]], phrases) -> list[dict[str, Any]]:
    """Per-clip grounding scores of ``ski-lvlm eval captions`` prediction records.

    Every score is defined by the clip's truth only, never by what the caption says, so two runs score
    the same clips and can be paired (the corpus "side accuracy among captions that name a side" cannot):

    * ``caption_action``: the caption names the clip's class and no other (clips with a known class);
    * ``caption_side_all``: it names the class's side (left/right/both) and not another one (clips whose
      class has a side; naming none counts as wrong);
    * ``caption_tempo_all``: it names the tempo the references agree on (clips with a known tempo; the
      corpus ``tempo_accuracy_all``);
    * ``qa_<type>``: the closed answer is right (:func:`ski_lvlm.metrics.grounding.closed_qa_accuracy`'s
      question types and readers), averaged over a clip's questions of that type.

    The truth of a caption clip is the one ``eval captions`` uses: its ``action`` group when that is a class
    of the phrase file, else the class its references agree on. Records with an ``error`` are skipped.
    Clip id = the record's ``video_id``.
    """
    from ski_lvlm.metrics.grounding import (action_of, closed_qa_accuracy, reference_truth, side_of,
                                            tempo_of)

    rows: dict[str, dict[str, Any]] = {}
    qa: dict[tuple[str, str], list[float]] = {}
    for r in records:
        if r.get("error"):
            continue
        clip, pred = str(r["video_id"]), r.get("prediction") or ""
        if r.get("kind") == "caption":
            action, tempo = reference_truth(r.get("references") or [r.get("answer", "")], phrases)
            given = (r.get("groups") or {}).get("action")
            truth = given if given in phrases.classes else action
            row = rows.setdefault(clip, {"clip": clip})
            if truth in phrases.classes:
                row["caption_action"] = int(action_of(pred, phrases) == truth)
                true_side = phrases.classes[truth].get("side")
                if true_side:
                    row["caption_side_all"] = int(side_of(pred, phrases) == true_side)
            if tempo:
                row["caption_tempo_all"] = int(tempo_of(pred, phrases) == tempo)
        elif r.get("kind") == "qa":
            one = closed_qa_accuracy([{"question": r["question"], "prediction": pred, "answer": r["answer"]}], phrases)
            for qtype, s in one["per_type"].items():
                qa.setdefault((clip, f"qa_{qtype}"), []).append(s["accuracy"])
    for (clip, key), values in qa.items():
        rows.setdefault(clip, {"clip": clip})[key] = sum(values) / len(values)
    return [row for row in rows.values() if len(row) > 1]


def read_predictions(path: str | Path, required: tuple[str, ...] = ("id",)) -> dict[str, dict]:
    """The records of a ``predictions.jsonl`` by id (none when the file is missing).

    A torn last line (a run killed mid-write) is ignored and a later line of an id wins (retries); any
    other bad line is a ``ValueError`` naming the file and line, as is a record without the ``required`` keys.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read: {e}") from None
    out: dict[str, dict] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):  # the write that was interrupted
                continue
            raise ValueError(f"{path}:{n}: invalid JSON line (remove it to continue)") from None
        if not isinstance(rec, dict) or any(k not in rec for k in required):
            raise ValueError(f"{path}:{n}: not a prediction record (needs {' and '.join(required)})")
        out[str(rec["id"])] = rec
    return out


def _caption_run(folder: Path, phrases_path: str | Path | None) -> dict[str, dict[str, float]]:
    from ski_lvlm.metrics.grounding import load_phrases

    if phrases_path is None:
        results = folder / "results.json"
        try:
            phrases_path = (json.loads(results.read_text(encoding="utf-8")).get("grounding") or {}).get("phrases")
        except (OSError, json.JSONDecodeError):
            phrases_path = None
        if not phrases_path:
            raise ValueError(f"{folder}: a caption evaluation without class phrases (results.json names none); "
                             "give the class_phrases.json of its eval set")
    phrases = load_phrases(phrases_path)
    records = read_predictions(folder / "predictions.jsonl", required=("id", "video_id")).values()
    rows = caption_clip_scores(records, phrases)
    scores: dict[str, dict[str, float]] = {}
    for row in rows:
        for key, value in row.items():
            if key != "clip":
                scores.setdefault(key, {})[row["clip"]] = float(value)
    if not scores:
        raise ValueError(f"{folder / 'predictions.jsonl'}: no clip could be scored with {phrases_path}")
    return scores


def load_run(spec: str, phrases: str | Path | None = None) -> RunScores:
    """Read one run named ``PATH[#LABEL]``; ``ValueError`` names the path and what was looked for.

    * a ``.jsonl`` score file;
    * a folder with ``#LABEL``: its ``scores_<LABEL>.jsonl`` (a zero-shot output with several models);
    * a folder with ``scores.jsonl``;
    * a caption-eval folder (``predictions.jsonl``), scored with :func:`caption_clip_scores` and
      ``phrases`` (default: the ``class_phrases.json`` its ``results.json`` names).

    The seed is the files' ``seed`` field, else the one the path names (``seed3``), else None.
    """
    path_s, _, label = spec.partition("#")
    path = Path(path_s)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if path.is_dir():
        if label:
            path = path / f"scores_{label}.jsonl"
            if not path.is_file():
                raise ValueError(f"{spec}: no {path.name} in {path.parent}")
        elif (path / SCORES_FILE).is_file():
            path = path / SCORES_FILE
        elif (path / "predictions.jsonl").is_file():
            return RunScores(spec, seed_from_path(path), _caption_run(path, phrases))
        else:
            raise ValueError(f"{path}: no {SCORES_FILE}, scores_<label>.jsonl (name it with #LABEL) or "
                             "predictions.jsonl in this folder")
    elif label:
        raise ValueError(f"{spec}: #LABEL picks a file in a folder, but {path} is a file")
    scores, seed = read_scores(path)
    return RunScores(spec, seed if seed is not None else seed_from_path(path), scores)
