"""PTB-style caption tokenisation, as coco-caption does it, without a JVM.

coco-caption (``pycocoevalcap``) runs Stanford CoreNLP 3.4.1's ``PTBTokenizer -preserveLines
-lowerCase`` on every caption and then drops the tokens in ``COCO_PUNCTUATION``. Caption metrics are
sensitive to tokenisation (``person's`` is two tokens, ``person 's``), so scores are only comparable
with published coco-caption numbers when the tokens match. :func:`ptb_tokenize` reproduces the Java
tokenizer's output on ordinary English captions (contractions, possessives, quotes, brackets,
abbreviations, numbers, hyphenated and slashed words, ellipses, dashes); the tests compare it with the
Java tokenizer on a generated corpus. Quirks kept on purpose because coco keeps them:

* brackets become ``-lrb-``/``-rrb-``/``-lsb-``/``-rsb-``/``-lcb-``/``-rcb-`` and are *not* removed
  (coco's punctuation list has them upper-case, but the tokenizer has already lower-cased them);
* runs of ``!``/``?`` longer than one (``!!!``, ``?!``) survive; a single ``!`` or ``?`` is removed;
* a period between two letters with no space (``door.Then``) does not split the word.

:func:`ptb_tokenize_java` runs the real Java tokenizer (the jar shipped in the pycocoevalcap wheel)
when exact coco behaviour on unusual text matters more than speed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

__all__ = [
    "COCO_PUNCTUATION",
    "ptb_tokenize",
    "ptb_tokenize_corpus",
    "ptb_tokenize_java",
    "find_pycocoevalcap_file",
]

# Tokens coco-caption removes after PTB tokenisation (pycocoevalcap/tokenizer/ptbtokenizer.py).
COCO_PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}

# Words whose trailing period belongs to the word (Stanford's abbreviation lists, the common part).
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr jr sr st mt prof gen gov sen rep rev hon messrs sgt capt col lt cmdr adm
    vs etc inc co corp ltd bros assn dept univ est ft
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thurs fri
    ave blvd rd""".split()
)
# Abbreviations that keep their period only before a number ("No. 5", "Fig. 3").
_NUMBER_ABBREVIATIONS = frozenset(["no", "nos", "fig", "figs"])
# After a single-letter initial ("item B."), these capitalised words start a new sentence, so the
# period is split off; before any other word (or lower-case) the initial keeps its period.
_SENTENCE_STARTERS = frozenset(
    """A After An As At But He Her Here If In It Last Many Now Once One Other Our She Since So Some Such
    That The Their Then There These They This We What When While Yet You""".split()
)

# Special whole words the Stanford tokenizer splits in two.
_SPLIT_WORDS = {
    "cannot": ("can", "not"),
    "gonna": ("gon", "na"),
    "gotta": ("got", "ta"),
    "wanna": ("wan", "na"),
    "gimme": ("gim", "me"),
    "lemme": ("lem", "me"),
    "'tis": ("'t", "is"),
    "'twas": ("'t", "was"),
}
_CLITICS = ("n't", "'s", "'m", "'d", "'re", "'ve", "'ll")
_LEADING_APOSTROPHE_WORDS = frozenset(["'cause", "'em", "'til", "'n'"])

_L = r"[^\W_]"  # a letter or digit (any script)
_TOKEN_RE = re.compile(
    r"""
    (?P<sgml></?[A-Za-z][^<>\s]*>)
  | (?P<url>(?:https?://|www\.)\S+?(?=[.,;:!?)\]}"']*(?:\s|$))|[\w.+-]+@[\w-]+(?:\.[\w-]+)+)
  | (?P<frac>\d+\ \d+/\d+)
  | (?P<amp>&amp;)
  | (?P<emoticon>[:;]-?[()](?![^\W_]))
  | (?P<word>'\d\ds|@?'?"""
    + _L
    + r"""(?:"""
    + _L
    + r"""|[-.&/'](?="""
    + _L
    + r""")|(?<=\d)[,:](?=\d))*(?:'(?![^\W_]))?)
  | (?P<punct>\.{3,}|--+|[?!]{2,}|\S)
    """,
    re.VERBOSE,
)

