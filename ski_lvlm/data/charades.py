"""Charades annotations: typed records, a parse report, and the caption/QA sets built from them.

The Charades release ships ``Charades_v1_train.csv`` / ``Charades_v1_test.csv`` with the columns
``id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length`` and
``Charades_v1_classes.txt`` (``c000 Holding some clothes``). Free-text fields are quoted and may hold
commas and newlines; ``quality``/``relevance``/``actions`` are often empty. Every empty field is
counted in a :class:`ParseReport` instead of being silently turned into a default, and a malformed row
raises :class:`CharadesFormatError` naming the file and the line it starts on (or, with
``skip_bad=True``, is skipped and listed in the report).

Reference-description rule (used by the caption benchmark, documented in the README):
  * ``descriptions`` holds one or more human descriptions separated by ``;``. A fragment that starts
    with a lower-case letter or a digit is a continuation of the previous description (a ``;`` used
    inside a sentence), so it is glued back with ``"; "``. Fragments are stripped; empty ones dropped.
  * When a video has no description, its ``script`` (the text the actors were given) becomes the only
    reference if ``fallback_to_script`` is on (the default), and the fallback is counted.
  * A video with neither has no reference and is left out of the caption set (counted).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ski_lvlm.utils.errors import SkiLvlmError

__all__ = [
    "CHARADES_COLUMNS", "CharadesAction", "CharadesVideo", "CharadesFormatError", "ParseReport",
    "read_charades_csv", "read_charades_classes", "parse_actions", "split_descriptions",
    "references", "caption_eval_set", "caption_benchmark", "DESCRIBE_QUESTION", "main_action",
]

CHARADES_COLUMNS: tuple[str, ...] = (
    "id", "subject", "scene", "quality", "relevance", "verified", "script", "objects", "descriptions",
    "actions", "length",
)
# The SKI/ADL-X Charades description question (original-system.md §7.1).
DESCRIBE_QUESTION = ("Describe the video in details, keep it within 100 words, include all the actions happening "
                     "and the object interaction of the person/persons in the scene.")

_ACTION_RE = re.compile(r"^c(\d{3})$")
_CLASS_LINE_RE = re.compile(r"^(c\d{3})\s+(.+?)\s*$")


class CharadesFormatError(SkiLvlmError, ValueError):
    """A malformed Charades row or class line; names the file and the (1-based) line it starts on."""

    def __init__(self, path: str | Path, line: int, msg: str):
        self.path, self.line, self.msg = str(path), line, msg
        super().__init__(f"{path}:{line}: {msg}")


@dataclass(frozen=True)
class CharadesAction:
    """One labelled interval: class ``c092`` from ``start`` to ``end`` seconds."""

    cls: str
    start: float
    end: float

    @property
    def index(self) -> int:
        """Integer class id (``c092`` -> 92)."""
        return int(self.cls[1:])


@dataclass
class CharadesVideo:
    """One row of a Charades CSV. Numeric fields are None when the CSV left them empty."""

    id: str
    subject: str
    scene: str
    quality: int | None
    relevance: int | None
    verified: bool | None
    script: str
    objects: list[str]
    descriptions: list[str]
    actions: list[CharadesAction]
    length: float | None
    line: int = 0
    """1-based line in the CSV where the row starts (for error messages)."""


@dataclass
class ParseReport:
    """What parsing found: rows read, rows skipped (with reasons), empty-field counts per column."""

    path: str
    rows: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    missing: Counter = field(default_factory=Counter)
    """column -> number of rows where it was empty."""

    def to_dict(self) -> dict:
        return {"path": self.path, "rows": self.rows,
                "skipped": [{"line": ln, "reason": r} for ln, r in self.skipped],
                "missing_fields": {k: self.missing.get(k, 0) for k in CHARADES_COLUMNS if k != "id"}}


def parse_actions(text: str) -> list[CharadesAction]:
    """``"c092 11.90 21.20;c147 0.00 12.60"`` -> actions; raises ValueError on a malformed entry."""
    out = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        bits = part.split()
        if len(bits) != 3 or not _ACTION_RE.match(bits[0]):
            raise ValueError(f"bad action {part!r} (expected 'cNNN START END')")
        try:
            start, end = float(bits[1]), float(bits[2])
        except ValueError:
            raise ValueError(f"bad action {part!r}: start/end are not numbers") from None
        if end < start:
            raise ValueError(f"bad action {part!r}: end < start")
        out.append(CharadesAction(bits[0], start, end))
    return out


def split_descriptions(text: str) -> list[str]:
    """Split the ``descriptions`` field into individual descriptions (rule in the module docstring)."""
    out: list[str] = []
    for frag in text.split(";"):
        frag = " ".join(frag.split())  # also folds embedded newlines
        if not frag:
            continue
        if out and (frag[0].islower() or frag[0].isdigit()):
            out[-1] = f"{out[-1]}; {frag}"
        else:
            out.append(frag)
    return out


def _opt_int(value: str, col: str) -> int | None:
    if value == "":
        return None
    try:
        return int(float(value))
    except ValueError:
        raise ValueError(f"column {col!r}: {value!r} is not a number") from None


def _opt_bool(value: str) -> bool | None:
    v = value.strip().lower()
    if v == "":
        return None
    if v in ("yes", "true", "1"):
        return True
    if v in ("no", "false", "0"):
        return False
    raise ValueError(f"column 'verified': {value!r} is not Yes/No")


def _parse_row(row: dict[str, str], line: int, report: ParseReport) -> CharadesVideo:
    vals = {k: (row.get(k) or "").strip() for k in CHARADES_COLUMNS}
    if not vals["id"]:
        raise ValueError("empty id")
    for k in CHARADES_COLUMNS[1:]:
        if vals[k] == "":
            report.missing[k] += 1
    length = None
    if vals["length"]:
        try:
            length = float(vals["length"])
        except ValueError:
            raise ValueError(f"column 'length': {vals['length']!r} is not a number") from None
    return CharadesVideo(
        id=vals["id"], subject=vals["subject"], scene=vals["scene"],
        quality=_opt_int(vals["quality"], "quality"), relevance=_opt_int(vals["relevance"], "relevance"),
        verified=_opt_bool(vals["verified"]), script=" ".join(vals["script"].split()),
        objects=[o.strip() for o in vals["objects"].split(";") if o.strip()],
        descriptions=split_descriptions(vals["descriptions"]), actions=parse_actions(vals["actions"]),
        length=length, line=line,
    )


def read_charades_csv(path: str | Path, *, skip_bad: bool = False) -> tuple[list[CharadesVideo], ParseReport]:
    """Parse a Charades annotation CSV.

    Args:
        path: ``Charades_v1_train.csv`` / ``Charades_v1_test.csv`` (UTF-8, optional BOM).
        skip_bad: skip malformed rows (listed in ``report.skipped``) instead of raising.

    Returns:
        (videos in file order, report).

    Raises:
        CharadesFormatError: missing header columns, a malformed row (wrong field count, bad action,
            non-numeric length, duplicate id) or an unterminated quote; names file and line.
    """
    path = Path(path)
    report = ParseReport(str(path))
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise CharadesFormatError(path, 1, "empty file (expected a header row)") from None
    except csv.Error as e:
        raise CharadesFormatError(path, 1, f"CSV error: {e}") from None
    header = [h.strip() for h in header]
    missing_cols = [c for c in CHARADES_COLUMNS if c not in header]
    if missing_cols:
        raise CharadesFormatError(path, 1, f"header lacks column(s) {', '.join(missing_cols)}; "
                                           f"expected {','.join(CHARADES_COLUMNS)}")
    videos: list[CharadesVideo] = []
    seen: dict[str, int] = {}
    while True:
        start_line = reader.line_num + 1
        try:
            raw = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            # The csv module cannot resynchronise after a broken quote, so this is fatal either way.
            raise CharadesFormatError(path, start_line, f"CSV error: {e}") from None
        if not raw or all(not c.strip() for c in raw):
            continue
        try:
            if len(raw) != len(header):
                raise ValueError(f"{len(raw)} fields, header has {len(header)}")
            video = _parse_row(dict(zip(header, raw)), start_line, report)
            if video.id in seen:
                raise ValueError(f"duplicate id {video.id!r} (first on line {seen[video.id]})")
        except ValueError as e:
            if not skip_bad:
                raise CharadesFormatError(path, start_line, str(e)) from None
            report.skipped.append((start_line, str(e)))
            continue
        seen[video.id] = start_line
        videos.append(video)
    report.rows = len(videos)
    return videos, report


def read_charades_classes(path: str | Path) -> dict[str, str]:
    """``Charades_v1_classes.txt`` -> ``{"c000": "Holding some clothes", ...}`` in file order."""
    path = Path(path)
    classes: dict[str, str] = {}
    for i, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        m = _CLASS_LINE_RE.match(line.strip())
        if not m:
            raise CharadesFormatError(path, i, f"expected 'cNNN class name', got {line.strip()!r}")
        if m.group(1) in classes:
            raise CharadesFormatError(path, i, f"duplicate class {m.group(1)}")
        classes[m.group(1)] = m.group(2)
    if not classes:
        raise CharadesFormatError(path, 1, "no classes found")
    return classes


def references(video: CharadesVideo, fallback_to_script: bool = True) -> list[str]:
    """Reference descriptions of one video (rule in the module docstring)."""
    if video.descriptions:
        return list(video.descriptions)
    if fallback_to_script and video.script:
        return [video.script]
    return []


def caption_eval_set(videos: list[CharadesVideo], fallback_to_script: bool = True
                     ) -> tuple[dict[str, list[str]], Counter]:
    """``{video_id: [reference, ...]}`` plus counts (``from_descriptions``, ``from_script``, ``no_reference``)."""
    refs: dict[str, list[str]] = {}
    counts: Counter = Counter()
    for v in videos:
        r = references(v, fallback_to_script)
        if not r:
            counts["no_reference"] += 1
            continue
        counts["from_descriptions" if v.descriptions else "from_script"] += 1
        refs[v.id] = r
    return refs, counts


def caption_benchmark(refs: dict[str, list[str]], question: str = DESCRIBE_QUESTION) -> list[dict]:
    """SKI's ``test_set_captions.json`` shape ``[{video_name, Q, A}]`` (A = first reference) + all references."""
    return [{"video_name": vid, "Q": question, "A": r[0], "references": r} for vid, r in refs.items()]


def main_action(video: CharadesVideo) -> CharadesAction | None:
    """The longest labelled action (ties: the earliest), used as the single label of a manifest row."""
    if not video.actions:
        return None
    return max(video.actions, key=lambda a: (a.end - a.start, -a.start))

