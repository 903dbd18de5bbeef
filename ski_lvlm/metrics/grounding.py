"""Grounded caption metrics: does a caption name the clip's action, side and tempo, or could it fit any clip?

Token-overlap scores (BLEU, CIDEr) reward a generic sentence that shares words with every reference ("A
person waves their hand slowly" scores well on half the world). These metrics read a caption the way a
person checks it, with the phrases the dataset writes for each class (the synthetic world's
``class_phrases.json``, see :func:`ski_lvlm.synthetic.world.class_phrases`).

Matching rules (all on lower-case words, punctuation removed; a phrase matches a run of whole words):

* **Action.** A caption names a class when it contains one of the class's ``verbs`` ("waves", "waving",
  "wave"). When several classes share their verbs (wave left hand / wave right hand) the side is part of
  the class: the caption must also name that side ("left") and not the other one. A caption that
  names only the other side of a one-sided class ("drinks water with their left hand" when the class
  is done with the right hand) does not name it either. So "raises their left hand" is not "waves their
  left hand", "waves their hand" names no single class, and "A person moves." names none.
  :func:`actions_named` lists every class a caption names; the caption is right when that list is
  exactly the clip's class.
* **Side.** ``left`` / ``right`` / ``both`` from the side words anywhere in the caption; left and right
  together are ``mixed`` (wrong for every clip). "both" is right for bilateral classes (clap).
* **Tempo.** The tempo words (``slowly``, ``at a steady pace``, ``quickly``, ...) after removing the
  ``tempo_ignore`` phrases (motion descriptions that use a tempo word: "moving the hand quickly from side
  to side"); two tempos are ``mixed``.

Corpus scores (:func:`caption_grounding`): action accuracy (over captions whose clip has a known class),
side accuracy among captions that name a side for clips whose class has a side, tempo accuracy among
captions that name a tempo and as a share of all captions, the number of distinct captions and the
share of the most frequent one. Closed QA (:func:`closed_qa_accuracy`): accuracy per question type.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = ["Phrases", "load_phrases", "find_phrases", "words", "actions_named", "action_of", "side_of", "tempo_of",
           "scenes_named", "answer_yes_no", "caption_diversity", "reference_truth", "caption_grounding",
           "question_type", "closed_qa_accuracy", "AMBIGUOUS", "PHRASES_FILE"]

PHRASES_FILE = "class_phrases.json"
AMBIGUOUS = "(ambiguous)"
_OTHER_SIDE = {"left": "right", "right": "left"}
_DETERMINERS = {"a", "an", "the", "their", "his", "her", "its"}


@dataclass(frozen=True)
class Phrases:
    """A dataset's phrase lists (the parsed ``class_phrases.json``)."""

    classes: dict[str, dict[str, Any]]
    """class name -> {"verbs": [...], "side": "left" | "right" | "both" | None, "part": str}."""
    sides: dict[str, list[str]]
    tempo: dict[str, list[str]]
    tempo_ignore: tuple[str, ...] = ()
    scenes: tuple[str, ...] = ()
    questions: dict[str, str] | None = None
    """question text -> type (action, side, part, tempo, anyone_else, scene)."""
    path: str | None = None

    def sided(self, name: str) -> bool:
        """Whether the side is needed to tell ``name`` from another class with the same verbs."""
        c = self.classes[name]
        return c.get("side") in ("left", "right") and any(
            o != name and set(v["verbs"]) & set(c["verbs"]) for o, v in self.classes.items())


def load_phrases(path: str | Path) -> Phrases:
    """Read and check a ``class_phrases.json``; ``ValueError`` names the file and what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read class phrases: {e}") from None
    classes = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(classes, dict) or not classes:
        raise ValueError(f"{path}: expected {{\"classes\": {{name: {{\"verbs\": [...], \"side\": ...}}}}, ...}}")
    bad = [n for n, c in classes.items() if not isinstance(c, dict) or not c.get("verbs")]
    if bad:
        raise ValueError(f"{path}: classes without verbs: {bad[:5]}")
    return Phrases(classes=classes, sides=data.get("sides") or {"left": ["left"], "right": ["right"], "both": ["both"]},
                   tempo=data.get("tempo") or {}, tempo_ignore=tuple(data.get("tempo_ignore") or ()),
                   scenes=tuple(data.get("scenes") or ()), questions=data.get("questions"), path=str(path))


def find_phrases(eval_set: str | Path) -> Path | None:
    """``class_phrases.json`` next to an eval set (the synthetic world writes it), or None."""
    p = Path(eval_set).parent / PHRASES_FILE
    return p if p.is_file() else None


# --------------------------------------------------------------------------------------------------
# one caption
# --------------------------------------------------------------------------------------------------
def words(text: str | None) -> list[str]:
    """Lower-case words without punctuation: ``"A person's left-hand wave."`` -> a, person, s, left, hand, wave."""
    return re.findall(r"[a-z0-9]+", (text or "").lower())


def _padded(text: str | None) -> str:
    return " " + " ".join(words(text)) + " "


def _has(padded: str, phrase: str) -> bool:
    return _padded(phrase) in padded


def side_of(caption: str | None, phrases: Phrases) -> str | None:
    """``left`` / ``right`` / ``both`` / ``mixed`` (left and right) or None (no side named)."""
    p = _padded(caption)
    named = {s for s, ws in phrases.sides.items() if any(_has(p, w) for w in ws)}
    lr = named & {"left", "right"}
    if len(lr) == 2:
        return "mixed"
    if lr:
        return lr.pop()
    return "both" if "both" in named else None


def actions_named(caption: str | None, phrases: Phrases) -> list[str]:
    """Every class the caption names (rules in the module docstring), in the phrase file's order."""
    p = _padded(caption)
    side = side_of(caption, phrases)
    out = []
    for name, c in phrases.classes.items():
        if not any(_has(p, v) for v in c["verbs"]):
            continue
        if phrases.sided(name) and side != c["side"]:
            continue  # wave left hand / wave right hand: the side tells them apart
        if c.get("side") in _OTHER_SIDE and side == _OTHER_SIDE[c["side"]]:
            continue  # the caption names only the other side: not this class (the side is part of it)
        out.append(name)
    return out