_UNICODE_MAP = str.maketrans(
    {
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
        "\u2018": "`", "\u2019": "'", "\u201a": "'",
        "\u2014": " -- ", "\u2013": " -- ", "\u2026": "...", "\u00a0": " ",
    }
)


def _split_word(tok: str) -> list[str]:
    """Split one word-like match into PTB tokens (clitics, trailing period, leading quote)."""
    low = tok.lower()
    if low in _SPLIT_WORDS:
        a, b = _SPLIT_WORDS[low]
        return [tok[: len(a)], tok[len(a):]]
    if low in _LEADING_APOSTROPHE_WORDS or re.fullmatch(r"'\d\ds", low):
        return [tok]
    out_front: list[str] = []
    if tok.startswith("'"):
        out_front, tok = ["`"], tok[1:]
        low = tok.lower()
    out_back: list[str] = []
    if tok.endswith("'") and len(tok) > 1:
        # "kids'" -> kids ' ; "y'all" is handled by the clitic rule below
        out_back.insert(0, "'")
        tok = tok[:-1]
        low = tok.lower()
    if "/" in tok and "'" in tok:  # man's/woman's -> man 's / woman 's
        parts: list[str] = []
        for i, piece in enumerate(tok.split("/")):
            if i:
                parts.append("/")
            parts.extend(_split_word(piece) if piece else [])
        return out_front + parts + out_back
    if re.fullmatch(r"[A-Za-z]'[A-Za-z]{2,}", tok) and low.startswith("y'"):
        return out_front + [tok[:2], tok[2:]] + out_back
    if low == "rock'n'roll":
        return out_front + [tok[:4], tok[4:7], tok[7:]] + out_back
    tail: list[str] = []
    changed = True
    while changed:
        changed = False
        for c in _CLITICS:
            if low.endswith(c) and len(low) > len(c) and _L_RE.match(low[-len(c) - 1]):
                tail.insert(0, tok[-len(c):])
                tok, low = tok[: -len(c)], low[: -len(c)]
                changed = True
                break
    return out_front + [tok] + tail + out_back


_L_RE = re.compile(_L)


def _keeps_period(word: str, after: str) -> bool:
    """Does ``word.`` keep its period as PTB does for abbreviations (``dr.``, ``u.s.``, ``J.``)?

    ``after`` is the text after the period. coco joins all captions with newlines before tokenising,
    so at the end of a caption the Java tokenizer looks at the *next* caption's first word; we assume
    it starts a sentence ("A ...", "The ..."), which is what captions almost always do.
    """
    if "." in word and re.fullmatch(r"(?:[^\W\d_]{1,2}\.)+[^\W\d_]{1,2}", word):
        return True  # u.s, e.g, p.m, ph.d
    low = word.lower()
    if low in _NUMBER_ABBREVIATIONS:
        return re.match(r"\s+\d", after) is not None
    if len(word) == 1 and word.isalpha():  # an initial: "J. Smith", but "plan B. The man ..."
        m = re.match(r"\s*([^\W\d_]*)", after)
        nxt = m.group(1) if m else ""
        at_end = not after.strip()
        return not at_end and nxt not in _SENTENCE_STARTERS
    return low in _ABBREVIATIONS


