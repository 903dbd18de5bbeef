"""Seeded percentile-bootstrap confidence intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ski_lvlm.metrics.stats import bootstrap_ci, mean_with_ci


def test_bootstrap_ci_is_seeded_and_brackets_the_mean() -> None:
    x = np.random.default_rng(1).integers(0, 6, size=300)
    a = bootstrap_ci(x, n_boot=500, seed=3)
    assert a == bootstrap_ci(x, n_boot=500, seed=3)
    assert a != bootstrap_ci(x, n_boot=500, seed=4)
    assert a[0] < x.mean() < a[1]
    # the normal approximation of the standard error gives about the same width
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert (a[1] - a[0]) == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_more_items_give_a_narrower_interval_and_chunking_is_invisible() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.normal(size=50), rng.normal(size=2000)
    w_small = np.diff(bootstrap_ci(small, n_boot=400))[0]
    w_large = np.diff(bootstrap_ci(large, n_boot=400))[0]
    assert w_large < w_small / 3
    assert bootstrap_ci(small, n_boot=300, chunk=7) == bootstrap_ci(small, n_boot=300, chunk=300)


def test_degenerate_inputs() -> None:
    assert bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0)
    assert bootstrap_ci([2.0]) == (2.0, 2.0)
    lo, hi = bootstrap_ci([])
    assert math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError):
        bootstrap_ci([1, 2], confidence=1.5)
    r = mean_with_ci([1, 2, 3, 4], scale=20)
    assert r["mean"] == 50.0 and r["n"] == 4 and r["ci_low"] <= 50 <= r["ci_high"]
