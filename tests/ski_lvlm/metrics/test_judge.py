"""LLM-judge library: reply parsing, prompts, retries/failures, cache, summaries."""

from __future__ import annotations

import threading

import pytest

from ski_lvlm.metrics.judge import (
    DEFAULT_CRITERIA,
    Judge,
    JudgeItem,
    JudgmentCache,
    build_messages,
    parse_qa_verdict,
    parse_score,
    summarize_judgments,
)


@pytest.mark.parametrize("reply,expected", [
    ('{"score": 4}', 4),
    ('{"score": 0, "reason": "wrong objects"}', 0),
    ("{'score': 3}", 3),
    ("{''score': 4}", 4),  # the malformed example of the original prompts
    ('```json\n{"score": 5, "reason": "all events"}\n```', 5),
    ('Sure! Here is my verdict: {"reason": "ok", "score": 2}. Thanks', 2),
    ('{"score": "4"}', 4),
    ('{"score": 4.0}', 4),
    ("Score: 2/5", 2),
    ("I would give this answer a 3.", 3),
    ('{"score": 4.8}', None),  # not a whole number: the judge is asked again
    ('{"score": 7}', None),
    ('{"score": true}', None),
    ("The answer deserves 10 points", None),
    ("no number here", None),
    ("4", 4), ("**3**", 3), ("3 out of 5 - mostly right", 3), ("Rating: 1", 1), ("Yes - score 4", 4),
    # replies of a 135M judge (SmolLM2) that echo the prompt: their numbers are labels, not scores
    ('Question 1: What is the person doing?\nThe answer to this question is "A person sits".', None),
    ("Question 1: What is the person doing?\nQuestion 2: What happens?\n\nA person sits down.", None),
    ("A man opens the fridge.\n\nThis answer is incorrect.", None),
    ("The person picks up 2 cups and waves 3 times.", None),
    ("Model answer to question 1: I would give it a 4\nScore: 2", 2),
    ("", None),
    (None, None),
])
def test_parse_score(reply, expected) -> None:
    assert parse_score(reply) == expected


@pytest.mark.parametrize("reply,expected", [
    ('{"pred": "yes", "score": 4}', ("yes", 4)),
    ("{'pred': 'no', 'score': 1}", ("no", 1)),
    ('{"pred": "Yes.", "score": "5"}', ("yes", 5)),
    ("Yes, it matches. Score: 5", ("yes", 5)),
    ("No. I'd say 1", ("no", 1)),
    ("undecided", (None, None)),
    ("There is no cup in the answer; I'd say 2", (None, 2)),  # a "no" inside a sentence is no verdict
    ("Reference answer: no\nModel answer: yes", (None, None)),  # an echo of the prompt
    ('The prediction is "yes", 4/5', ("yes", 4)),
])
def test_parse_qa_verdict(reply, expected) -> None:
    assert parse_qa_verdict(reply) == expected


def test_prompts_are_distinct_and_consistency_uses_both_questions() -> None:
    item = JudgeItem("v1", "What happens?", "He opens the fridge.", "A man opens a fridge.",
                     question2="Describe the actions.", prediction2="Someone closes a door.")
    systems = {c: build_messages(item, c)[0]["content"] for c in DEFAULT_CRITERIA + ("qa",)}
    assert len(set(systems.values())) == 6
    user = build_messages(item, "consistency")[1]["content"]
    for text in ("What happens?", "Describe the actions.", "A man opens a fridge.", "Someone closes a door.",
                 "He opens the fridge."):
        assert text in user
    assert "JSON" in systems["correctness"] and '"score"' in systems["correctness"]
    assert '"pred"' in systems["qa"]
    with pytest.raises(ValueError, match="question2"):
        build_messages(JudgeItem("v2", "q", "a", "p"), "consistency")


class FakeClient:
    """Scripted chat client: ``script[item_id]`` is a list of replies (an Exception is raised)."""

    def __init__(self, script: dict[str, list], model: str = "judge-m"):
        self.model = model
        self.script = {k: list(v) for k, v in script.items()}
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def chat(self, messages, **gen):
        lines = messages[1]["content"].splitlines()
        answer = next(ln.split(": ", 1)[1] for ln in lines if ln.startswith(("Model answer:", "Model answer to question 1:")))
        key = answer
        with self._lock:
            self.calls.append(key)
            seq = self.script[key]
            reply = seq.pop(0) if len(seq) > 1 else seq[0]
        if isinstance(reply, Exception):
            raise reply
        return reply


