"""Closed-set classification scores (zero-shot evaluation and the recipes' validation share them)."""

import pytest
import torch

from ski_lvlm.metrics.classification import classification_metrics, clip_scores, mirror_classes


def test_metrics_on_known_scores():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    m = classification_metrics(scores, torch.tensor([0, 1, 2, 2]), ["a", "b", "c"])
    assert m["top1"] == 0.75 and m["top5"] == 1.0 and m["top5_k"] == 3
    assert m["per_class"] == {"a": 1.0, "b": 1.0, "c": 0.5}
    assert m["mean_class_acc"] == pytest.approx(2.5 / 3)
    assert m["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_zero_shot_clip_scores():
    scores = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    rows = clip_scores(["a", "b", "c"], scores, torch.tensor([0, 1, 2]), k=2)
    assert rows == [{"clip": "a", "zero_shot_top1": 1, "zero_shot_top5": 1},
                    {"clip": "b", "zero_shot_top1": 0, "zero_shot_top5": 1},
                    {"clip": "c", "zero_shot_top1": 0, "zero_shot_top5": 0}]


def test_any_side_top1_forgives_only_the_mirrored_class():
    names = ["wave left hand", "wave right hand", "clap", "point with right hand"]
    assert mirror_classes(names) == [1, 0, 2, 3]  # "point with left hand" is not in the set: no twin
    scores = torch.eye(4)[[1, 0, 0, 2, 3]]  # predictions: 1, 0, 0, 2, 3
    rows = clip_scores(list("abcde"), scores, torch.tensor([0, 0, 2, 3, 3]), k=1, class_names=names)
    assert [r["zero_shot_top1"] for r in rows] == [0, 1, 0, 0, 1]
    assert [r["zero_shot_top1_any_side"] for r in rows] == [1, 1, 0, 0, 1]  # only wave right for wave left
    assert "zero_shot_top1_any_side" not in clip_scores(["a"], scores[:1], torch.tensor([0]), k=1,
                                                        class_names=["clap", "bow", "jump", "squat"])[0]
