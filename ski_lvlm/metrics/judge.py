"""LLM-judge scoring of free-text answers (Video-ChatGPT's five criteria, plus open-ended QA).

The Video-ChatGPT / LLAVIDAL / SKI scripts ask a judge LLM for a 0-5 score per answer and report the
mean x20. Their pain points, and what this module does instead (``original-system.md`` §7, §10.20):

* a ``while True`` retry that never ends on an answer that never parses -> a bounded number of
  attempts; an item still bad afterwards is a recorded *failure*, excluded from the mean and counted
  (LLAVIDAL scored failures as 0, which silently lowers the mean);
* ``ast.literal_eval`` on a dict with a malformed example -> JSON first, then Python-literal, then a
  regex for the score near "score", then the first standalone integer 0-5;
* the consistency script compared Q1 with Q1 (``question2 = sample['Q1']``) -> both questions and both
  predictions are sent;
* no record of which judge produced a number -> the judge model and endpoint go into every result.

Judgments are cached in a JSONL file keyed by a hash of (prompts, judge model, candidate), so an
interrupted run resumes and a re-run costs no requests. The prompts below are this toolkit's own.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

from ski_lvlm.metrics.stats import mean_with_ci

__all__ = [
    "CRITERIA",
    "DEFAULT_CRITERIA",
    "PROMPTS",
    "JudgeItem",
    "Judgment",
    "JudgmentCache",
    "Judge",
    "parse_score",
    "parse_qa_verdict",
    "build_messages",
    "summarize_judgments",
    "judgment_to_dict",
    "cache_key",
]

log = logging.getLogger(__name__)

DEFAULT_CRITERIA = ("correctness", "detail", "context", "temporal", "consistency")
CRITERIA = DEFAULT_CRITERIA + ("qa",)

_PREAMBLE = (
    "You grade answers that a video-understanding model gave to questions about a video. You cannot "
    "see the video. Treat the reference answer, written by a person who watched it, as the truth, and "
    "judge the model's answer against it. Do not reward length or style for their own sake."
)
_SCORE_FORMAT = (
    'Reply with one JSON object and nothing else, in this form: {"score": S, "reason": "..."} where S '
    "is a whole number from 0 to 5 (0 = completely wrong or empty, 5 = fully meets the criterion) and "
    "reason is one short sentence."
)

# criterion -> (what to judge, user-message template)
_SINGLE_Q = "Question: {question}\nReference answer: {answer}\nModel answer: {prediction}"
_TWO_Q = (
    "Question 1: {question}\nQuestion 2: {question2}\nReference answer (valid for both questions): {answer}\n"
    "Model answer to question 1: {prediction}\nModel answer to question 2: {prediction2}"
)
PROMPTS: dict[str, dict[str, str]] = {
    "correctness": {
        "rubric": (
            "Criterion: factual correctness. Check every claim in the model answer about people, actions, "
            "objects, places and counts against the reference. Contradictions and invented details lower "
            "the score; details that the reference does not mention but that do not conflict with it are "
            "neutral. An answer that is correct but very incomplete can still score high here."
        ),
        "user": _SINGLE_Q,
    },
    "detail": {
        "rubric": (
            "Criterion: detail orientation. Judge how completely the model answer covers what the "
            "reference describes (every action and object interaction) and how specific it is (concrete "
            "objects and actions rather than vague wording). Missing events lower the score; generic "
            "filler does not raise it."
        ),
        "user": _SINGLE_Q,
    },
    "context": {
        "rubric": (
            "Criterion: contextual understanding. Judge whether the model answer grasps the overall "
            "situation of the video (the setting, what the person is trying to do, how the actions relate) "
            "as the reference presents it, rather than listing isolated or out-of-place observations."
        ),
        "user": _SINGLE_Q,
    },
    "temporal": {
        "rubric": (
            "Criterion: temporal understanding. Judge whether the events in the model answer happen in the "
            "same order as in the reference, and whether the answer distinguishes what happens before, "
            "during and after. Correct events in the wrong order lower the score."
        ),
        "user": _SINGLE_Q,
    },
    "consistency": {
        "rubric": (
            "Criterion: consistency. The model was asked two differently worded questions that have the "
            "same correct answer. Judge whether its two answers agree with each other and with the "
            "reference. Two answers that contradict each other score low even if one of them is right."
        ),
        "user": _TWO_Q,
    },
    "qa": {
        "rubric": (
            "Task: decide whether the model answer to the question means the same as the reference answer. "
            "Paraphrases and synonyms count as matching; a different or contradicting answer does not."
        ),
        "user": _SINGLE_Q,
        "format": (
            'Reply with one JSON object and nothing else, in this form: {"pred": "yes" or "no", "score": S} '
            "where pred says whether the model answer matches the reference and S is a whole number from "
            "0 to 5 for how well it matches (5 = exactly)."
        ),
    },
}


@dataclass
class JudgeItem:
    """One answer to judge. ``question2``/``prediction2`` are needed for the consistency criterion."""

    id: str
    question: str
    answer: str
    prediction: str
    question2: str | None = None
    prediction2: str | None = None


@dataclass
class Judgment:
    """The judge's verdict on one (item, criterion); ``ok=False`` is a failure, never a 0."""

    id: str
    criterion: str
    ok: bool
    score: int | None = None
    pred: str | None = None  # "yes"/"no" for the qa criterion
    raw: str | None = None  # the judge's last reply
    error: str | None = None
    attempts: int = 0
    cached: bool = False