def action_of(caption: str | None, phrases: Phrases) -> str | None:
    """The one class a caption names; None when it names none; :data:`AMBIGUOUS` when it names several,
    or a class's verb without a side that decides ("waves their hand", "waves their left and right hand")."""
    named = actions_named(caption, phrases)
    if len(named) == 1:
        return named[0]
    if named:
        return AMBIGUOUS
    p = _padded(caption)
    verbs_seen = any(_has(p, v) for c in phrases.classes.values() for v in c["verbs"])
    return AMBIGUOUS if verbs_seen and side_of(caption, phrases) in (None, "mixed") else None


def tempo_of(caption: str | None, phrases: Phrases) -> str | None:
    """``slow`` / ``normal`` / ``fast`` (the keys of the tempo lists), ``mixed``, or None (no tempo named)."""
    p = _padded(caption)
    for ignore in phrases.tempo_ignore:
        p = p.replace(_padded(ignore), " ")
    named = {t for t, ws in phrases.tempo.items() if any(_has(p, w) for w in ws)}
    if len(named) > 1:
        return "mixed"
    return named.pop() if named else None


def scenes_named(text: str | None, phrases: Phrases) -> set[str]:
    p = _padded(text)
    return {s for s in phrases.scenes if _has(p, s)}


def answer_yes_no(text: str | None) -> str | None:
    """``yes`` / ``no`` from an answer's first word, or from "alone" / "another person"; None when unclear."""
    ws = words(text)
    if not ws:
        return None
    if ws[0] in ("yes", "no"):
        return ws[0]
    p = _padded(text)
    no, yes = any(_has(p, w) for w in ("alone", "no one", "nobody")), any(
        _has(p, w) for w in ("another person", "someone else", "other person"))
    return "no" if no and not yes else "yes" if yes and not no else None


# --------------------------------------------------------------------------------------------------
# corpus scores
# --------------------------------------------------------------------------------------------------
def _share(num: int, den: int) -> float | None:
    return num / den if den else None


def caption_diversity(captions: Sequence[str | None]) -> dict[str, Any]:
    """Distinct captions and the most frequent one, compared as lower-case words (punctuation ignored)."""
    keys = Counter(" ".join(words(c)) for c in captions)
    if not captions:
        return {"n": 0, "distinct_captions": 0, "top_caption": None, "top_caption_share": None}
    top, count = keys.most_common(1)[0]
    example = next(c for c in captions if " ".join(words(c)) == top)
    return {"n": len(captions), "distinct_captions": len(keys), "top_caption": example,
            "top_caption_share": count / len(captions)}


def out_of_vocabulary(captions: Sequence[str | None], references: Iterable[str]) -> dict[str, Any]:
    """Share of generated words that no reference caption uses (a misspelt or invented word is a defect).

    Words as :func:`words` splits them; the vocabulary is every word of every reference of the eval set.
    """
    vocabulary = {w for r in references for w in words(r)}
    generated = [w for c in captions for w in words(c)]
    unknown = Counter(w for w in generated if w not in vocabulary)
    return {"oov_word_share": _share(sum(unknown.values()), len(generated)),
            "oov_words": [w for w, _ in unknown.most_common(10)]}


def reference_truth(references: Iterable[str], phrases: Phrases) -> tuple[str | None, str | None]:
    """(class, tempo) that the references agree on; None where they name none or disagree."""
    acts = {action_of(r, phrases) for r in references} - {None}
    tempos = {tempo_of(r, phrases) for r in references} - {None}
    act = acts.pop() if len(acts) == 1 else None
    tempo = tempos.pop() if len(tempos) == 1 else None
    return (None if act == AMBIGUOUS else act), (None if tempo == "mixed" else tempo)


