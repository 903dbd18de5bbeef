"""Closed-set classification scores of a score matrix: what zero-shot evaluation and the training
recipes' validation both report, so the two print the same numbers for the same scores."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["classification_metrics", "clip_scores", "mirror_classes"]


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> dict:
    """top-1, top-5, mean per-class accuracy, per-class accuracy and the confusion matrix.

    Args:
        scores: ``[N, C]`` (higher = more likely), labels ``[N]`` in ``0..C-1``.

    Raises:
        ValueError: no samples.
    """
    scores, labels = scores.float(), labels.long()
    n, c = scores.shape
    if n == 0:
        raise ValueError("no samples to evaluate")
    k = min(5, c)
    topk = scores.topk(k, dim=1).indices  # [N, k]
    pred = topk[:, 0]
    confusion = torch.zeros(c, c, dtype=torch.long)
    confusion.index_put_((labels, pred), torch.ones(n, dtype=torch.long), accumulate=True)
    support = confusion.sum(1)
    per_class = {name: (confusion[i, i].item() / support[i].item()) if support[i] else None
                 for i, name in enumerate(class_names)}
    seen = [v for v in per_class.values() if v is not None]
    return {
        "top1": (pred == labels).float().mean().item(),
        "top5": (topk == labels[:, None]).any(1).float().mean().item(),
        "top5_k": k,
        "mean_class_acc": float(np.mean(seen)),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "num_samples": n,
    }


def mirror_classes(class_names: list[str]) -> list[int]:
    """For each class, the index of the same action on the other side ("wave left hand" <-> "wave right hand"),
    or its own index when the set has no such twin."""
    swap = {"left": "right", "right": "left"}
    index = {n: i for i, n in enumerate(class_names)}
    return [index.get(" ".join(swap.get(w, w) for w in n.split()), i) for i, n in enumerate(class_names)]


def clip_scores(names: list[str], scores: torch.Tensor, labels: torch.Tensor, k: int,
                class_names: list[str] | None = None) -> list[dict]:
    """Per-clip 0/1 top-1 / top-k correctness (``ski_lvlm.metrics.scores`` rows), which eval compare pairs.

    With ``class_names`` that hold left/right twins, also ``zero_shot_top1_any_side``: the top-1 class is the
    right action, on either side. The two top-1 columns tell a model that misses the side (a view change
    mirrors the body) from one that misses the action.
    """
    topk = scores.float().topk(k, dim=1).indices  # [N, k]
    hit = topk == labels.long()[:, None]
    rows = [{"clip": name, "zero_shot_top1": int(h[0]), "zero_shot_top5": int(h.any())} for name, h in zip(names, hit)]
    mirror = mirror_classes(class_names) if class_names else []
    if any(m != i for i, m in enumerate(mirror)):
        for row, pred, label in zip(rows, topk[:, 0].tolist(), labels.long().tolist()):
            row["zero_shot_top1_any_side"] = int(pred in (label, mirror[label]))
    return rows