class ChatLike(Protocol):
    model: str

    def chat(self, messages: Sequence[dict[str, str]], **gen: Any) -> str: ...


# --------------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------------
_OBJ_RE = re.compile(r"\{[^{}]*\}", re.S)
_SCORE_KEY_RE = re.compile(r"""score["']?\s*(?:[:=]|is|of)?\s*["']?(\d+(?:\.\d+)?)""", re.I)  # "score: 4", "score 4"
_INT = r"(?<![\d.])([0-5])(?!\d|\.\d)"  # "3." ok; "4.8", "10" and "1.5" are not a 0-5 score
# Prose forms a judge uses for a score; a bare integer elsewhere is not one ("Question 1:", "2 people").
_PROSE_SCORE_RES = (
    re.compile(rf"{_INT}\s*(?:/|out of)\s*5\b", re.I),  # "4/5", "3 out of 5"
    re.compile(rf"\b(?:give|gave|giving|rate|rated|rating|grade|graded|say|deserves?|award|assign)\b"
               rf"[^.\d\n]{{0,30}}?{_INT}", re.I),  # "I would give this answer a 3", "I'd say 1"
)
_BARE_SCORE_RE = re.compile(rf"\W*{_INT}\W*")  # the whole reply is the number: "4", "**4**", "4."
# A small judge often copies the prompt's labelled lines ("Question 1: ...", "Model answer: ..."); their
# numbers and yes/no words are not verdicts, so those lines are dropped before the prose fallbacks.
_ECHO_RE = re.compile(r"^\s*(?:question(?:\s*\d)?|reference answer|model answer)[^:\n]*:.*$", re.I | re.M)
_VERDICT_RES = (
    re.compile(r"^\W*(yes|no)\b", re.I),  # the reply starts with the verdict
    re.compile(r"\b(?:pred|prediction|match(?:es)?|verdict)\b\W*(?:is\s+)?\W*(yes|no)\b", re.I),
)