def caption_grounding(records: Sequence[dict[str, Any]], phrases: Phrases) -> dict[str, Any]:
    """Action / side / tempo accuracy, distinct captions and the top caption's share.

    Args:
        records: ``{"caption": str, "action": class or None, "tempo": tempo or None}`` per clip (the
            truth; None = unknown, the clip then does not count for that score).

    Returns:
        fractions in [0, 1] (None when no caption counts), with the counts they are computed over.
    """
    out: dict[str, Any] = caption_diversity([r["caption"] for r in records])
    act_n = act_ok = none_n = amb_n = side_n = side_ok = tempo_known = tempo_named = tempo_ok = 0
    per_class: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        cap, truth = r["caption"], r.get("action")
        if truth in phrases.classes:
            named = action_of(cap, phrases)
            ok = named == truth  # exactly the clip's class and no other
            act_n += 1
            act_ok += ok
            none_n += named is None
            amb_n += named == AMBIGUOUS
            per_class[truth][0] += 1
            per_class[truth][1] += ok
            true_side, side = phrases.classes[truth].get("side"), side_of(cap, phrases)
            if true_side and side:
                side_n += 1
                side_ok += side == true_side
        if r.get("tempo"):
            tempo_known += 1
            t = tempo_of(cap, phrases)
            tempo_named += t is not None
            tempo_ok += t == r["tempo"]
    out.update({
        "action_accuracy": _share(act_ok, act_n), "n_action": act_n,
        "no_action_share": _share(none_n, act_n), "ambiguous_share": _share(amb_n, act_n),
        "side_accuracy": _share(side_ok, side_n), "n_side": side_n,
        "tempo_accuracy": _share(tempo_ok, tempo_named), "n_tempo_named": tempo_named,
        "tempo_accuracy_all": _share(tempo_ok, tempo_known), "n_tempo": tempo_known,
        "per_class": {c: {"n": n, "action_accuracy": k / n} for c, (n, k) in sorted(per_class.items())},
    })
    return out


def _qa_correct(qtype: str, prediction: str | None, reference: str, phrases: Phrases) -> bool | None:
    """Whether a closed answer is right; None when the reference itself cannot be read."""
    if qtype == "action":
        want = action_of(reference, phrases)
        return None if want in (None, AMBIGUOUS) else action_of(prediction, phrases) == want
    if qtype == "side":
        want = side_of(reference, phrases)
        return None if want in (None, "mixed") else side_of(prediction, phrases) == want
    if qtype == "tempo":
        want = tempo_of(reference, phrases)
        return None if want in (None, "mixed") else tempo_of(prediction, phrases) == want
    if qtype == "anyone_else":
        want = answer_yes_no(reference)
        return None if want is None else answer_yes_no(prediction) == want
    if qtype == "scene":
        want = scenes_named(reference, phrases)
        return None if len(want) != 1 else scenes_named(prediction, phrases) == want
    if qtype == "part":  # "the left hand" vs "the left arm": the words must match, articles aside
        strip = lambda s: [w for w in words(s) if w not in _DETERMINERS]  # noqa: E731
        return strip(prediction) == strip(reference)
    return None


def question_type(question: str, phrases: Phrases) -> str | None:
    """The type of a closed question (``phrases.questions``; case and punctuation aside), or None."""
    types = {" ".join(words(q)): t for q, t in (phrases.questions or {}).items()}
    return types.get(" ".join(words(question)))


def closed_qa_accuracy(records: Sequence[dict[str, Any]], phrases: Phrases) -> dict[str, Any]:
    """Accuracy per question type of ``{"question", "prediction", "answer"}`` records.

    A record may carry its ``token_f1``; the per-type mean over the same scored records is then reported
    next to the accuracy.

    The type of a question comes from ``phrases.questions`` (exact text, case and punctuation aside);
    other questions are counted in ``n_unscored``. Types: ``action`` (the answer names the reference's
    class), ``side`` (which hand/leg), ``tempo`` (how fast), ``anyone_else`` (yes/no), ``scene`` (where:
    exactly the reference's room), ``part`` (body part: the same words, articles aside).
    """
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    f1: dict[str, list[float]] = defaultdict(list)
    unscored = 0
    for r in records:
        qtype = question_type(r["question"], phrases)
        ok = _qa_correct(qtype, r.get("prediction"), r["answer"], phrases) if qtype else None
        if ok is None:
            unscored += 1
            continue
        per[qtype][0] += 1
        per[qtype][1] += ok
        if "token_f1" in r:
            f1[qtype].append(r["token_f1"])
    n, k = sum(v[0] for v in per.values()), sum(v[1] for v in per.values())
    per_type = {t: {"n": a, "accuracy": b / a, **({"token_f1": sum(f1[t]) / a} if len(f1[t]) == a else {})}
                for t, (a, b) in sorted(per.items())}
    return {"per_type": per_type, "n": n, "accuracy": _share(k, n), "n_unscored": unscored}