def _items(names):
    return [JudgeItem(n, f"question {n}?", f"reference {n}", n) for n in names]


def test_retry_failure_and_exception_are_recorded_not_scored_zero() -> None:
    client = FakeClient({
        "good": ['{"score": 4}'],
        "flaky": ["hmm, let me think", '{"score": 2}'],
        "bad": ["I refuse to grade this."],
        "boom": [RuntimeError("endpoint down")],
    })
    judge = Judge(client, attempts=3)
    res = {j.id: j for j in judge.run(_items(["good", "flaky", "bad", "boom"]), ["correctness"], progress=False)}
    assert res["good"].ok and res["good"].score == 4 and res["good"].attempts == 1
    assert res["flaky"].ok and res["flaky"].score == 2 and res["flaky"].attempts == 2
    assert not res["bad"].ok and res["bad"].score is None and "unparseable" in res["bad"].error
    assert res["bad"].raw == "I refuse to grade this." and res["bad"].attempts == 3
    assert not res["boom"].ok and "endpoint down" in res["boom"].error
    assert client.calls.count("bad") == 3 and client.calls.count("boom") == 3

    s = summarize_judgments(list(res.values()), ["correctness"], n_items=4, n_boot=200)["correctness"]
    assert s["n_scored"] == 2 and s["n_failed"] == 2 and sorted(s["failed_ids"]) == ["bad", "boom"]
    assert s["mean_0_5"] == pytest.approx(3.0) and s["score_x20"] == pytest.approx(60.0)
    lo, hi = s["ci95_x20"]
    assert 40.0 <= lo <= 60.0 <= hi <= 80.0


def test_cache_avoids_second_request_and_is_keyed_by_model(tmp_path) -> None:
    path = tmp_path / "cache.jsonl"
    items = _items(["a", "b"])
    c1 = FakeClient({"a": ['{"score": 5}'], "b": ['{"score": 1}']})
    first = Judge(c1, cache=JudgmentCache(path)).run(items, ["correctness", "temporal"], progress=False)
    assert len(c1.calls) == 4 and not any(j.cached for j in first)

    c2 = FakeClient({"a": ['{"score": 0}'], "b": ['{"score": 0}']})
    again = Judge(c2, cache=JudgmentCache(path)).run(items, ["correctness", "temporal"], progress=False)
    assert c2.calls == [] and all(j.cached for j in again)
    assert [j.score for j in again] == [j.score for j in first] == [5, 5, 1, 1]

    with path.open("a") as f:
        f.write('{"key": "torn')  # a run killed mid-write
    c3 = FakeClient({"a": ['{"score": 3}'], "b": ['{"score": 3}']}, model="another-judge")
    other = Judge(c3, cache=JudgmentCache(path)).run(items, ["correctness"], progress=False)
    assert len(c3.calls) == 2 and [j.score for j in other] == [3, 3]


def test_failures_are_not_cached(tmp_path) -> None:
    path = tmp_path / "cache.jsonl"
    c1 = FakeClient({"x": ["no idea"]})
    assert not Judge(c1, cache=JudgmentCache(path), attempts=1).run(_items(["x"]), ["detail"], progress=False)[0].ok
    c2 = FakeClient({"x": ['{"score": 3}']})
    j = Judge(c2, cache=JudgmentCache(path)).run(_items(["x"]), ["detail"], progress=False)[0]
    assert j.ok and j.score == 3 and len(c2.calls) == 1


def test_run_keeps_order_skips_consistency_without_q2_and_averages() -> None:
    items = _items([f"i{k}" for k in range(12)])
    items[0].question2, items[0].prediction2 = "other wording?", "i0 again"
    client = FakeClient({f"i{k}": [f'{{"score": {k % 6}}}'] for k in range(12)})
    judge = Judge(client)
    out = judge.run(items, ["correctness", "consistency"], concurrency=4, progress=False)
    assert [(j.id, j.criterion) for j in out][:3] == [("i0", "correctness"), ("i0", "consistency"), ("i1", "correctness")]
    assert len(out) == 13  # consistency only for the item that has a second question
    s = summarize_judgments(out, ["correctness", "consistency"], n_items=12, n_boot=100)
    assert s["consistency"]["n_scored"] == 1 and s["consistency"]["n_skipped"] == 11
    mean = sum(k % 6 for k in range(12)) / 12
    assert s["correctness"]["score_x20"] == pytest.approx(20 * mean)
    assert s["average_x20"] == pytest.approx((20 * mean + s["consistency"]["score_x20"]) / 2)
