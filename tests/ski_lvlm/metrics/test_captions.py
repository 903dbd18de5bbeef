"""Caption metrics against pycocoevalcap (the coco-caption reference) on a generated corpus."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest

from ski_lvlm.metrics import captions as C
from ski_lvlm.metrics.captions import bleu_scores, cider_d_scores, compute_caption_metrics, rouge_l_scores
from ski_lvlm.metrics.tokenize import ptb_tokenize_corpus

pytest.importorskip("pycocoevalcap")
from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from pycocoevalcap.cider.cider import Cider  # noqa: E402
from pycocoevalcap.rouge.rouge import Rouge  # noqa: E402

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="java not installed")
TOL = 1e-6


def _coco_scores(cands_tok: dict, refs_tok: dict) -> dict:
    """Reference numbers from pycocoevalcap on already tokenised input (gts=refs, res=cands)."""
    b, bs = Bleu(4).compute_score(refs_tok, cands_tok, verbose=0)
    r, rs = Rouge().compute_score(refs_tok, cands_tok)
    c, cs = Cider().compute_score(refs_tok, cands_tok)
    return {"bleu": (b, np.array(bs).T), "rouge": (r, rs), "cider": (c, cs)}


@pytest.fixture(scope="module")
def tokenised(corpus600):
    cands, refs = corpus600
    return ptb_tokenize_corpus(cands), ptb_tokenize_corpus(refs)


@pytest.fixture(scope="module")
def coco_reference(tokenised):
    return _coco_scores(*tokenised)


@pytest.mark.slow
def test_corpus_has_the_edge_cases(corpus600, tokenised) -> None:
    cands, refs = corpus600
    ct, rt = tokenised
    assert len(cands) >= 500
    assert min(len(r) for r in refs.values()) >= 2 and max(len(r) for r in refs.values()) >= 5
    assert any(c == [""] for c in ct.values())  # empty candidate
    assert sum(len(c[0].split()) == 1 for c in ct.values()) >= 2  # one-word candidates
    text = " ".join(x for v in refs.values() for x in v)
    for needle in [",", ".", '"', "(", "'s", "n't", "Mr.", "/"]:
        assert needle in text
    assert any(c[0][:1].isupper() for c in cands.values())


@pytest.mark.slow
def test_bleu_rouge_cider_match_pycocoevalcap_on_pretokenised_input(tokenised, coco_reference) -> None:
    ct, rt = tokenised
    keys = list(ct)
    cl, rl = [ct[k][0] for k in keys], [rt[k] for k in keys]

    bleu, bleu_items = bleu_scores(cl, rl)
    ref_b, ref_bs = coco_reference["bleu"]
    np.testing.assert_allclose(bleu, ref_b, rtol=0, atol=TOL)
    np.testing.assert_allclose(bleu_items, ref_bs, rtol=0, atol=TOL)
    assert 0.2 < bleu[3] < bleu[0] < 1  # a non-degenerate corpus

    rouge, rouge_items = rouge_l_scores(cl, rl)
    assert abs(rouge - coco_reference["rouge"][0]) < TOL
    np.testing.assert_allclose(rouge_items, coco_reference["rouge"][1], rtol=0, atol=TOL)

    cider, cider_items = cider_d_scores(cl, rl)
    assert abs(cider - coco_reference["cider"][0]) < TOL
    np.testing.assert_allclose(cider_items, coco_reference["cider"][1], rtol=0, atol=TOL)
    assert cider > 0.3


@pytest.mark.slow
def test_full_tokenised_path_matches_pycocoevalcap_with_java_tokenizer(corpus600) -> None:
    """Raw captions through our tokenizer == raw captions through coco's Java PTBTokenizer + coco scorers."""
    if shutil.which("java") is None:
        pytest.skip("java not installed")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    cands, refs = corpus600
    tok = PTBTokenizer()
    ref = _coco_scores(tok.tokenize({k: [{"caption": c} for c in v] for k, v in cands.items()}),
                       tok.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()}))
    res = compute_caption_metrics(cands, refs, metrics=("bleu", "rouge", "cider"))
    s = res["scores"]
    for k in range(4):
        assert abs(s[f"BLEU-{k + 1}"] - ref["bleu"][0][k]) < TOL
    assert abs(s["ROUGE-L"] - ref["rouge"][0]) < TOL
    assert abs(s["CIDEr-D"] - ref["cider"][0]) < TOL
    keys = list(cands)
    per_cider = np.array([res["per_item"][k]["CIDEr-D"] for k in keys])
    np.testing.assert_allclose(per_cider, ref["cider"][1], rtol=0, atol=TOL)
    assert res["n_items"] == len(cands) and res["tokenizer"] == "ptb-python"
    assert "METEOR" not in s
    via_java = compute_caption_metrics(cands, refs, metrics=("bleu", "rouge", "cider"), tokenize="java")
    assert via_java["tokenizer"].startswith("ptb-java")
    for name, value in via_java["scores"].items():
        assert abs(value - s[name]) < TOL