def _dict_candidates(text: str) -> Iterable[dict]:
    """JSON (or Python-literal) objects found in ``text``, the whole text first."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = re.sub(r"^```\w*\s*|\s*```$", "", stripped)
    for chunk in [stripped] + _OBJ_RE.findall(text):
        for loader in (json.loads, ast.literal_eval):
            try:
                obj = loader(chunk)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(obj, dict):
                yield obj
                break


def _as_score(value: Any, lo: int, hi: int) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not re.fullmatch(r"\d+(?:\.0+)?", value):
            return None
        value = float(value)
    if isinstance(value, (int, float)) and float(value).is_integer() and lo <= value <= hi:
        return int(value)
    return None  # fractional (4.8) or out of range: not an answer to "a whole number 0-5"


def parse_score(text: str | None, lo: int = 0, hi: int = 5) -> int | None:
    """The integer score in a judge reply, or None when there is no valid one.

    Order: a JSON/Python-dict ``score`` field; ``score: N`` in prose; ``N/5`` / ``N out of 5``; a rating
    phrase ("I would give it a 3"); a reply that is only the number. Any integer anywhere is *not* a
    score: a 135M judge that echoes "Question 1: ..." would otherwise score 1. A fractional or
    out-of-range score is invalid (the caller asks again or records a failure).
    """
    if not text:
        return None
    for obj in _dict_candidates(text):
        for k, v in obj.items():
            if str(k).strip("'\" ").lower() == "score":
                return _as_score(v, lo, hi)
    prose = _ECHO_RE.sub("", text)
    m = _SCORE_KEY_RE.search(prose)
    if m:
        return _as_score(m.group(1), lo, hi)
    for pattern in _PROSE_SCORE_RES:
        m = pattern.search(prose)
        if m:
            return _as_score(m.group(1), lo, hi)
    m = _BARE_SCORE_RE.fullmatch(prose.strip())
    return _as_score(m.group(1), lo, hi) if m else None


def parse_qa_verdict(text: str | None) -> tuple[str | None, int | None]:
    """``("yes"|"no"|None, score|None)`` from a QA-judge reply (JSON first, then words)."""
    if not text:
        return None, None
    pred: str | None = None
    score: int | None = None
    for obj in _dict_candidates(text):
        low = {str(k).strip().lower(): v for k, v in obj.items()}
        p = low.get("pred", low.get("prediction", low.get("answer", low.get("match"))))
        if isinstance(p, bool):
            pred = "yes" if p else "no"
        elif isinstance(p, str) and p.strip().lower().strip(".!") in ("yes", "no"):
            pred = p.strip().lower().strip(".!")
        if "score" in low:
            score = _as_score(low["score"], 0, 5)
        break
    if pred is None:
        prose = _ECHO_RE.sub("", text).strip()
        m = next((m for m in (r.search(prose) for r in _VERDICT_RES) if m), None)
        pred = m.group(1).lower() if m else None  # a "no" inside a sentence ("there is no cup") is not one
    if score is None:
        score = parse_score(text)
    return pred, score


# --------------------------------------------------------------------------------------------------
# prompts and cache
# --------------------------------------------------------------------------------------------------
def build_messages(item: JudgeItem, criterion: str) -> list[dict[str, str]]:
    """The chat messages that ask the judge about ``item`` under ``criterion``."""
    if criterion not in PROMPTS:
        raise ValueError(f"unknown criterion {criterion!r}; choose from {list(PROMPTS)}")
    p = PROMPTS[criterion]
    if criterion == "consistency" and (item.question2 is None or item.prediction2 is None):
        raise ValueError(f"item {item.id!r}: consistency needs question2 and prediction2")
    system = "\n\n".join([_PREAMBLE, p["rubric"], p.get("format", _SCORE_FORMAT)])
    user = p["user"].format(
        question=item.question.strip(), answer=item.answer.strip(), prediction=item.prediction.strip(),
        question2=(item.question2 or "").strip(), prediction2=(item.prediction2 or "").strip(),
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def cache_key(messages: Sequence[dict[str, str]], model: str, candidate: Sequence[str]) -> str:
    """sha256 of (prompt messages, judge model, candidate answer(s))."""
    blob = json.dumps({"messages": list(messages), "model": model, "candidate": list(candidate)},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgmentCache:
    """Append-only JSONL cache ``{"key", "raw", ...}`` of successful judge replies; thread-safe.

    A torn last line (a run killed mid-write) is ignored on load.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, dict] = {}
        if self.path.exists():
            with self.path.open(encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        self._data[rec["key"]] = rec
                    except (ValueError, KeyError, TypeError):
                        continue

    def get(self, key: str) -> dict | None:
        with self._lock:
            return self._data.get(key)

    def put(self, key: str, record: dict) -> None:
        rec = {"key": key, **record}
        with self._lock:
            self._data[key] = rec
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                f.flush()

    def __len__(self) -> int:
        return len(self._data)


# --------------------------------------------------------------------------------------------------
# the judge
# --------------------------------------------------------------------------------------------------
class Judge:
    """Scores items with a chat client; bounded retries, cache, thread pool.

    ``client`` retries transport problems (timeouts, 5xx, non-JSON HTTP bodies) itself; the judge
    re-asks up to ``attempts`` times when the reply has no valid score. Any remaining problem becomes
    a failed :class:`Judgment` for that item; ``run`` never raises because of one item.
    """

    def __init__(self, client: ChatLike, cache: JudgmentCache | None = None, attempts: int = 3,
                 gen: dict[str, Any] | None = None):
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.client = client
        self.cache = cache
        self.attempts = attempts
        self.gen = {"temperature": 0.0, "max_tokens": 256, **(gen or {})}

    def _parse(self, criterion: str, raw: str) -> tuple[int | None, str | None]:
        if criterion == "qa":
            pred, score = parse_qa_verdict(raw)
            return (score if pred is not None else None), pred
        return parse_score(raw), None

    def judge_one(self, item: JudgeItem, criterion: str) -> Judgment:
        try:
            messages = build_messages(item, criterion)
        except ValueError as e:
            return Judgment(item.id, criterion, ok=False, error=str(e))
        candidate = [item.prediction] + ([item.prediction2 or ""] if criterion == "consistency" else [])
        key = cache_key(messages, self.client.model, candidate)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                score, pred = self._parse(criterion, hit.get("raw", ""))
                if score is not None:
                    return Judgment(item.id, criterion, ok=True, score=score, pred=pred, raw=hit.get("raw"),
                                    cached=True)
        raw: str | None = None
        error = "no attempt made"
        for attempt in range(1, self.attempts + 1):
            try:
                raw = self.client.chat(messages, **self.gen)
            except Exception as e:  # ChatError after the client's own retries, or anything unexpected
                error = f"{type(e).__name__}: {e}"
                log.warning("judge %s/%s attempt %d: %s", item.id, criterion, attempt, error)
                continue
            score, pred = self._parse(criterion, raw)
            if score is not None:
                if self.cache is not None:
                    self.cache.put(key, {"id": item.id, "criterion": criterion, "model": self.client.model,
                                         "raw": raw})
                return Judgment(item.id, criterion, ok=True, score=score, pred=pred, raw=raw, attempts=attempt)
            error = f"unparseable reply: {raw[:120]!r}"
            log.warning("judge %s/%s attempt %d: %s", item.id, criterion, attempt, error)
        return Judgment(item.id, criterion, ok=False, raw=raw, error=error, attempts=self.attempts)

    def run(self, items: Sequence[JudgeItem], criteria: Sequence[str], concurrency: int = 4,
            progress: bool = True) -> list[Judgment]:
        """Judge every (item, criterion); results in input order (items outer, criteria inner)."""
        for c in criteria:
            if c not in PROMPTS:
                raise ValueError(f"unknown criterion {c!r}; choose from {list(PROMPTS)}")
        jobs = [(i, c) for i in items for c in criteria
                if not (c == "consistency" and (i.question2 is None or i.prediction2 is None))]
        results: list[Judgment | None] = [None] * len(jobs)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs), desc="judge", unit="item")
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            futures = {pool.submit(self._safe_one, it, c): k for k, (it, c) in enumerate(jobs)}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        return [r for r in results if r is not None]

    def _safe_one(self, item: JudgeItem, criterion: str) -> Judgment:
        try:
            return self.judge_one(item, criterion)
        except Exception as e:  # a bug or an I/O error on one item must not end the run
            return Judgment(item.id, criterion, ok=False, error=f"{type(e).__name__}: {e}")