def _ptb_tokens(text: str) -> list[str]:
    """PTB tokens of one line, original case, before lower-casing and punctuation removal."""
    text = text.translate(_UNICODE_MAP)
    toks: list[str] = []
    pos = 0
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch.isspace():
            pos += 1
            continue
        m = _TOKEN_RE.match(text, pos)
        assert m is not None  # the punct branch matches any non-space character
        kind, tok = m.lastgroup, m.group()
        end = m.end()
        if kind == "word":
            if "/" in tok and "." in tok:  # "coffee/tea.The": a slashed word ends at the period
                tok = tok[: tok.index(".")]
                end = pos + len(tok)
            m_time = re.fullmatch(r"(\d+:\d+)([^\W\d_]+)", tok)
            if m_time:  # "1:30pm" -> 1:30 pm
                tok = m_time.group(1)
                end = pos + len(tok)
            if end < n and text[end] == "." and _keeps_period(tok, text[end + 1:]):
                tok += "."
                end += 1
            toks.extend(_split_word(tok))
        elif kind == "frac":
            toks.append(tok.replace(" ", "\u00a0"))
        elif kind == "emoticon":
            toks.append(tok.replace("(", "-LRB-").replace(")", "-RRB-"))
        elif kind == "amp":
            toks.append("&")
        elif kind == "punct":
            if tok == '"':
                # opening quote at the start or after a space/bracket, closing quote otherwise
                prev = text[pos - 1] if pos else " "
                toks.append("``" if prev.isspace() or prev in "([{" else "''")
            elif tok == "`":
                toks.append("`")
            elif tok == "'":
                prev = text[pos - 1] if pos else " "
                toks.append("`" if prev.isspace() or prev in "([{" else "'")
            elif len(tok) >= 3 and set(tok) == {"."}:
                toks.append("...")
            elif len(tok) >= 2 and set(tok) == {"-"}:
                toks.append("--")
            else:
                toks.append(_BRACKETS.get(tok, tok))
        else:
            toks.append(tok)
        pos = end
    return toks


def ptb_tokenize(text: str) -> str:
    """Tokenise one caption the way coco-caption does: PTB tokens, lower-cased, punctuation dropped.

    Returns the tokens joined by single spaces (the form every coco scorer takes).
    """
    toks = _ptb_tokens(text.replace("\n", " ").replace("\r", " "))
    return " ".join(t for t in (t.lower() for t in toks) if t not in COCO_PUNCTUATION)


def ptb_tokenize_corpus(captions: Mapping[object, Sequence[str]]) -> dict[object, list[str]]:
    """``{id: [caption, ...]}`` -> ``{id: [tokenised caption, ...]}`` with :func:`ptb_tokenize`."""
    return {k: [ptb_tokenize(c) for c in v] for k, v in captions.items()}


def find_pycocoevalcap_file(relative: str) -> Path | None:
    """Path of a file shipped in the pycocoevalcap wheel (e.g. ``meteor/meteor-1.5.jar``), or None."""
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None:
        return None
    for root in spec.submodule_search_locations or []:
        p = Path(root) / relative
        if p.is_file():
            return p
    return None


def ptb_tokenize_java(captions: Mapping[object, Sequence[str]], jar: str | os.PathLike | None = None,
                      timeout: float = 300.0) -> dict[object, list[str]]:
    """Tokenise with the real Stanford PTBTokenizer (exact coco-caption behaviour; needs Java).

    Same flags and punctuation filter as coco-caption. The jar defaults to the one in the pycocoevalcap
    wheel. Raises RuntimeError when Java or the jar is missing.
    """
    jar_path = Path(jar) if jar else find_pycocoevalcap_file("tokenizer/stanford-corenlp-3.4.1.jar")
    java = shutil.which("java")
    if java is None or jar_path is None or not jar_path.is_file():
        raise RuntimeError("the Java PTB tokenizer needs `java` on PATH and stanford-corenlp-3.4.1.jar "
                           "(shipped in the pycocoevalcap wheel)")
    keys = [k for k, v in captions.items() for _ in v]
    lines = [c.replace("\n", " ").replace("\r", " ") for v in captions.values() for c in v]
    with tempfile.TemporaryDirectory(prefix="ski_ptb_") as tmp:
        src = Path(tmp) / "captions.txt"
        src.write_text("\n".join(lines), encoding="utf-8")
        proc = subprocess.run(
            [java, "-cp", str(jar_path), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines",
             "-lowerCase", str(src)],
            capture_output=True, timeout=timeout, check=True,
        )
    out_lines = proc.stdout.decode("utf-8").split("\n")
    result: dict[object, list[str]] = {k: [] for k in captions}
    for k, line in zip(keys, out_lines):
        result[k].append(" ".join(w for w in line.rstrip().split(" ") if w not in COCO_PUNCTUATION))
    for k in keys[len(out_lines):]:  # trailing empty captions produce no output line
        result[k].append("")
    return result
