"""``ski-lvlm eval judge`` end to end against a scripted OpenAI-compatible stub on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from eval.judge import main
from ski_lvlm.llm_client import StubChatServer

ITEMS = [
    # (id, prediction, scripted score)
    ("v0", "a man opens the fridge", 4),
    ("v1", "someone sits on a sofa", 2),
    ("v2", "FLAKY a woman drinks water", 5),  # malformed HTTP body first, then valid
    ("v3", "SLOW a person closes a door", 3),  # first answer slower than the client timeout
    ("v4", "GARBAGE text", None),  # never a valid score -> recorded failure
    ("v5", "he reads a book", 1),
]


class Responder:
    def __init__(self):
        self.seen: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()

    def __call__(self, body):
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        pred = next(ln.split(": ", 1)[1] for ln in user.splitlines()
                    if ln.startswith(("Model answer:", "Model answer to question 1:")))
        with self.lock:
            n = self.seen[(pred, system)] = self.seen.get((pred, system), 0) + 1
        score = {p: s for _, p, s in ITEMS}[pred]
        if pred.startswith("FLAKY") and n == 1:
            return (200, "{not json", 0.0)
        if pred.startswith("SLOW") and n == 1:
            return (200, json.dumps({"choices": [{"message": {"content": '{"score": 0}'}}]}), 1.2)
        if score is None:
            return "I am unable to provide a rating for this."
        if "consistency" in system.lower():
            assert "Question 2: paraphrased " in user and "Model answer to question 2: second " in user
        return json.dumps({"score": score, "reason": "scripted"})


def _write_predictions(path: Path) -> None:
    with path.open("w") as f:
        for i, (vid, pred, _) in enumerate(ITEMS):
            rec = {"video_name": vid, "Q": f"What happens in {vid}?", "A": f"reference for {vid}", "pred": pred}
            if i < 2:  # consistency fields for two items, in the original Q2/pred2 spelling
                rec.update(Q2=f"paraphrased question for {vid}", pred2=f"second answer {vid}")
            f.write(json.dumps(rec) + "\n")


@pytest.mark.slow
def test_judge_cli_end_to_end_with_retries_failures_and_cache(tmp_path, capsys) -> None:
    preds = tmp_path / "preds.jsonl"
    _write_predictions(preds)
    out = tmp_path / "judge_out"
    with StubChatServer(Responder()) as srv:
        argv = ["--predictions", str(preds), "--base-url", srv.base_url, "--model", "stub-llama",
                "--criteria", "correctness", "temporal", "consistency", "--concurrency", "3", "--timeout", "0.5",
                "--max-retries", "2", "--attempts", "2", "--out", str(out), "--bootstrap", "200", "--no-progress"]
        assert main(argv) == 0
        first_requests = len(srv.requests)
        res = json.loads((out / "results.json").read_text())
        assert res["judge"]["model"] == "stub-llama" and res["judge"]["base_url"] == srv.base_url
        corr = res["criteria"]["correctness"]
        assert corr["n_scored"] == 5 and corr["n_failed"] == 1 and corr["failed_ids"] == ["v4"]
        assert corr["score_x20"] == pytest.approx(20 * (4 + 2 + 5 + 3 + 1) / 5)
        assert corr["ci95_x20"][0] <= corr["score_x20"] <= corr["ci95_x20"][1]
        cons = res["criteria"]["consistency"]
        assert cons["n_scored"] == 2 and cons["n_skipped"] == 4 and cons["score_x20"] == pytest.approx(60.0)
        lines = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
        assert len(lines) == 6 * 2 + 2
        bad = [x for x in lines if x["id"] == "v4"]
        assert all(not x["ok"] and x["score"] is None and "unparseable" in x["error"] for x in bad)
        assert "stub-llama" in (out / "results.md").read_text()
        assert "| correctness | 60.0 |" in capsys.readouterr().out

        # a second run answers every successful judgment from the cache; only v4 is asked again
        assert main(argv) == 0
        new = srv.requests[first_requests:]
        assert len(new) == 2 * 2  # v4: 2 attempts x 2 criteria (correctness, temporal)
        assert all("GARBAGE" in r["messages"][1]["content"] for r in new)
        res2 = json.loads((out / "results.json").read_text())
        assert res2["criteria"]["correctness"]["score_x20"] == corr["score_x20"]
        assert res2["cached_judgments"] == 12


def test_judge_cli_rejects_bad_input(tmp_path, capsys) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"id": "a", "question": "q", "answer": "x", "prediction": "y"}\n{"id": "b", "question": "q"}\n')
    argv = ["--predictions", str(preds), "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--out",
            str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "p.jsonl: line 2: missing field(s) ['answer', 'prediction']" in err
    preds.write_text('{"id": "a", "question": "q", "answer": "x", "prediction": "y"}\n')
    assert main(argv) == 2  # consistency (a default criterion) without second questions
    assert "question2" in capsys.readouterr().err
    assert main(argv[:3] + ["ftp://x", *argv[4:], "--criteria", "correctness"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
