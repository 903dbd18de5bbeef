"""The caption / QA benchmark's library half: eval-set reading, scoring and results.md on a tiny world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ski_lvlm.evaluation.markdown import results_markdown
from ski_lvlm.evaluation.scoring import score_predictions
from ski_lvlm.evaluation.sets import load_eval_set

from tests.charades_world import make_charades_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_charades_world(tmp_path_factory.mktemp("world"))


def test_eval_set_detection(world, tmp_path):
    items, info = load_eval_set(world / "Charades_v1_test.csv")
    assert info["format"] == "charades_csv" and info["counts"] == {"caption": 5, "qa": 3, "mc": 1}
    first = items[0]
    # main action = the longest interval, named through the classes file; scene from the CSV
    assert first.groups == {"action": "wave left hand", "scene": "Kitchen"}
    assert first.references == ["A person waves their left hand.", "Someone waves slowly."]
    mc = [it for it in items if it.kind == "mc"][0]
    assert mc.options == {"A": "sitting", "B": "jumping", "C": "waving"} and "B. jumping" in mc.prompt()
    qa_v1 = [it for it in items if it.kind == "qa" and it.video_id == "V001"]
    assert qa_v1[0].groups["action"] == "wave left hand"  # QA items inherit the video's groups
    # caption JSON {id: [refs]}
    p = tmp_path / "caps.json"
    p.write_text(json.dumps({"V001": ["a ref"], "V002": "another ref"}))
    items, info = load_eval_set(p, qa=None)
    assert info["format"] == "caption_json" and [it.references for it in items] == [["a ref"], ["another ref"]]
    # a QA list alone
    items, info = load_eval_set(world / "qa.json")
    assert info["format"] == "qa_json" and [it.kind for it in items] == ["qa", "qa", "qa", "mc"]


def test_qa_judge_through_stub_endpoint(world, tmp_path):
    from ski_lvlm.llm_client import StubChatServer

    items, _ = load_eval_set(world / "Charades_v1_test.csv")
    preds = {it.id: {"id": it.id, "prediction": "clapping" if it.video_id == "V002" else "no idea"} for it in items}

    def responder(body):
        user = body["messages"][-1]["content"]
        if "Which hand?" in user:
            return "I cannot say."  # never a verdict -> a recorded failure, not a crash
        return '{"pred": "yes", "score": 5}' if "clapping" in user else '{"pred": "no", "score": 1}'

    with StubChatServer(responder) as srv:
        res = score_predictions(items, preds, meteor="off", out=tmp_path,
                                         judge={"url": srv.base_url, "model": "stub-judge"})
    j = res["qa_open"]["judge"]
    assert j["judge_model"] == "stub-judge" and j["n_scored"] == 2 and j["n_failed"] == 1
    assert j["accuracy"] == pytest.approx(50.0) and j["mean_0_5"] == pytest.approx(3.0)
    assert res["qa_open"]["automatic"]["exact_match"] == pytest.approx(100 / 3)  # "clapping" == "Clapping."
    assert (tmp_path / "judge_cache.jsonl").is_file()


def test_grounding_scores_with_and_without_phrases(world, tmp_path):
    from ski_lvlm.synthetic.world import class_phrases
    from ski_lvlm.metrics.grounding import load_phrases

    items, _ = load_eval_set(world / "Charades_v1_test.csv")
    said = {"V001": "A person waves their left hand slowly.", "V002": "A person waves their left hand.",
            "V003": "A person jumps.", "V005": "A person waves their right hand.",
            "V001#qa0": "Waving the left hand.", "V001#qa1": "The right hand.", "V002#qa0": "Jumping.", "V003#mc0": "B"}
    preds = {it.id: {"id": it.id, "prediction": said.get(it.id)} for it in items}
    preds["V004"]["error"] = "VideoDecodeError: corrupt"
    # Charades data without a phrase file: the grounded scores are n/a, never guessed; diversity is exact
    res = score_predictions(items, preds, meteor="off")
    g = res["grounding"]
    assert g["action_accuracy"] is None and g["side_accuracy"] is None and g["distinct_captions"] == 4
    assert res["qa_closed"]["accuracy"] is None
    md = results_markdown({**res, "model": "m"})
    assert "| n/a | n/a (n/a) | n/a (n/a) | n/a | 4 | 25.0 |" in md and "no class_phrases.json" in md
    # with the world's phrases (and this eval set's two questions typed)
    phrases = class_phrases(["wave left hand", "clap", "jump"])
    phrases["questions"] = {"What is the person doing?": "action", "Which hand?": "side"}
    (tmp_path / "class_phrases.json").write_text(json.dumps(phrases))
    res = score_predictions(items, preds, meteor="off", phrases=load_phrases(tmp_path / "class_phrases.json"))
    g = res["grounding"]
    assert g["n_action"] == 4 and g["action_accuracy"] == 0.5  # V001, V003 right; V002 (clap), V005 (side) wrong
    assert g["per_class"] == {"clap": {"n": 1, "action_accuracy": 0.0}, "jump": {"n": 1, "action_accuracy": 1.0},
                              "wave left hand": {"n": 2, "action_accuracy": 0.5}}
    assert (g["n_side"], g["side_accuracy"]) == (3, pytest.approx(1 / 3))  # V001 left ok; V002 (both), V005 wrong
    assert (g["n_tempo"], g["tempo_accuracy"]) == (1, 1.0)  # only V001's references name a tempo (slow)
    assert g["top_caption_share"] == 0.25
    qc = res["qa_closed"]
    assert {t: (r["n"], r["accuracy"]) for t, r in qc["per_type"].items()} == {"action": (2, 0.5), "side": (1, 0.0)}
    assert qc["per_type"]["action"]["token_f1"] == pytest.approx(0.5)  # exact answer + a wrong one
    md = results_markdown({**res, "model": "m"})
    assert "## Grounding (4 captions)" in md and "| 50.0 | 33.3 (3) | 100.0 (1) | 100.0 | 4 | 25.0 |" in md
    assert "| action | 2 | 50.0 | 50.0 |" in md and "| wave left hand | 2 | 50.0 |" in md
