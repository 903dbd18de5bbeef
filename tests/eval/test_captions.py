"""ski-lvlm eval captions (the recipe) on a tiny random model and a tiny hand-made Charades-format world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval import captions
from ski_lvlm.evaluation.sets import load_eval_set
from ski_lvlm.inference import Captioner
from ski_lvlm.metrics.captions import compute_caption_metrics

from tests.charades_world import make_caption_model, make_charades_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_charades_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_caption_model(tmp_path_factory.mktemp("model"))


REAL_GENERATE = Captioner.generate


class SimulatedKill(Exception):
    pass


class CountingGenerate:
    """Wraps the real Captioner.generate; counts prompts and can fail after N calls (a simulated kill)."""

    def __init__(self, fail_after: int | None = None):
        self.calls, self.ids, self.fail_after = 0, [], fail_after

    def __call__(self, captioner, conversations, features, **kw):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise SimulatedKill("simulated interruption")
        self.calls += 1
        self.ids.extend(conversations)
        return REAL_GENERATE(captioner, conversations, features, **kw)


def _patch(monkeypatch, gen: CountingGenerate) -> None:
    monkeypatch.setattr(Captioner, "generate", lambda self, *a, **kw: gen(self, *a, **kw))


def _argv(model_dir, world, out, *extra):
    return ["--model", str(model_dir), "--eval-set", str(world / "Charades_v1_test.csv"), "--out", str(out),
            "--max-new-tokens", "6", "--batch-size", "2", "--meteor", "off", "--no-progress", *extra]


@pytest.mark.slow
def test_resume_and_metrics(world, model_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    # 1. interrupted after two generate calls (= 4 items, batch size 2)
    gen1 = CountingGenerate(fail_after=2)
    _patch(monkeypatch, gen1)
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
    _patch(monkeypatch, gen2)
    assert captions.main(_argv(model_dir, world, out)) == 0
    lines = [json.loads(ln) for ln in (out / "predictions.jsonl").read_text().splitlines()]
    assert lines[: len(first)] == first  # untouched, same timestamps
    ids = [r["id"] for r in lines]
    assert len(ids) == len(set(ids)) == 9  # 5 captions + 3 QA + 1 MC, each once
    done_first = {r["id"] for r in first}
    assert len(gen2.ids) == 9 - len(done_first) - sum(r["id"] == "V004" for r in lines if r["id"] not in done_first)

    # 3. a third run generates nothing at all (the model is not even loaded)
    gen3 = CountingGenerate()
    _patch(monkeypatch, gen3)
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
    items, _ = load_eval_set(world / "Charades_v1_test.csv")
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
    _patch(monkeypatch, CountingGenerate())
    assert captions.main(_argv(model_dir, world, out, "--limit", "1", "--qa", "none")) == 0
    assert captions.main(_argv(model_dir, world, out, "--limit", "1", "--prompt", "Other?")) == 2
    # another generation dtype would mix numbers too; float32 (the default) matches folders written before --dtype
    assert "dtype" not in json.loads((out / "settings.json").read_text())
    assert captions.main(_argv(model_dir, world, out, "--limit", "1", "--qa", "none", "--dtype", "bf16")) == 2


def test_bad_input_is_a_clear_error(world, tmp_path, capsys):
    assert captions.main(["--model", str(tmp_path), "--eval-set", str(world / "Charades_v1_test.csv"),
                          "--out", str(tmp_path / "o")]) == 2
    assert "not a SKI-LVLM model folder" in capsys.readouterr().err