def summarize_judgments(judgments: Sequence[Judgment], criteria: Sequence[str], n_items: int,
                        n_boot: int = 1000, seed: int = 0) -> dict:
    """Per-criterion mean (0-5), x20 score with a bootstrap CI, and failure counts.

    Failed items are excluded from the mean and listed (``n_unparseable`` of them answered without a
    valid score, the others got no answer); ``n_skipped`` counts items the criterion does
    not apply to (consistency without a second question). For ``qa`` the summary also has
    ``accuracy`` (fraction of "yes" among judged items) with its CI.
    """
    out: dict[str, Any] = {}
    for c in criteria:
        js = [j for j in judgments if j.criterion == c]
        good = [j for j in js if j.ok]
        failed = [j.id for j in js if not j.ok]
        scores = [j.score for j in good]
        entry: dict[str, Any] = {
            "n_scored": len(good),
            "n_failed": len(failed),
            # failures where the judge answered without a valid score (the rest are request errors)
            "n_unparseable": sum(1 for j in js if not j.ok and (j.error or "").startswith("unparseable")),
            "n_skipped": n_items - len(js),
            "failed_ids": failed,
        }
        if scores:
            ci = mean_with_ci(scores, scale=20.0, n_boot=n_boot, seed=seed)
            entry.update(mean_0_5=ci["mean"] / 20.0, score_x20=ci["mean"], ci95_x20=[ci["ci_low"], ci["ci_high"]])
        else:
            entry.update(mean_0_5=None, score_x20=None, ci95_x20=None)
        if c == "qa":
            yes = [1.0 if j.pred == "yes" else 0.0 for j in good]
            if yes:
                acc = mean_with_ci(yes, scale=100.0, n_boot=n_boot, seed=seed)
                entry.update(accuracy=acc["mean"], ci95_accuracy=[acc["ci_low"], acc["ci_high"]])
            else:
                entry.update(accuracy=None, ci95_accuracy=None)
        out[c] = entry
    five = [out[c]["score_x20"] for c in criteria if c in DEFAULT_CRITERIA and out[c]["score_x20"] is not None]
    out["average_x20"] = sum(five) / len(five) if five else None
    return out


def judgment_to_dict(j: Judgment) -> dict:
    return asdict(j)
