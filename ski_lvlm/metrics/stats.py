"""Bootstrap confidence intervals for per-item scores (judge scores, QA accuracy, caption metrics).

LLM-judge means over a few hundred items move by several points between runs and judges; a confidence
interval next to each number says how much of a difference is noise. Percentile bootstrap over items,
seeded so a report is reproducible.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["bootstrap_ci", "mean_with_ci"]


def bootstrap_ci(values: Sequence[float] | np.ndarray, n_boot: int = 1000, confidence: float = 0.95,
                 seed: int = 0, chunk: int = 256) -> tuple[float, float]:
    """Percentile-bootstrap CI of the mean of ``values`` (resampling items with replacement).

    Returns ``(nan, nan)`` for an empty input and ``(v, v)`` for a single item.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, chunk):  # bounded memory: [chunk, n] indices at a time
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        means[start:stop] = x[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def mean_with_ci(values: Sequence[float] | np.ndarray, scale: float = 1.0, n_boot: int = 1000,
                 confidence: float = 0.95, seed: int = 0) -> dict:
    """``{"mean", "ci_low", "ci_high", "n", "confidence"}`` of ``values * scale``."""
    x = np.asarray(values, dtype=np.float64).ravel() * scale
    lo, hi = bootstrap_ci(x, n_boot=n_boot, confidence=confidence, seed=seed)
    return {
        "mean": float(x.mean()) if x.size else float("nan"),
        "ci_low": lo,
        "ci_high": hi,
        "n": int(x.size),
        "confidence": confidence,
    }
