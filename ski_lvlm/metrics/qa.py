"""Question-answering scores: multiple-choice accuracy and judge-scored open-ended QA.

Multiple choice: a generative model answers in free text ("The answer is (B) because ...", "b.",
"opening the fridge"), so the letter has to be recovered first. LLAVIDAL asked another LLM to do it
(``original-system.md`` §7.3); :func:`parse_choice` does it with rules, deterministically: explicit
answer phrases, then bracketed/delimited letters, then a bare letter, then the option text itself.
An answer it cannot map to exactly one option is counted as wrong and listed, never guessed.

Open-ended QA, automatic: :func:`qa_token_f1` (SQuAD's normalised exact match and token F1), a string
score that needs no judge. Open-ended QA (Video-ChatGPT zero-shot QA style): the judge says yes/no (does the answer match the
reference?) plus a 0-5 score; accuracy = fraction of "yes", score = mean. See :func:`score_open_qa`.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

from ski_lvlm.metrics.judge import Judge, JudgeItem, summarize_judgments
from ski_lvlm.metrics.stats import mean_with_ci

__all__ = ["normalize_options", "parse_choice", "mcq_accuracy", "score_open_qa", "qa_token_f1"]

_LETTERS = string.ascii_uppercase


def normalize_options(options: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    """``{"A": text, ...}`` from a dict (letters any case, "(A)"/"A." accepted) or a list of texts."""
    if isinstance(options, Mapping):
        out = {}
        for k, v in options.items():
            letter = str(k).strip().strip("().:[] ").upper()
            if len(letter) != 1 or letter not in _LETTERS:
                raise ValueError(f"option key {k!r} is not a single letter")
            out[letter] = str(v)
        return out
    if len(options) > len(_LETTERS):
        raise ValueError(f"too many options ({len(options)})")
    return {_LETTERS[i]: str(t) for i, t in enumerate(options)}


def _norm_text(s: str) -> str:
    s = s.lower()
    s = re.sub(r"[^\w\s]", " ", s)
    return " ".join(s.split())


def parse_choice(text: str | None, options: Mapping[str, str] | Sequence[str]) -> str | None:
    """The option letter a free-text answer picks, or None when it picks none or several.

    Recognised (case-insensitive): "B", "(B)", "[B]", "B.", "B)", "B:", "B -", "Option B", "Answer: B",
    "The answer is (B)", "The correct answer is B.", "I choose b", an answer that starts with a letter
    followed by a delimiter ("B) open the door"), and the text of exactly one option ("open the door").
    The article "A" in "A person opens ..." is not read as option A.
    """
    if not text or not text.strip():
        return None
    opts = normalize_options(options)
    valid = "".join(sorted(opts))
    t = text.strip()
    L = f"[{valid}{valid.lower()}]"

    def one(found: Iterable[str]) -> str | None:
        letters = {f.upper() for f in found}
        return letters.pop() if len(letters) == 1 else None

    # 1. explicit answer phrases: "answer is B", "answer: (B)", "option B", "choice: b", "I choose B"
    phrase = []
    for m in re.finditer(
        rf"(?:answer(?:\s+is)?|option|choice|choose|pick|select(?:ed)?|letter)\s*(?:is\s*)?[:\-]?\s*([\(\[]?)({L})(?![\w'])",
        t, flags=re.I,
    ):
        # "the answer is a cup": a lower-case "a" followed by a word is the article, not option A
        if m.group(2) == "a" and not m.group(1) and re.match(r"\s+[A-Za-z]", t[m.end(2):]):
            continue
        phrase.append(m.group(2))
    if phrase:
        return one(phrase)
    # 2. the whole answer is a letter, maybe decorated: "B", "(b)", "B.", "[C]"
    m = re.fullmatch(rf"[\s\(\[\"']*({L})[\s\)\]\.\:\"']*", t)
    if m:
        return m.group(1).upper()
    br = re.findall(rf"[\(\[]({L})[\)\]]", t)
    if len({b.upper() for b in br}) > 1:  # "(A) or (B)": several bracketed choices, no decision
        return None
    # 3. starts with a letter and a delimiter: "B) open the door", "(B) ...", "b. open", "C: ..."
    m = re.match(rf"\s*(?:\(({L})\)|\[({L})\]|({L})\s*[\)\.\:](?!\w)|({L})\s+-\s)", t)
    if m:
        return next(g for g in m.groups() if g).upper()
    # 4. bracketed letters anywhere: "I think (B) is right"
    if br:
        return one(br)
    # 5. option text: exactly one option (the longest one, when one contains another) appears
    norm = f" {_norm_text(t)} "
    hits = [k for k, v in opts.items() if _norm_text(v) and f" {_norm_text(v)} " in norm]
    if hits:
        best = max(hits, key=lambda k: len(_norm_text(opts[k])))
        longest = f" {_norm_text(opts[best])} "
        # the other hits must be part of the longest one ("open the door" in "open the door and leave")
        if all(k == best or f" {_norm_text(opts[k])} " in longest for k in hits) and \
                sum(len(_norm_text(opts[k])) == len(longest) - 2 for k in hits) == 1:
            return best
    return None


def _truth_letter(answer: str, opts: dict[str, str]) -> str | None:
    a = str(answer).strip()
    letter = a.strip("().:[] ").upper()
    if len(letter) == 1 and letter in opts:
        return letter
    for k, v in opts.items():
        if _norm_text(v) == _norm_text(a):
            return k
    return None


def mcq_accuracy(records: Iterable[Mapping[str, Any]], n_boot: int = 1000, seed: int = 0) -> dict:
    """Accuracy of multiple-choice answers; unparseable answers count as wrong and are listed.

    Each record has ``id``, ``prediction`` (free text), ``options`` (dict letter->text or list) and
    ``answer`` (the correct letter or the correct option's text).
    Returns ``{"accuracy" (0-100), "ci95": [lo, hi], "n", "n_correct", "n_unparsed", "unparsed":
    [{"id", "prediction"}], "per_item": {id: {"parsed", "truth", "correct"}}}``.
    """
    per_item: dict[str, dict] = {}
    unparsed: list[dict] = []
    correct: list[float] = []
    for i, r in enumerate(records):
        rid = str(r.get("id", i))
        opts = normalize_options(r["options"])
        truth = _truth_letter(r["answer"], opts)
        if truth is None:
            raise ValueError(f"item {rid!r}: answer {r['answer']!r} is neither an option letter nor an option text")
        parsed = parse_choice(r.get("prediction"), opts)
        ok = parsed == truth
        if parsed is None:
            unparsed.append({"id": rid, "prediction": r.get("prediction")})
        per_item[rid] = {"parsed": parsed, "truth": truth, "correct": ok}
        correct.append(1.0 if ok else 0.0)
    ci = mean_with_ci(correct, scale=100.0, n_boot=n_boot, seed=seed)
    return {
        "accuracy": ci["mean"] if correct else None,
        "ci95": [ci["ci_low"], ci["ci_high"]] if correct else None,
        "n": len(correct),
        "n_correct": int(sum(correct)),
        "n_unparsed": len(unparsed),
        "unparsed": unparsed,
        "per_item": per_item,
    }


def score_open_qa(items: Sequence[JudgeItem], judge: Judge, concurrency: int = 4, n_boot: int = 1000,
                  seed: int = 0, progress: bool = False) -> dict:
    """Video-ChatGPT-style open-ended QA: the judge's yes/no and 0-5 score per item.

    Returns the ``qa`` summary of :func:`summarize_judgments` (``accuracy`` = % "yes" among judged
    items, ``mean_0_5`` = mean score, failures excluded and counted) plus the judgments.
    """
    judgments = judge.run(items, ["qa"], concurrency=concurrency, progress=progress)
    summary = summarize_judgments(judgments, ["qa"], n_items=len(items), n_boot=n_boot, seed=seed)["qa"]
    summary["judgments"] = judgments
    return summary


def _norm_answer(s: str) -> list[str]:
    s = s.lower()
    s = "".join(ch if ch not in string.punctuation else " " for ch in s)
    return [w for w in s.split() if w not in ("a", "an", "the")]


def qa_token_f1(prediction: str, answer: str) -> tuple[float, float]:
    """(normalised exact match, token F1) SQuAD-style: lower-case, no punctuation/articles.

    A cheap, judge-free score of open-ended answers; it rewards shared words, so it is reported next to
    (never instead of) the LLM judge.
    """
    p, a = _norm_answer(prediction or ""), _norm_answer(answer)
    em = float(p == a)
    common = Counter(p) & Counter(a)
    same = sum(common.values())
    if not p or not a or same == 0:
        return em, float(p == a)
    prec, rec = same / len(p), same / len(a)
    return em, 2 * prec * rec / (prec + rec)
