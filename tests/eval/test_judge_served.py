"""``ski-lvlm eval judge`` against ``ski-lvlm serve`` running the real SmolLM2-135M-Instruct (marked slow).

The server is built by the serve CLI's own ``make_server`` (``--model smollm2-135m``) and runs in-process on
127.0.0.1 (a free port). The judge talks to it over HTTP like to any OpenAI-compatible endpoint. What a 135M
model scores is not asserted: the test checks the pipeline. That covers the requests the judge sends, that
every reply is the model's own greedy text, the parsing and failure accounting, and the cache on a re-run.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from ski_lvlm.metrics.judge import build_messages, parse_qa_verdict, parse_score  # noqa: E402
from ski_lvlm.serving import BackgroundServer  # noqa: E402

# ~30 s on an idle 2-core machine; the bound is for a machine shared with training runs (requests queue up)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.usefixtures("one_thread")]

NAME = "smollm2-judge"
MAX_TOKENS = 24
CRITERIA = ["correctness", "qa"]
PREDICTIONS = [  # video_name / Q / A / pred: the Video-ChatGPT field names
    {"video_name": "v0", "Q": "Which hand does the person wave?", "A": "The left hand.", "pred": "The right hand."},
    {"video_name": "v1", "Q": "What is the person doing?", "A": "A person opens the fridge and takes out milk.",
     "pred": "A man opens the fridge."},
    {"video_name": "v2", "Q": "What does the person sit on?", "A": "A sofa.", "pred": "The person sits on a sofa."},
]


@pytest.fixture(scope="module")
def served_smollm2(smollm2_home):
    """(base URL, engine, the submitted requests) of ``ski-lvlm serve --model smollm2-135m`` on loopback; the name
    resolves in the session's prepared home (tests/conftest.py)."""
    from demo.serve import build_parser, make_server

    args = build_parser().parse_args(["--model", "smollm2-135m", "--name", NAME, "--device", "cpu",
                                      "--max-batch", "4", "--batch-window-ms", "50"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKI_LVLM_HOME", str(smollm2_home[0]))
        app, engine = make_server(args)
    submitted = []  # every ChatRequest the judge's HTTP requests turned into, in arrival order
    submit = engine.submit
    engine.submit = lambda req, emit=None, **kw: (submitted.append(req), submit(req, emit, **kw))[1]
    try:
        with BackgroundServer(app) as url:
            yield url + "/v1", engine, submitted
    finally:
        engine.close()


def _run_judge(url, tmp_path, out, concurrency):
    from eval.judge import main

    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in PREDICTIONS))
    argv = ["--predictions", str(preds), "--base-url", url, "--model", NAME, "--out", str(out),
            "--criteria", *CRITERIA, "--attempts", "2", "--max-tokens", str(MAX_TOKENS), "--timeout", "300",
            "--max-retries", "0", "--concurrency", str(concurrency), "--bootstrap", "100", "--no-progress"]
    assert main(argv) == 0
    judgments = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
    return json.loads((out / "results.json").read_text()), judgments


def test_judge_cli_against_served_smollm2(served_smollm2, tmp_path):
    from ski_lvlm.metrics.judge import JudgeItem

    url, engine, submitted = served_smollm2
    out = tmp_path / "judge"
    items = {r["video_name"]: JudgeItem(r["video_name"], r["Q"], r["A"], r["pred"]) for r in PREDICTIONS}

    # run 1, one request at a time: every reply is comparable with the model's own greedy text
    res, judgments = _run_judge(url, tmp_path, out, concurrency=1)
    assert [(j["id"], j["criterion"]) for j in judgments] == [(i, c) for i in items for c in CRITERIA]
    assert res["requests_sent"] == len(submitted) == sum(j["attempts"] for j in judgments)
    assert engine.batch_sizes == [1] * len(submitted)
    # the requests: the judge's prompts, greedy, capped at --max-tokens, to the served model's name
    want = [build_messages(items[j["id"]], j["criterion"]) for j in judgments for _ in range(j["attempts"])]
    assert [r.messages for r in submitted] == want
    assert all(r.temperature == 0 and r.max_tokens == MAX_TOKENS and not r.stream for r in submitted)
    # the replies are the model's greedy output for those prompts (no stub in between)
    for j in judgments:
        alone = engine.cap.generate([build_messages(items[j["id"]], j["criterion"])], None,
                                    max_new_tokens=MAX_TOKENS)[0]
        assert j["raw"] == alone
    # parsing and failure accounting: a judgment is scored iff its reply parses; failures are counted, never 0
    for j in judgments:
        score = parse_score(j["raw"]) if j["criterion"] != "qa" else (
            parse_qa_verdict(j["raw"])[1] if parse_qa_verdict(j["raw"])[0] else None)
        assert j["ok"] == (score is not None) and j["score"] == score
        assert j["attempts"] == (1 if j["ok"] else 2)  # an unparseable reply is asked once more
        if not j["ok"]:
            assert j["error"].startswith("unparseable reply")
    for c in CRITERIA:
        s = res["criteria"][c]
        scored = [j["score"] for j in judgments if j["criterion"] == c and j["ok"]]
        failed = [j["id"] for j in judgments if j["criterion"] == c and not j["ok"]]
        assert s["n_scored"] == len(scored) and s["failed_ids"] == failed
        assert s["n_failed"] == s["n_unparseable"] == len(failed) and s["n_skipped"] == 0
        assert s["score_x20"] == (pytest.approx(20 * sum(scored) / len(scored)) if scored else None)
    print("\nSmolLM2-135M judge replies:", *[f"{j['id']}/{j['criterion']}: {j['raw']!r}" for j in judgments],
          sep="\n  ")

    # run 2 into the same folder, concurrent: cached judgments cost no request, failed ones are asked again
    n_ok = sum(j["ok"] for j in judgments)
    lines = (out / "judge_cache.jsonl").read_text().splitlines() if n_ok else []
    assert len(lines) == n_ok
    before = len(submitted)
    res2, judgments2 = _run_judge(url, tmp_path, out, concurrency=3)
    assert [(j["id"], j["criterion"]) for j in judgments2] == [(j["id"], j["criterion"]) for j in judgments]
    assert res2["cached_judgments"] == n_ok == sum(j["cached"] for j in judgments2)
    for first, again in zip(judgments, judgments2):
        assert again["cached"] == first["ok"]
        if first["ok"]:
            assert (again["ok"], again["score"], again["raw"]) == (True, first["score"], first["raw"])
    asked = [j for j in judgments2 if not j["cached"]]
    assert res2["requests_sent"] == len(submitted) - before == sum(j["attempts"] for j in asked)
    assert sum(engine.batch_sizes) == len(submitted)  # every request was answered by a generate call
