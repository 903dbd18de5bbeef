"""ski-lvlm eval captions on a tiny random model and a tiny hand-made Charades-format world."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from eval import captions
from ski_lvlm.metrics.captions import compute_caption_metrics

CLASSES = {"c000": "wave left hand", "c001": "clap", "c002": "jump"}
# id, scene, main action (longest), descriptions
VIDEOS = [
    ("V001", "Kitchen", "c000 0.0 1.0;c001 0.1 0.3", "A person waves their left hand.;Someone waves slowly."),
    ("V002", "Kitchen", "c001 0.0 1.0", "A person claps.;Someone claps their hands twice."),
    ("V003", "Bedroom", "c002 0.0 1.0", "A person jumps.;The person jumps up and down."),
    ("V004", "Bedroom", "c002 0.0 1.0", "Someone jumps in place."),
    ("V005", "Hallway", "c000 0.0 1.0", "A person waves."),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from ski_lvlm.data.video import write_video

    root = tmp_path_factory.mktemp("world")
    (root / "videos").mkdir()
    rng = np.random.default_rng(0)
    header = ["id", "subject", "scene", "quality", "relevance", "verified", "script", "objects", "descriptions",
              "actions", "length"]
    with open(root / "Charades_v1_test.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for vid, scene, actions, desc in VIDEOS:
            w.writerow([vid, "P1", scene, 7, 7, "Yes", desc.split(";")[0], "", desc, actions, 1.0])
            if vid == "V004":  # a broken video: recorded as an error, not a crash
                (root / "videos" / f"{vid}.mp4").write_bytes(b"not a video at all")
            else:
                write_video(root / "videos" / f"{vid}.mp4", rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), fps=10)
    (root / "Charades_v1_classes.txt").write_text("".join(f"{k} {v}\n" for k, v in CLASSES.items()))
    qa = [{"video_id": "V001", "q": "What is the person doing?", "a": "Waving the left hand."},
          {"video_id": "V001", "q": "Which hand?", "a": "The left hand."},
          {"video_id": "V002", "q": "What is the person doing?", "a": "Clapping."},
          {"video_id": "V003", "q": "Pick one.", "a": "B", "options": ["sitting", "jumping", "waving"]}]
    (root / "qa.json").write_text(json.dumps(qa))
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from ski_lvlm.models.lvlm.presets import create_lvlm

    d = tmp_path_factory.mktemp("model")
    model, proc = create_lvlm("tiny-llama", video_encoder={"kind": "clip", "arch": "ski-tiny-ViT"}, num_frames=4,
                              max_frames=4, skeleton_feature_dim=16, num_skeleton_tokens=4, seed=0,
                              corpus=[v[3] for v in VIDEOS] + ["What is the person doing? Which hand?"])
    model.save_pretrained(d)
    proc.save_pretrained(d)
    return d


REAL_GENERATE = captions.generate_batch


class SimulatedKill(Exception):
    pass


class CountingGenerate:
    """Wraps the real generate_batch; counts prompts and can fail after N calls (a simulated kill)."""

    def __init__(self, fail_after: int | None = None):
        self.calls, self.ids, self.fail_after = 0, [], fail_after

    def __call__(self, model, processor, prompts, feats, max_new_tokens):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise SimulatedKill("simulated interruption")
        self.calls += 1
        self.ids.extend(prompts)
        return REAL_GENERATE(model, processor, prompts, feats, max_new_tokens)


def _argv(model_dir, world, out, *extra):
    return ["--model", str(model_dir), "--eval-set", str(world / "Charades_v1_test.csv"), "--out", str(out),
            "--max-new-tokens", "6", "--batch-size", "2", "--meteor", "off", "--no-progress", *extra]


def test_eval_set_detection(world, tmp_path):
    items, info = captions.load_eval_set(world / "Charades_v1_test.csv")
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
    items, info = captions.load_eval_set(p, qa=None)
    assert info["format"] == "caption_json" and [it.references for it in items] == [["a ref"], ["another ref"]]
    # a QA list alone
    items, info = captions.load_eval_set(world / "qa.json")
    assert info["format"] == "qa_json" and [it.kind for it in items] == ["qa", "qa", "qa", "mc"]


@pytest.mark.slow
def test_resume_and_metrics(world, model_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    # 1. interrupted after two generate calls (= 4 items, batch size 2)
    gen1 = CountingGenerate(fail_after=2)
    monkeypatch.setattr(captions, "generate_batch", gen1)
    with pytest.raises(SimulatedKill):
        captions.main(_argv(model_dir, world, out))
    first = [json.loads(ln) for ln in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(first) >= 4 and gen1.calls == 2
    assert not (out / "results.json").exists()

    # a kill in the middle of a write leaves a torn last line: ignored and cut, not an error
    with open(out / "predictions.jsonl", "a") as f:
        f.write('{"id": "V00')
    # 2. rerun: finished items are not generated again, the rest are
    gen2 = CountingGenerate()
    monkeypatch.setattr(captions, "generate_batch", gen2)
    assert captions.main(_argv(model_dir, world, out)) == 0
    lines = [json.loads(ln) for ln in (out / "predictions.jsonl").read_text().splitlines()]
    assert lines[: len(first)] == first  # untouched, same timestamps
    ids = [r["id"] for r in lines]
    assert len(ids) == len(set(ids)) == 9  # 5 captions + 3 QA + 1 MC, each once
    done_first = {r["id"] for r in first}
    assert len(gen2.ids) == 9 - len(done_first) - sum(r["id"] == "V004" for r in lines if r["id"] not in done_first)

    # 3. a third run generates nothing at all (the model is not even loaded)
    gen3 = CountingGenerate()
    monkeypatch.setattr(captions, "generate_batch", gen3)
    assert captions.main(_argv(model_dir, world, out)) == 0
    assert gen3.calls == 0

    res = json.loads((out / "results.json").read_text())
    # the broken video is an error, listed, and out of the metrics
    assert res["n_errors"] == 1 and res["errors"][0]["id"] == "V004"
    preds = {r["id"]: r for r in lines}
    assert "error" in preds["V004"] and preds["V004"]["prediction"] is None
    c = res["captions"]
    assert c["n"] == 4
    assert set(c["scores"]) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D"}
    assert c["scores"]["METEOR"] is None  # --meteor off
    for k, v in c["scores"].items():
        if v is not None:
            assert 0.0 <= v <= (10.0 if k == "CIDEr-D" else 1.0)
    # overall = compute_caption_metrics on the same predictions
    items, _ = captions.load_eval_set(world / "Charades_v1_test.csv")
    refs = {it.id: it.references for it in items if it.kind == "caption" and it.id != "V004"}
    ref = compute_caption_metrics({k: [preds[k]["prediction"]] for k in refs}, refs, meteor="off")
    assert c["scores"] == ref["scores"]
    # per class / scene = mean of the per-item scores of that group
    wave = [ref["per_item"][k]["CIDEr-D"] for k in ("V001", "V005")]
    assert c["per_group"]["action"]["wave left hand"]["n"] == 2
    assert c["per_group"]["action"]["wave left hand"]["CIDEr-D"] == pytest.approx(sum(wave) / 2)
    assert set(c["per_group"]["action"]) == {"wave left hand", "clap", "jump"}
    assert c["per_group"]["action"]["jump"]["n"] == 1  # V004 failed
    assert c["per_group"]["scene"]["Kitchen"]["n"] == 2
    # QA: automatic scores clearly labelled, judge not run; MC scored with the parser
    qa = res["qa_open"]
    assert qa["n"] == 3 and qa["judge"] is None and "not the LLM judge" in qa["automatic"]["note"]
    assert 0 <= qa["automatic"]["token_f1"] <= 100
    assert res["mc"]["n"] == 1
    md = (out / "results.md").read_text()
    assert "CIDEr-D" in md and "Per action" in md and "V004" in md and "not run" in md
    judge_lines = (out / "judge_input_captions.jsonl").read_text().splitlines()
    assert len(judge_lines) == 4 and set(json.loads(judge_lines[0])) == {"id", "question", "answer", "prediction"}


def test_changed_settings_refused(world, model_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(captions, "generate_batch", CountingGenerate())
    assert captions.main(_argv(model_dir, world, out, "--limit", "1", "--qa", "none")) == 0
    assert captions.main(_argv(model_dir, world, out, "--limit", "1", "--prompt", "Other?")) == 2


def test_qa_token_f1():
    assert captions.qa_token_f1("The left hand.", "left hand") == (1.0, 1.0)
    em, f1 = captions.qa_token_f1("the right hand", "The left hand.")
    assert em == 0.0 and f1 == pytest.approx(0.5)
    assert captions.qa_token_f1("", "yes") == (0.0, 0.0)


def test_bad_input_is_a_clear_error(world, tmp_path, capsys):
    assert captions.main(["--model", str(tmp_path), "--eval-set", str(world / "Charades_v1_test.csv"),
                          "--out", str(tmp_path / "o")]) == 2
    assert "not a SKI-LVLM model folder" in capsys.readouterr().err


def test_qa_judge_through_stub_endpoint(world, tmp_path):
    from ski_lvlm.llm_client import StubChatServer

    items, _ = captions.load_eval_set(world / "Charades_v1_test.csv")
    preds = {it.id: {"id": it.id, "prediction": "clapping" if it.video_id == "V002" else "no idea"} for it in items}

    def responder(body):
        user = body["messages"][-1]["content"]
        if "Which hand?" in user:
            return "I cannot say."  # never a verdict -> a recorded failure, not a crash
        return '{"pred": "yes", "score": 5}' if "clapping" in user else '{"pred": "no", "score": 1}'

    with StubChatServer(responder) as srv:
        res = captions.score_predictions(items, preds, meteor="off", out=tmp_path,
                                         judge={"url": srv.base_url, "model": "stub-judge"})
    j = res["qa_open"]["judge"]
    assert j["judge_model"] == "stub-judge" and j["n_scored"] == 2 and j["n_failed"] == 1
    assert j["accuracy"] == pytest.approx(50.0) and j["mean_0_5"] == pytest.approx(3.0)
    assert res["qa_open"]["automatic"]["exact_match"] == pytest.approx(100 / 3)  # "clapping" == "Clapping."
    assert (tmp_path / "judge_cache.jsonl").is_file()


def test_grounding_scores_with_and_without_phrases(world, tmp_path):
    from ski_lvlm.synthetic.world import class_phrases
    from ski_lvlm.metrics.grounding import load_phrases

    items, _ = captions.load_eval_set(world / "Charades_v1_test.csv")
    said = {"V001": "A person waves their left hand slowly.", "V002": "A person waves their left hand.",
            "V003": "A person jumps.", "V005": "A person waves their right hand.",
            "V001#qa0": "Waving the left hand.", "V001#qa1": "The right hand.", "V002#qa0": "Jumping.", "V003#mc0": "B"}
    preds = {it.id: {"id": it.id, "prediction": said.get(it.id)} for it in items}
    preds["V004"]["error"] = "VideoDecodeError: corrupt"
    # Charades data without a phrase file: the grounded scores are n/a, never guessed; diversity is exact
    res = captions.score_predictions(items, preds, meteor="off")
    g = res["grounding"]
    assert g["action_accuracy"] is None and g["side_accuracy"] is None and g["distinct_captions"] == 4
    assert res["qa_closed"]["accuracy"] is None
    md = captions.results_markdown({**res, "model": "m"})
    assert "| n/a | n/a (n/a) | n/a (n/a) | n/a | 4 | 25.0 |" in md and "no class_phrases.json" in md
    # with the world's phrases (and this eval set's two questions typed)
    phrases = class_phrases(["wave left hand", "clap", "jump"])
    phrases["questions"] = {"What is the person doing?": "action", "Which hand?": "side"}
    (tmp_path / "class_phrases.json").write_text(json.dumps(phrases))
    res = captions.score_predictions(items, preds, meteor="off", phrases=load_phrases(tmp_path / "class_phrases.json"))
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
    md = captions.results_markdown({**res, "model": "m"})
    assert "## Grounding (4 captions)" in md and "| 50.0 | 33.3 (3) | 100.0 (1) | 100.0 | 4 | 25.0 |" in md
    assert "| action | 2 | 50.0 | 50.0 |" in md and "| wave left hand | 2 | 50.0 |" in md
