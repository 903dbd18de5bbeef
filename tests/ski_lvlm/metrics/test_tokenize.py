"""The Python PTB tokenizer against coco-caption's Java PTBTokenizer."""

from __future__ import annotations

import shutil

import pytest

from ski_lvlm.metrics.tokenize import ptb_tokenize, ptb_tokenize_corpus, ptb_tokenize_java

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="java not installed")

# (input, coco-caption output) pairs checked by hand against the Java tokenizer
CASES = [
    ('A man doesn\'t like the "red" ball. He can\'t, won\'t, cannot go!',
     "a man does n't like the red ball he ca n't wo n't can not go"),
    ("The person's hands (left and right) are [visible] {here}.",
     "the person 's hands -lrb- left and right -rrb- are -lsb- visible -rsb- -lcb- here -rcb-"),
    ("She said 'hello' to Mr. Smith at 3.5 p.m. in the U.S. etc.",
     "she said hello to mr. smith at 3.5 p.m. in the u.s. etc."),
    ("A t-shirt-wearing man -- walks... to the door; then sits: ok?",
     "a t-shirt-wearing man walks to the door then sits ok"),
    ("It costs $5.00 and 50% of AT&T's stock and/or more.", "it costs $ 5.00 and 50 % of at&t 's stock and/or more"),
    ("I'm gonna sit. Someone opens the door.Then closes it!!! Really?!",
     "i 'm gon na sit someone opens the door.then closes it !!! really ?!"),
    ("the kids' toys, James' car; the dog's bone", "the kids toys james car the dog 's bone"),
    ("Don\u2019t touch the \u201cred\u201d cup \u2014 please\u2026", "do n't touch the red cup please"),
    ("At 5 o'clock let's go; 1:30pm w/ a cup, 3-4 people, coffee/tea.The person smiles:)",
     "at 5 o'clock let 's go 1:30 pm w / a cup 3-4 people coffee/tea the person smiles :-rrb-"),
    ("Person A hands person B a cup. It is 2 p.m. The man sleeps.",
     "person a hands person b a cup it is 2 p.m. the man sleeps"),
    ("", ""),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_known_cases(text: str, expected: str) -> None:
    assert ptb_tokenize(text) == expected


def test_corpus_helper_keeps_ids_and_order() -> None:
    out = ptb_tokenize_corpus({"a": ["Hello, World!", "It's"], 7: ["X."]})
    assert out == {"a": ["hello world", "it 's"], 7: ["x"]}


@pytest.mark.slow
@needs_java
def test_matches_java_ptbtokenizer_on_generated_corpus(corpus600) -> None:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    cands, refs = corpus600
    captions = {f"{k}/c": v for k, v in cands.items()} | {f"{k}/r": v for k, v in refs.items()}
    java = PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})
    ours = ptb_tokenize_corpus(captions)
    mismatches = [(c, j, o) for k in captions for c, j, o in zip(captions[k], java[k], ours[k]) if j != o]
    n = sum(len(v) for v in captions.values())
    assert n > 2000
    assert mismatches == [], f"{len(mismatches)} of {n} differ, e.g. {mismatches[:3]}"


@pytest.mark.slow
@needs_java
def test_java_wrapper_matches_pycocoevalcap() -> None:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    caps = {i: [t] for i, (t, _) in enumerate(CASES)}
    ref = PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in caps.items()})
    assert ptb_tokenize_java(caps) == ref
    assert [ptb_tokenize_java(caps)[i][0] for i in range(len(CASES))] == [e for _, e in CASES]
