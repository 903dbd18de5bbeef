"""Grounded caption metrics on hand-written captions, with the synthetic world's own phrase file."""

from __future__ import annotations

import json

import pytest

from ski_lvlm.synthetic.world import CLASS_NAMES, class_phrases
from ski_lvlm.metrics.grounding import (AMBIGUOUS, action_of, actions_named, caption_diversity, caption_grounding,
                                        closed_qa_accuracy, load_phrases, reference_truth, side_of, tempo_of)


@pytest.fixture(scope="module")
def ph(tmp_path_factory):
    path = tmp_path_factory.mktemp("phrases") / "class_phrases.json"
    path.write_text(json.dumps(class_phrases(list(CLASS_NAMES))))
    return load_phrases(path)


@pytest.mark.parametrize("caption, expected", [
    ("A person waves their left hand slowly above the shoulder.", "wave left hand"),
    ("Someone is waving their right hand, moving quickly.", "wave right hand"),
    ("wave left hand", "wave left hand"),  # base form, class-name style
    ("A person raises their left hand.", "raise left hand"),  # not "wave left hand"
    ("The person kicks with their right leg into the air.", "kick with right leg"),
    ("A person drinks water.", "drink water"),  # one drink class: no side needed
    ("A person sits down slowly.", "sit down"),
    ("An adult claps their hands quickly while another person stands nearby in the background.", "clap"),
    ("A person moves.", None),  # generic: no action
    ("", None),
    ("A person waves their hand.", AMBIGUOUS),  # wave, but which one?
    ("A person waves their left hand and their right hand.", AMBIGUOUS),  # both sides named
    ("A person raises their left hand and waves it.", AMBIGUOUS),  # two actions
    ("A person stands nearby.", None),  # "stands" without "up" is not stand up
])
def test_action_of(ph, caption, expected):
    assert action_of(caption, ph) == expected


def test_actions_named_lists_every_class(ph):
    assert actions_named("A person raises their left hand and waves it.", ph) == ["wave left hand", "raise left hand"]
    assert actions_named("A person jumps, then squats down.", ph) == ["squat", "jump"]


@pytest.mark.parametrize("caption, side", [
    ("The left hand.", "left"), ("waving their RIGHT hand", "right"), ("Both hands.", "both"),
    ("left and right", "mixed"), ("A person jumps.", None)])
def test_side_of(ph, caption, side):
    assert side_of(caption, ph) == side


@pytest.mark.parametrize("caption, tempo", [
    ("A person bows slowly.", "slow"), ("Someone jumps at a steady pace.", "normal"),
    ("The movement is fast.", "fast"), ("Quickly.", "fast"), ("At a normal pace.", "normal"),
    ("A person claps.", None), ("slowly and then quickly", "mixed"),
    # brushing is described with "quickly" at every tempo: that use is not a tempo
    ("A person brushes their teeth slowly, moving the hand quickly from side to side at the mouth.", "slow")])
def test_tempo_of(ph, caption, tempo):
    assert tempo_of(caption, ph) == tempo


def test_caption_grounding_exact_values(ph):
    recs = [
        {"caption": "A person waves their left hand slowly.", "action": "wave left hand", "tempo": "slow"},  # all right
        {"caption": "A person waves their right hand quickly.", "action": "wave left hand", "tempo": "slow"},  # side, tempo wrong
        {"caption": "A person moves.", "action": "clap", "tempo": "fast"},  # nothing named
        {"caption": "A person moves.", "action": "jump", "tempo": None},
        {"caption": "A person claps both hands at a steady pace.", "action": "clap", "tempo": "normal"},  # all right
        {"caption": "A person waves their left hand.", "action": "sit down", "tempo": "normal"},  # side of a sideless class
    ]
    g = caption_grounding(recs, ph)
    assert g["n"] == 6 and g["n_action"] == 6
    assert g["action_accuracy"] == pytest.approx(2 / 6)
    assert g["no_action_share"] == pytest.approx(2 / 6) and g["ambiguous_share"] == 0
    # sides named for clips with a side: captions 1, 2, 5 (the sit-down clip has none) -> 2 of 3
    assert g["n_side"] == 3 and g["side_accuracy"] == pytest.approx(2 / 3)
    # tempo: 5 clips with a known tempo, 3 captions name one, 2 of them right
    assert g["n_tempo"] == 5 and g["n_tempo_named"] == 3
    assert g["tempo_accuracy"] == pytest.approx(2 / 3) and g["tempo_accuracy_all"] == pytest.approx(2 / 5)
    assert g["distinct_captions"] == 5  # "A person moves." twice
    assert g["top_caption"] == "A person moves." and g["top_caption_share"] == pytest.approx(2 / 6)
    assert g["per_class"]["wave left hand"] == {"n": 2, "action_accuracy": 0.5}
    assert g["per_class"]["clap"] == {"n": 2, "action_accuracy": 0.5}


