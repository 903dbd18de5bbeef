"""Multiple-choice answer parsing/accuracy and judge-scored open-ended QA."""

from __future__ import annotations

import pytest

from ski_lvlm.metrics.judge import Judge, JudgeItem
from ski_lvlm.metrics.qa import mcq_accuracy, normalize_options, parse_choice, score_open_qa

OPTS = {"A": "open the door", "B": "close the fridge", "C": "sit on the sofa", "D": "drink water"}


@pytest.mark.parametrize("text,expected", [
    ("B", "B"), ("b", "B"), ("(B)", "B"), ("(b)", "B"), ("[C]", "C"), ("B.", "B"), ("B)", "B"), ("B:", "B"),
    (" ( D ) ", "D"), ("'C'", "C"), ('"a"', "A"),
    ("The answer is B", "B"), ("The answer is (B).", "B"), ("the answer is b.", "B"),
    ("Answer: D", "D"), ("answer: (c)", "C"), ("The correct answer is C because the person sits down.", "C"),
    ("Option A", "A"), ("I choose d", "D"), ("I would pick option (C) here.", "C"),
    ("B) close the fridge", "B"), ("(A) open the door", "A"), ("C. sit on the sofa", "C"), ("D - drink water", "D"),
    ("I think (C) is right", "C"),
    ("close the fridge", "B"), ("The person will Close the fridge.", "B"), ("He decides to drink water now", "D"),
    ("The answer is a cup", None),  # the article "a", not option A
    ("A person opens a window", None),  # article again, and no option text matches
    ("(A) or (B)", None), ("open the door or close the fridge", None), ("none of these", None), ("", None),
    (None, None), ("E", None), ("The answer is E", None),
])
def test_parse_choice(text, expected) -> None:
    assert parse_choice(text, OPTS) == expected


def test_parse_choice_prefers_the_longest_option_text_and_accepts_lists() -> None:
    opts = ["open the door", "open the door and leave the room", "sit down"]
    assert parse_choice("she will open the door and leave the room", opts) == "B"
    assert parse_choice("she will open the door", opts) == "A"
    assert normalize_options({"(a)": "x", "b.": "y"}) == {"A": "x", "B": "y"}
    with pytest.raises(ValueError):
        normalize_options({"AB": "x"})


def test_mcq_accuracy_counts_unparsed_as_wrong_and_lists_them() -> None:
    recs = [
        {"id": "1", "prediction": "(B)", "options": OPTS, "answer": "B"},
        {"id": "2", "prediction": "The answer is C.", "options": OPTS, "answer": "(C)"},
        {"id": "3", "prediction": "drink water", "options": OPTS, "answer": "drink water"},  # truth as text
        {"id": "4", "prediction": "A", "options": OPTS, "answer": "B"},  # wrong
        {"id": "5", "prediction": "I am not sure", "options": OPTS, "answer": "A"},  # unparseable
    ]
    r = mcq_accuracy(recs, n_boot=200)
    assert r["n"] == 5 and r["n_correct"] == 3 and r["accuracy"] == pytest.approx(60.0)
    assert r["n_unparsed"] == 1 and r["unparsed"] == [{"id": "5", "prediction": "I am not sure"}]
    assert r["per_item"]["4"] == {"parsed": "A", "truth": "B", "correct": False}
    assert r["ci95"][0] <= 60.0 <= r["ci95"][1]
    with pytest.raises(ValueError, match="neither"):
        mcq_accuracy([{"id": "x", "prediction": "A", "options": OPTS, "answer": "jump"}])


class QAClient:
    model = "qa-judge"

    def __init__(self, replies: dict[str, str]):
        self.replies = replies

    def chat(self, messages, **gen):
        pred = messages[1]["content"].rsplit("Model answer: ", 1)[1]
        return self.replies[pred]


def test_open_ended_qa_accuracy_and_score() -> None:
    items = [JudgeItem(str(i), "What is he holding?", "a cup", p) for i, p in enumerate(["p0", "p1", "p2", "p3"])]
    client = QAClient({
        "p0": '{"pred": "yes", "score": 5}',
        "p1": '{"pred": "no", "score": 1}',
        "p2": "Yes - score 4",
        "p3": "I don't know",  # no verdict: a failure, excluded
    })
    r = score_open_qa(items, Judge(client, attempts=2), n_boot=100)
    assert r["n_scored"] == 3 and r["n_failed"] == 1 and r["failed_ids"] == ["3"]
    assert r["accuracy"] == pytest.approx(200 / 3)
    assert r["mean_0_5"] == pytest.approx(10 / 3)
    assert {j.pred for j in r["judgments"] if j.ok} == {"yes", "no"}


def test_qa_token_f1():
    from ski_lvlm.metrics.qa import qa_token_f1

    assert qa_token_f1("The left hand.", "left hand") == (1.0, 1.0)
    em, f1 = qa_token_f1("the right hand", "The left hand.")
    assert em == 0.0 and f1 == pytest.approx(0.5)
    assert qa_token_f1("", "yes") == (0.0, 0.0)
