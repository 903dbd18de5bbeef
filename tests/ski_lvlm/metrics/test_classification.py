"""Closed-set classification scores (zero-shot evaluation and the recipes' validation share them)."""

import pytest
import torch

from ski_lvlm.metrics.classification import classification_metrics, clip_scores


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
