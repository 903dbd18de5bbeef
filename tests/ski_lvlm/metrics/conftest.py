"""A generated caption corpus for the metric tests (no caption data ships with the repo).

Captions are Charades-like sentences with the things that make tokenisation and scoring differ:
capitalisation, commas, periods, quotes, brackets, contractions and possessives, hyphenated and slashed
words, numbers, abbreviations, ellipses and dashes, several references per item, an empty candidate and
one-word candidates.
"""

from __future__ import annotations

import random

import pytest

SUBJECTS = ["a person", "the man", "a woman", "someone", "the person", "a young girl", "the boy", "he", "she",
            "the person's friend", "Mr. Smith", "Dr. Jones", "the man (in red)", "a middle-aged woman"]
VERBS = ["opens", "closes", "holds", "picks up", "puts down", "is holding", "is eating", "drinks from",
         "takes", "throws", "looks at", "walks to", "sits on", "is cleaning", "doesn't touch", "can't find",
         "grabs", "washes", "is tidying", "fixes", "plays with", "won't open"]
OBJECTS = ["the door", "a cup", "a glass of water", "the laptop", "a book", "the sandwich", "a broom",
           "the t-shirt", "his/her phone", "a pair of shoes", "the 2 pillows", "3.5 apples", "a towel",
           "the light-switch", "the refrigerator", "a bag", "the window", "their medicine", "a box",
           "the dog's bowl", "some clothes", "the vacuum cleaner", "a cup/glass", "the TV"]
PLACES = ["in the kitchen", "in the living room", "at the table", "on the sofa", "near the window",
          "in the bedroom", "at 10:30", "in the hallway", "by the door", "on the 2nd floor", "at home"]
ADVERBS = ["quickly", "slowly", "then", "carefully", "again", "twice", "finally", "afterwards"]
TAILS = [".", ".", ".", "", "!", "?", "...", " .", ". ", "!!"]


def _clause(rng: random.Random) -> str:
    parts = [rng.choice(SUBJECTS)]
    if rng.random() < 0.3:
        parts.append(rng.choice(ADVERBS))
    parts += [rng.choice(VERBS), rng.choice(OBJECTS)]
    if rng.random() < 0.6:
        parts.append(rng.choice(PLACES))
    return " ".join(parts)


def _decorate(rng: random.Random, text: str) -> str:
    r = rng.random()
    if r < 0.08:
        text = f'"{text}"'
    elif r < 0.14:
        text = text.replace(" the ", " 'the ", 1) + "'" if " the " in text else text
    elif r < 0.20:
        words = text.split()
        i = rng.randrange(len(words))
        words[i] = f"({words[i]})"
        text = " ".join(words)
    elif r < 0.24:
        text = text.replace(" ", " -- ", 1)
    elif r < 0.28:
        text = text.replace(" ", " - ", 1)
    return text


def make_caption(rng: random.Random) -> str:
    n = rng.choice([1, 1, 1, 2, 2, 3])
    sents = []
    for _ in range(n):
        s = _clause(rng)
        if rng.random() < 0.4:
            s += rng.choice([", and ", ", then ", "; ", " and ", ": ", " while "]) + _clause(rng)
        s = _decorate(rng, s)
        if rng.random() < 0.8:
            s = s[0].upper() + s[1:]
        if rng.random() < 0.05:
            s = s.upper()
        sents.append(s + rng.choice(TAILS))
    return " ".join(sents)


def make_corpus(n: int, seed: int = 0, n_refs: tuple[int, int] = (2, 6)) -> tuple[dict, dict]:
    """``(candidates {id: [caption]}, references {id: [caption, ...]})`` with edge cases included."""
    rng = random.Random(seed)
    cands: dict[str, list[str]] = {}
    refs: dict[str, list[str]] = {}
    for i in range(n):
        key = f"vid{i:05d}"
        refs[key] = [make_caption(rng) for _ in range(rng.randint(*n_refs))]
        r = rng.random()
        if r < 0.3:  # a near-copy of a reference scores high, exercising clipping and long matches
            cands[key] = [refs[key][0].replace("the", "a", 1)]
        else:
            cands[key] = [make_caption(rng)]
    keys = list(cands)
    cands[keys[0]] = [""]  # empty candidate
    cands[keys[1]] = ["Door."]  # one-word candidates
    cands[keys[2]] = ["person"]
    cands[keys[3]] = [refs[keys[3]][1]]  # an exact reference
    refs[keys[4]] = ["Kitchen."] + refs[keys[4]]  # one-word reference
    return cands, refs


@pytest.fixture(scope="session")
def corpus600() -> tuple[dict, dict]:
    return make_corpus(600, seed=123)