def test_edge_items_and_small_corpora() -> None:
    cands = {"empty": [""], "exact": ["a man opens the door"], "one": ["door"], "other": ["a cat sleeps"]}
    refs = {"empty": ["a person sits"], "exact": ["a man opens the door", "someone opens a door"],
            "one": ["the door", "a door"], "other": ["a dog runs", "the cat is asleep"]}
    res = compute_caption_metrics(cands, refs, metrics=("bleu", "rouge", "cider"), tokenize=False)
    per = res["per_item"]
    assert per["empty"]["BLEU-1"] < 1e-6 and per["empty"]["ROUGE-L"] == 0 and per["empty"]["CIDEr-D"] == 0
    assert per["exact"]["BLEU-4"] == pytest.approx(1.0, abs=1e-6) and per["exact"]["ROUGE-L"] == 1.0
    assert per["other"]["CIDEr-D"] > 0
    ref = _coco_scores(cands, refs)
    for k in range(4):
        assert abs(res["scores"][f"BLEU-{k + 1}"] - ref["bleu"][0][k]) < TOL
    assert abs(res["scores"]["CIDEr-D"] - ref["cider"][0]) < TOL
    assert abs(res["scores"]["ROUGE-L"] - ref["rouge"][0]) < TOL
    # one item: idf = log(1) - log(df) = 0, so CIDEr-D is 0 (as in coco)
    one = compute_caption_metrics({"x": ["a man"]}, {"x": ["a man"]}, metrics=("cider",), tokenize=False)
    assert one["scores"]["CIDEr-D"] == 0.0


def test_bitparallel_lcs_matches_dynamic_programming() -> None:
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcde") for _ in range(rng.randint(1, 25))]
        b = [rng.choice("abcdef") for _ in range(rng.randint(1, 25))]
        dp = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                dp[i][j] = dp[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(dp[i - 1][j], dp[i][j - 1])
        masks: dict[str, int] = {}
        for j, t in enumerate(a):
            masks[t] = masks.get(t, 0) | (1 << j)
        assert C._lcs_length(masks, len(a), b) == dp[len(a)][len(b)]


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="same ids"):
        compute_caption_metrics({"a": ["x"]}, {"b": ["x"]})
    with pytest.raises(ValueError, match="exactly one candidate"):
        compute_caption_metrics({"a": ["x", "y"]}, {"a": ["x"]})
    with pytest.raises(ValueError, match="no reference"):
        compute_caption_metrics({"a": ["x"]}, {"a": []})
    with pytest.raises(ValueError, match="unknown metric"):
        compute_caption_metrics({"a": ["x"]}, {"a": ["x"]}, metrics=("spice",))
    # a bare string candidate is accepted
    r = compute_caption_metrics({"a": "a dog"}, {"a": ["a dog"]}, metrics=("rouge",), per_item=False)
    assert r["scores"]["ROUGE-L"] == 1.0 and "per_item" not in r


def test_meteor_fallback_is_reported_not_mixed(monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    res = compute_caption_metrics({"a": ["a dog runs"]}, {"a": ["a dog is running"]}, metrics=("meteor", "rouge"))
    assert res["scores"]["METEOR"] is None
    assert res["meteor"]["backend"] is None and "java" in res["meteor"]["note"]
    assert "METEOR" not in res["per_item"]["a"]
    with pytest.raises(RuntimeError, match="unavailable"):
        compute_caption_metrics({"a": ["x"]}, {"a": ["x"]}, metrics=("meteor",), meteor="java")


@pytest.mark.slow  # two JVM starts with 2 GB heaps: ~10 s idle, >20 s on a loaded 2-core machine
@needs_java
def test_meteor_matches_pycocoevalcap(corpus600) -> None:
    from pycocoevalcap.meteor.meteor import Meteor

    cands, refs = corpus600
    keys = list(cands)[:25]  # includes the empty and one-word candidates
    ct = ptb_tokenize_corpus({k: cands[k] for k in keys})
    rt = ptb_tokenize_corpus({k: refs[k] for k in keys})
    coco = Meteor()
    try:
        ref_total, ref_items = coco.compute_score(rt, ct)
    finally:
        del coco
    res = compute_caption_metrics({k: cands[k] for k in keys}, {k: refs[k] for k in keys},
                                  metrics=("meteor",), meteor="java")
    assert res["meteor"]["backend"].startswith("meteor-1.5.jar")
    assert abs(res["scores"]["METEOR"] - ref_total) < TOL
    np.testing.assert_allclose([res["per_item"][k]["METEOR"] for k in keys], ref_items, rtol=0, atol=TOL)
    assert 0.05 < ref_total < 1
