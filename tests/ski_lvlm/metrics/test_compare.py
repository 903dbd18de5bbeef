"""Comparing two arms of runs: known differences are found, no difference is not, bad tables are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ski_lvlm.metrics.compare import (bootstrap_diff, compare_markdown, compare_runs, pairing,
                                      permutation_pvalue, seed_permutation_pvalue)
from ski_lvlm.metrics.scores import RunScores, caption_clip_scores, load_run, read_scores, seed_from_path, write_scores

N_CLIPS = 200
CLIPS = [f"clip{i:03d}" for i in range(N_CLIPS)]


def _run(name: str, seed: int | None, correct: np.ndarray, metric: str = "top1") -> RunScores:
    return RunScores(name, seed, {metric: {c: float(v) for c, v in zip(CLIPS, correct)}})


def _arms(seeds_a, seeds_b, gain: float, base: float = 0.5, rng_seed: int = 0):
    """Per seed: A right with probability ``base``; B right wherever A is, plus on a ``gain`` share of the rest.

    So B - A = ``gain * (1 - base)`` in expectation (0.2 for gain 0.4, base 0.5).
    """
    rng = np.random.default_rng(rng_seed)
    a, b = [], []
    for s in seeds_a:
        a.append(_run(f"A/seed{s}", s, rng.random(N_CLIPS) < base))
    for i, s in enumerate(seeds_b):
        own = rng.random(N_CLIPS) < base
        ref = a[i].scores["top1"] if i < len(a) and seeds_a[i] == s else dict(zip(CLIPS, own))
        xa = np.array([ref[c] for c in CLIPS]) > 0.5
        b.append(_run(f"B/seed{s}", s, xa | (rng.random(N_CLIPS) < gain)))
    return a, b


def test_known_difference_is_covered_and_excludes_zero():
    a, b = _arms([0, 1, 2], [0, 1, 2], gain=0.4)
    res = compare_runs(a, b, n_boot=2000, n_perm=2000)
    m = res["metrics"]["top1"]
    assert res["paired"] and res["pairing"] == "paired by seed (0, 1, 2)"
    assert m["n_clips"] == N_CLIPS and (m["n_runs_a"], m["n_runs_b"]) == (3, 3)
    assert m["diff"] == pytest.approx(m["mean_b"] - m["mean_a"])
    assert 0 < m["ci_low"] < 0.2 < m["ci_high"]
    assert m["p_value"] < 0.001 and m["percent"]
    assert m["sd_diff_over_seeds"] is not None


def test_no_difference_gives_a_large_p_and_a_ci_around_zero():
    rng = np.random.default_rng(5)
    a = [_run(f"A{s}", s, rng.random(N_CLIPS) < 0.6) for s in range(3)]
    b = [_run(f"B{s}", s, rng.random(N_CLIPS) < 0.6) for s in range(3)]
    m = compare_runs(a, b, n_boot=2000, n_perm=2000)["metrics"]["top1"]
    assert m["p_value"] > 0.05
    assert m["ci_low"] < 0 < m["ci_high"]


def test_unpaired_seeds_still_find_the_difference():
    a, b = _arms([0, 1, 2], [7, 8], gain=0.4)
    res = compare_runs(a, b, n_boot=2000, n_perm=2000)
    m = res["metrics"]["top1"]
    assert not res["paired"] and "different seeds" in res["pairing"]
    assert (m["n_runs_a"], m["n_runs_b"]) == (3, 2) and m["sd_diff_over_seeds"] is None
    assert 0 < m["ci_low"] < 0.2 < m["ci_high"] and m["p_value"] < 0.001
    # and with no difference the unpaired test is not fooled
    rng = np.random.default_rng(9)
    a = [_run(f"A{s}", s, rng.random(N_CLIPS) < 0.6) for s in range(3)]
    b = [_run(f"B{s}", None, rng.random(N_CLIPS) < 0.6) for s in range(2)]
    res = compare_runs(a, b, n_boot=2000, n_perm=2000)
    assert "no seed" in res["pairing"] and res["metrics"]["top1"]["p_value"] > 0.05


def test_pairing_rules():
    r = lambda s: RunScores("x", s, {})  # noqa: E731
    assert pairing([r(None)], [r(None)])[0]  # one run each: paired by clip
    assert pairing([r(1), r(0)], [r(0), r(1)]) == (True, "paired by seed (0, 1)")
    assert "repeats" in pairing([r(0), r(0)], [r(0), r(1)])[1]
    assert not pairing([r(0), r(1)], [r(0), r(2)])[0]


def test_paired_runs_are_matched_by_seed_not_by_order():
    a, b = _arms([0, 1, 2], [0, 1, 2], gain=0.4)
    res = compare_runs(a, list(reversed(b)), n_boot=500, n_perm=500)
    assert [r["seed"] for r in res["arms"]["b"]["runs"]] == [0, 1, 2]
    assert res["metrics"] == compare_runs(a, b, n_boot=500, n_perm=500)["metrics"]


def test_sign_flip_p_value_matches_the_exact_one():
    # three pairs differ, all in B's favour: P(|sum of 3 random signs| >= 3) = 2 / 8
    xa = np.zeros((1, 10))
    xb = xa.copy()
    xb[0, :3] = 1
    p = permutation_pvalue(xa, xb, paired=True, rng=np.random.default_rng(0), n_perm=5000)
    assert p == pytest.approx(0.25, abs=0.02)
    assert permutation_pvalue(xa, xa, paired=True, rng=np.random.default_rng(0), n_perm=100) == 1.0
    assert permutation_pvalue(xa, xa, paired=False, rng=np.random.default_rng(0), n_perm=100) == 1.0


def test_resampling_seeds_widens_the_ci_when_seeds_disagree():
    rng = np.random.default_rng(2)
    xa = (rng.random((4, 300)) < 0.5).astype(float)
    xb = (rng.random((4, 300)) < np.array([[0.45], [0.5], [0.55], [0.75]])).astype(float)  # one lucky seed
    kw = dict(paired=True, n_boot=2000)
    lo_s, hi_s = bootstrap_diff(xa, xb, rng=np.random.default_rng(0), **kw)
    lo_f, hi_f = bootstrap_diff(xa, xb, rng=np.random.default_rng(0), resample_seeds=False, **kw)
    assert hi_s - lo_s > 1.3 * (hi_f - lo_f)
    assert lo_f > 0 > lo_s  # fixed seeds would call it a win; the seed spread says it is not shown


def test_unpaired_shortcut_for_0_1_scores_matches_the_shuffle():
    rng = np.random.default_rng(1)
    xa, xb = (rng.random((3, 60)) < 0.5) * 1.0, (rng.random((2, 60)) < 0.55) * 1.0
    fast = permutation_pvalue(xa, xb, paired=False, rng=np.random.default_rng(0), n_perm=4000)
    shuffled = permutation_pvalue(2 * xa, 2 * xb, paired=False, rng=np.random.default_rng(0), n_perm=4000)
    assert 0.05 < fast < 0.95 and fast == pytest.approx(shuffled, abs=0.03)


def test_seed_level_p_value_is_exact_for_few_seeds():
    rng = np.random.default_rng(0)
    xa = np.zeros((3, 20))
    xb = np.zeros((3, 20))
    xb[:, :5] = 1
    xb[1, 5] = 1  # every seed pair favours B, by different amounts
    # paired: 2^3 sign patterns, only all-plus and all-minus reach the observed |mean|
    assert seed_permutation_pvalue(xa, xb, paired=True, rng=rng) == (0.25, 0.25)
    # unpaired: C(6, 3) = 20 splits; B's three runs and A's three are the two extreme ones
    assert seed_permutation_pvalue(xa, xb, paired=False, rng=rng) == (pytest.approx(0.1), pytest.approx(0.1))
    assert seed_permutation_pvalue(xa[:1], xb, paired=False, rng=rng) == (None, None)
    # many seeds: random relabellings, p of the (1 + hits) / (1 + n) form, the floor is reported all the same
    xa, xb = np.zeros((16, 5)), np.ones((16, 5))
    p, floor = seed_permutation_pvalue(xa, xb, paired=True, rng=rng, n_perm=1000)
    assert p == pytest.approx(1 / 1001, abs=2 / 1001) and floor == 2 / 2 ** 16


def test_a_lucky_seed_fools_the_clip_test_but_not_the_ci():
    rng = np.random.default_rng(3)
    p_clip = rng.beta(2, 2, N_CLIPS)  # clip difficulty, shared by every run
    xa = (rng.random((5, N_CLIPS)) < p_clip).astype(float)
    xb = (rng.random((5, N_CLIPS)) < np.clip(p_clip + np.array([[-0.02], [0], [0], [0.02], [0.4]]), 0, 1)).astype(float)
    res = compare_runs([RunScores(f"A{s}", s, {"m": dict(zip(CLIPS, x))}) for s, x in enumerate(xa)],
                       [RunScores(f"B{s}", s, {"m": dict(zip(CLIPS, x))}) for s, x in enumerate(xb)],
                       n_boot=2000, n_perm=2000)["metrics"]["m"]
    assert res["p_value"] < 0.01  # these runs do differ
    # one seed out of five is not a method effect: the CI (seeds resampled) covers 0, p (seeds) is not small
    assert res["ci_low"] < 0 < res["ci_high"]
    assert res["p_seeds"] > 0.05 and res["p_seeds_min"] == 2 / 32


def test_missing_clips_and_metrics_are_reported():
    a, b = _arms([0, 1], [0, 1], gain=0.4)
    for r in b:  # arm B was evaluated on 190 of the 200 clips
        for c in CLIPS[:10]:
            del r.scores["top1"][c]
    del b[1].scores["top1"]["clip150"]  # and one of its runs lost one more
    a[0].scores["top5"] = {"clip005": 1.0}  # a metric only one run has
    res = compare_runs(a, b, n_boot=200, n_perm=200)
    m = res["metrics"]["top1"]
    assert m["n_clips"] == N_CLIPS - 11 and (m["dropped_a"], m["dropped_b"]) == (11, 1)
    assert set(res["metrics"]) == {"top1"}
    assert "A: B/seed" not in res["skipped"]["top5"] and "B: B/seed0" in res["skipped"]["top5"]
    md = compare_markdown(res)
    assert "| top1 (%) |" in md and "Skipped top5" in md and "11 from A, 1 from B" in md
    assert compare_runs(a, b, metrics=["nope", "top1"], n_boot=100, n_perm=100)["skipped"]["nope"] == \
        "not scored by any run"


def test_bad_arms_raise_naming_the_arm():
    a, b = _arms([0], [0], gain=0.4)
    with pytest.raises(ValueError, match="arm B has no runs"):
        compare_runs(a, [])
    other = RunScores("B/other", 0, {"top1": {"elsewhere": 1.0}})
    with pytest.raises(ValueError, match="arms ctrl and ski share no clip"):
        compare_runs(a, [other], names=("ctrl", "ski"))
    split = [RunScores("A0", 0, {"top1": {"x": 1.0}}), RunScores("A1", 1, {"top1": {"y": 1.0}})]
    with pytest.raises(ValueError, match="arm A: its runs share no clip"):
        compare_runs(split, b)
    with pytest.raises(ValueError, match="no metric is scored"):
        compare_runs(a, [RunScores("B", 0, {"other": {"clip000": 1.0}})])


def test_results_are_seeded_and_per_metric():
    a, b = _arms([0, 1], [0, 1], gain=0.4)
    one = compare_runs(a, b, n_boot=300, n_perm=300)
    assert one == compare_runs(a, b, n_boot=300, n_perm=300)
    other = compare_runs(a, b, n_boot=300, n_perm=300, seed=1)
    assert one["metrics"]["top1"]["ci_low"] != other["metrics"]["top1"]["ci_low"]
    for r in (*a, *b):  # adding a metric does not move the others' numbers
        r.scores["aaa"] = dict(r.scores["top1"])
    assert compare_runs(a, b, n_boot=300, n_perm=300)["metrics"]["top1"] == one["metrics"]["top1"]
    json.dumps(one)  # plain JSON types


# --------------------------------------------------------------------------------------------------
# the score format
# --------------------------------------------------------------------------------------------------
def test_scores_round_trip_merge_and_seed(tmp_path):
    p = write_scores(tmp_path / "seed4" / "scores.jsonl", [{"clip": "a", "top1": True, "cap": 0.25},
                                                           {"clip": "b", "top1": 0, "cap": None}])
    with p.open("a") as f:
        f.write('{"clip": "b", "probe": 1}\n\n')  # concatenated files merge by clip
    scores, seed = read_scores(p)
    assert scores == {"top1": {"a": 1.0, "b": 0.0}, "cap": {"a": 0.25}, "probe": {"b": 1.0}} and seed is None
    run = load_run(str(tmp_path / "seed4"))
    assert run.seed == 4 and run.scores == scores
    write_scores(tmp_path / "x.jsonl", [{"clip": 1, "m": 1}], seed=9)
    assert load_run(str(tmp_path / "x.jsonl")).seed == 9


@pytest.mark.parametrize("text, match", [
    ('{"clip": "a", "m": 1}\n{"clip": "a", "m": 0}\n', r"x.jsonl:2: clip 'a' has two values of 'm'"),
    ('{"clip": "a", "m": 1}\nnot json\n', r"x.jsonl:2: invalid JSON"),
    ('{"m": 1}\n', r"x.jsonl:1: expected an object with a \"clip\""),
    ('{"clip": "a", "m": "high"}\n', r"metric 'm' must be a finite number"),
    ('{"clip": "a", "m": 1, "seed": 1}\n{"clip": "b", "m": 1, "seed": 2}\n', r"different seeds"),
    ('\n', r"no scores"),
])
def test_bad_score_files_name_the_line(tmp_path, text, match):
    p = tmp_path / "x.jsonl"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_scores(p)


def test_seed_from_path():
    assert seed_from_path("runs/abl/ski/seed3/zs") == 3
    assert seed_from_path("runs/ski_seed-12.jsonl") == 12
    assert seed_from_path("runs/seedless/x") is None and seed_from_path("runs/ski/x") is None


def test_caption_clip_scores(tmp_path):
    from ski_lvlm.synthetic.world import CLASS_NAMES, class_phrases
    from ski_lvlm.metrics.grounding import load_phrases

    path = tmp_path / "class_phrases.json"
    path.write_text(json.dumps(class_phrases(list(CLASS_NAMES))))
    ph = load_phrases(path)
    refs = ["A person waves their left hand slowly.", "Someone waves the left hand slowly."]
    recs = [
        {"id": "v1", "kind": "caption", "video_id": "v1", "prediction": "A person waves their left hand slowly.",
         "references": refs, "answer": refs[0]},
        {"id": "v2", "kind": "caption", "video_id": "v2", "prediction": "A person moves.", "references": refs,
         "answer": refs[0]},
        {"id": "v3", "kind": "caption", "video_id": "v3", "prediction": None, "references": refs, "answer": refs[0],
         "error": "cannot decode"},
        {"id": "v1/q0", "kind": "qa", "video_id": "v1", "question": "Which hand does the person use?",
         "prediction": "The left hand.", "answer": "The left hand."},
        {"id": "v1/q1", "kind": "qa", "video_id": "v1", "question": "How fast does the person move?",
         "prediction": "Quickly.", "answer": "Slowly."},
        {"id": "v1/q2", "kind": "qa", "video_id": "v1", "question": "What colour is the sky?", "prediction": "Blue.",
         "answer": "Blue."},
    ]
    rows = {r["clip"]: r for r in caption_clip_scores(recs, ph)}
    assert rows == {
        "v1": {"clip": "v1", "caption_action": 1, "caption_side_all": 1, "caption_tempo_all": 1, "qa_side": 1.0,
               "qa_tempo": 0.0},
        "v2": {"clip": "v2", "caption_action": 0, "caption_side_all": 0, "caption_tempo_all": 0},
    }