def test_caption_diversity_ignores_case_and_punctuation():
    d = caption_diversity(["A person jumps.", "a person jumps", "A person sits down."])
    assert d["distinct_captions"] == 2 and d["top_caption_share"] == pytest.approx(2 / 3)
    assert caption_diversity([])["top_caption_share"] is None


def test_reference_truth(ph):
    assert reference_truth(["A person jumps quickly.", "Someone is jumping, moving rapidly.", "A person jumps."],
                           ph) == ("jump", "fast")
    assert reference_truth(["A person jumps slowly.", "A person bows quickly."], ph) == (None, None)


def test_closed_qa_per_type(ph):
    recs = [
        {"question": "Which hand does the person use?", "prediction": "The left hand.", "answer": "The left hand."},
        {"question": "Which leg does the person use?", "prediction": "The left leg.", "answer": "The right leg."},
        {"question": "How fast does the person move?", "prediction": "Quickly.", "answer": "Quickly."},
        {"question": "Is there anyone else in the video?", "prediction": "No, the person is alone.",
         "answer": "Yes, another person walks past in the background."},
        {"question": "Is there anyone else in the video?", "prediction": "yes", "answer": "Yes, another person stands."},
        {"question": "Where does this take place?", "prediction": "In a living room.", "answer": "In a kitchen."},
        {"question": "Where does this take place?", "prediction": "In a kitchen.", "answer": "In a kitchen."},
        {"question": "Which body part moves the most?", "prediction": "The left arm.", "answer": "The left hand."},
        {"question": "What is the person doing in the video?", "prediction": "The person is waving their right hand.",
         "answer": "The person is waving their right hand."},
        {"question": "What colour is the sky?", "prediction": "Blue.", "answer": "Blue."},  # not a world question
    ]
    r = closed_qa_accuracy(recs, ph)
    assert r["n"] == 9 and r["n_unscored"] == 1
    assert {t: (v["n"], v["accuracy"]) for t, v in r["per_type"].items()} == {
        "action": (1, 1.0), "anyone_else": (2, 0.5), "part": (1, 0.0), "scene": (2, 0.5), "side": (2, 0.5),
        "tempo": (1, 1.0)}
    assert r["accuracy"] == pytest.approx(5 / 9)


def test_bad_phrase_file(tmp_path):
    p = tmp_path / "class_phrases.json"
    p.write_text(json.dumps({"classes": {"jump": {"side": None}}}))
    with pytest.raises(ValueError, match="without verbs"):
        load_phrases(p)


def test_the_other_side_is_another_action(ph):
    assert action_of("A person drinks water with their left hand.", ph) is None  # the world drinks with the right
    assert action_of("A person drinks water with their right hand.", ph) == "drink water"


def test_out_of_vocabulary_share_counts_words_no_reference_uses():
    from ski_lvlm.metrics.grounding import out_of_vocabulary

    refs = ["A person waves their left hand.", "Someone claps quickly."]
    got = out_of_vocabulary(["A person squssshes their hand.", "Someone claps."], refs)
    assert got["oov_word_share"] == 1 / 7 and got["oov_words"] == ["squssshes"]
    assert out_of_vocabulary([], refs)["oov_word_share"] is None
