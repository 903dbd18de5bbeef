"""Two groups of runs, compared per metric: mean difference, bootstrap CI and permutation p-value.

A claim such as "skeleton induction improves video-only recognition" compares two arms (ViFi-CLIP vs SKI-VLM,
``p_inject 0`` vs ``0.5``), each trained with several seeds and evaluated on the same clips. Two things
make the numbers move without any real effect: which clips are in the test set, and which seed trained
the model. The report gives, per metric (per-clip scores, :mod:`ski_lvlm.metrics.scores`):

* ``mean_a``, ``mean_b``: the mean over an arm's runs of each run's mean over the common clips;
* ``diff = mean_b - mean_a`` and its percentile **bootstrap CI**;
* two two-sided **permutation p-values** for "the arm labels do not matter": clip by clip (``p_value``)
  and run by run (``p_seeds``).

Pairing. The arms are *paired* when both hold the same set of seeds (each once): run ``s`` of A and run
``s`` of B share their seed (initialisation, data order), so their per-clip differences are compared. One
run per arm is paired too (by clip). Otherwise (seeds unknown, different, repeated) the arms are
*unpaired* and the report says why.

Clips. Each metric uses the clips that every run of both arms scores (the intersection); the clips
dropped from each arm are counted. A metric that some run does not have at all is skipped with a note.

Bootstrap (``n_boot`` replicates, percentile interval). Each replicate draws the clips with replacement
**once, and uses that draw for every run of both arms**: the test clips are the same for all runs, so
a clip that is hard is hard for every seed, and drawing clips independently per seed would hide that
shared variation and give too narrow an interval. With ``resample_seeds`` (the default) the replicate
also draws the runs with replacement, seed *pairs* when paired (the same seeds for both arms) and each
arm's runs on their own when unpaired, because seed-to-seed variation is the other half of the noise
("differ by less than one sd over 4 seeds"). Without it the seeds are fixed strata and only clips are
resampled. Replicate ``b``: ``sum_s v_bs * sum_c w_bc * x_sc`` per arm with multinomial weights ``v``
(runs) and ``w`` (clips), so no ``[n_boot, seeds, clips]`` array is built.

Permutation tests (statistic ``mean_b - mean_a``, two-sided; ``n_perm`` random relabellings give
``p = (1 + #{|stat| >= |observed|}) / (1 + n_perm)``):

* ``p_value``, clip level. Paired: the arm labels are swapped independently in each (seed, clip) pair,
  i.e. each per-pair difference gets a random sign. Unpaired: within each clip the scores of all runs
  of both arms are shuffled between the arms (arm sizes kept). This asks whether *these trained runs*
  differ on these clips; it does not treat the seeds as a sample. When runs differ as a whole (one lucky
  seed) it rejects too often for a claim about the methods (a simulation with a seed sd of 5 points and
  no true difference: 23 % of p-values below 0.05).
* ``p_seeds``, run level (:func:`seed_permutation_pvalue`): whole runs change arms (per seed pair when
  paired), exactly when there are few relabellings. Valid with seed-to-seed spread, but coarse: with
  ``S`` seed pairs it cannot go below ``2 / 2^S`` (``p_seeds_min``; 5 pairs: 0.0625).

For a claim read the CI (it resamples seeds, and was slightly conservative in that simulation: 96 %
coverage with seed spread, 99 % without) and ``p_seeds``; ``p_value`` says the runs differ.

Randomness: one ``numpy.random.Generator`` per metric, seeded from ``seed`` and the metric's name, so a
metric's numbers do not change when other metrics are added.
"""

from __future__ import annotations

import itertools
import math
import zlib
from typing import Sequence

import numpy as np

from ski_lvlm.metrics.scores import RunScores

__all__ = ["pairing", "common_clips", "bootstrap_diff", "permutation_pvalue", "seed_permutation_pvalue",
           "compare_metric", "compare_runs", "compare_markdown", "compare_table_markdown"]

_CHUNK_ELEMENTS = 2_000_000  # bounded memory: about this many floats per array in a chunk


def pairing(a: Sequence[RunScores], b: Sequence[RunScores]) -> tuple[bool, str]:
    """Whether the arms pair up by seed, and a sentence saying how (or why not)."""
    if len(a) == 1 and len(b) == 1:
        return True, "one run per arm: paired clip by clip"
    sa, sb = [r.seed for r in a], [r.seed for r in b]
    if None in sa or None in sb:
        return False, "unpaired: some runs have no seed (a \"seed\" field in the score file, or seedN in the path)"
    if len(set(sa)) < len(sa) or len(set(sb)) < len(sb):
        return False, f"unpaired: a seed repeats within an arm (A: {sorted(sa)}, B: {sorted(sb)})"
    if set(sa) != set(sb):
        return False, f"unpaired: the arms have different seeds (A: {sorted(sa)}, B: {sorted(sb)})"
    return True, f"paired by seed ({', '.join(map(str, sorted(sa)))})"


def common_clips(a: Sequence[RunScores], b: Sequence[RunScores], metric: str) -> tuple[list[str], int, int]:
    """Clips every run of both arms scores for ``metric`` (sorted), and how many each arm's runs lose."""
    sets_a = [set(r.scores[metric]) for r in a]
    sets_b = [set(r.scores[metric]) for r in b]
    common = set.intersection(*sets_a, *sets_b)
    return sorted(common), len(set.union(*sets_a) - common), len(set.union(*sets_b) - common)


def _counts(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """``[rows, n]`` how often each of ``n`` items is drawn in ``n`` draws with replacement, per row."""
    idx = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]
    return np.bincount(idx.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)


def bootstrap_diff(xa: np.ndarray, xb: np.ndarray, *, paired: bool, rng: np.random.Generator, n_boot: int = 5000,
                   confidence: float = 0.95, resample_seeds: bool = True) -> tuple[float, float]:
    """Percentile CI of ``mean(xb) - mean(xa)`` for per-run x per-clip scores ``[runs, clips]`` (module doc).

    Paired arms must list their runs in the same seed order.
    """
    sa, n = xa.shape
    sb = xb.shape[0]
    if paired and sa != sb:
        raise ValueError(f"paired arms need as many runs in A as in B ({sa} != {sb})")
    stats = np.empty(n_boot)
    chunk = max(1, _CHUNK_ELEMENTS // max(n, sa, sb))
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        w = _counts(rng, k, n) / n  # clip weights, shared by every run of both arms
        if resample_seeds:
            va = _counts(rng, k, sa) / sa
            vb = va if paired else _counts(rng, k, sb) / sb
        else:
            va, vb = np.full((k, sa), 1 / sa), np.full((k, sb), 1 / sb)
        stats[start:start + k] = ((vb @ xb) * w).sum(1) - ((va @ xa) * w).sum(1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def permutation_pvalue(xa: np.ndarray, xb: np.ndarray, *, paired: bool, rng: np.random.Generator,
                       n_perm: int = 5000) -> float:
    """Two-sided permutation p-value of ``mean(xb) - mean(xa)`` (``[runs, clips]`` arrays; module doc)."""
    sa, n = xa.shape
    sb = xb.shape[0]
    observed = xb.mean() - xa.mean()
    if paired:
        d = (xb - xa).ravel()
        d = d[d != 0]  # a pair whose scores are equal gives 0 whichever way its labels go
        denom = sa * n

        def draw(k: int) -> np.ndarray:
            signs = rng.integers(0, 2, size=(k, d.size)) * 2.0 - 1.0
            return signs @ d / denom
    else:
        pool = np.vstack([xb, xa])
        pool = pool[:, (pool != pool[:1]).any(0)]  # a clip where all runs agree adds the same to both arms
        total, ones = pool.sum(), pool.sum(0).astype(np.int64)
        binary = bool(np.isin(pool, (0.0, 1.0)).all())

        def draw(k: int) -> np.ndarray:
            if binary:  # 0/1 scores: B's share of a clip's 1s is hypergeometric, no shuffle
                in_b = rng.hypergeometric(ones, sa + sb - ones, sb, size=(k, pool.shape[1])).sum(1)
                return in_b / (sb * n) - (total - in_b) / (sa * n)
            order = rng.random((k, sa + sb, pool.shape[1])).argsort(1)
            shuffled = np.take_along_axis(np.broadcast_to(pool, order.shape), order, axis=1)
            return shuffled[:, :sb].sum((1, 2)) / (sb * n) - shuffled[:, sb:].sum((1, 2)) / (sa * n)

    width = max(1, (d.size if paired else pool.size))
    chunk = max(1, _CHUNK_ELEMENTS // width)
    hits = 0
    tol = 1e-12 * max(1.0, abs(observed))
    for start in range(0, n_perm, chunk):
        k = min(chunk, n_perm - start)
        hits += int((np.abs(draw(k)) >= abs(observed) - tol).sum())
    return (1 + hits) / (1 + n_perm)


def seed_permutation_pvalue(xa: np.ndarray, xb: np.ndarray, *, paired: bool, rng: np.random.Generator,
                            n_perm: int = 5000) -> tuple[float | None, float | None]:
    """Two-sided permutation p-value that relabels whole runs, and the smallest p it can reach.

    Paired: each seed pair's two runs swap arms (all ``2^S`` relabellings when they are at most ``n_perm``);
    unpaired: the runs are split between the arms in every way (or ``n_perm`` random ways). This treats
    the seeds as the sample, so it stays valid when runs differ as a whole (a lucky seed), where the
    clip-level test does not; with few seeds it cannot reach small values (5 pairs: at best 2/32).
    ``(None, None)`` with fewer than two runs in an arm.
    """
    sa, sb = len(xa), len(xb)
    if sa < 2 or sb < 2:
        return None, None
    ma, mb = xa.mean(1), xb.mean(1)
    observed = abs(mb.mean() - ma.mean())
    tol = 1e-12 * max(1.0, observed)
    if paired:
        d = mb - ma
        total = 2 ** sa
        signs = (np.array(list(itertools.product((1.0, -1.0), repeat=sa))) if total <= n_perm
                 else rng.integers(0, 2, size=(n_perm, sa)) * 2.0 - 1.0)
        stats = np.abs(signs @ d) / sa
        smallest = 2 / total
    else:
        pool = np.concatenate([mb, ma])
        total = math.comb(sa + sb, sb)
        if total <= n_perm:
            in_b = np.zeros((total, sa + sb), dtype=bool)
            for i, chosen in enumerate(itertools.combinations(range(sa + sb), sb)):
                in_b[i, list(chosen)] = True
        else:
            in_b = rng.random((n_perm, sa + sb)).argsort(1) < sb
        stats = np.abs((in_b * pool).sum(1) / sb - (~in_b * pool).sum(1) / sa)
        smallest = (2 if sa == sb else 1) / total
    hits = int((stats >= observed - tol).sum())
    if total <= n_perm:  # exact: every relabelling, the observed one included
        return hits / total, smallest
    return (1 + hits) / (1 + len(stats)), smallest


def compare_metric(xa: np.ndarray, xb: np.ndarray, *, paired: bool, rng: np.random.Generator, n_boot: int = 5000,
                   n_perm: int = 5000, confidence: float = 0.95, resample_seeds: bool = True) -> dict:
    """Means, difference, CI and both p-values of one metric's ``[runs, clips]`` score arrays of arms A and B."""
    xa, xb = np.asarray(xa, dtype=np.float64), np.asarray(xb, dtype=np.float64)
    if xa.ndim != 2 or xb.ndim != 2 or xa.shape[1] != xb.shape[1] or xa.shape[1] == 0 or not len(xa) or not len(xb):
        raise ValueError(f"expected [runs, clips] arrays with the same clips, got {xa.shape} and {xb.shape}")
    run_a, run_b = xa.mean(1), xb.mean(1)
    lo, hi = bootstrap_diff(xa, xb, paired=paired, rng=rng, n_boot=n_boot, confidence=confidence,
                            resample_seeds=resample_seeds)
    p_seeds, p_seeds_min = seed_permutation_pvalue(xa, xb, paired=paired, rng=rng, n_perm=n_perm)
    return {
        "mean_a": float(run_a.mean()), "mean_b": float(run_b.mean()), "diff": float(run_b.mean() - run_a.mean()),
        "ci_low": lo, "ci_high": hi,
        "p_value": permutation_pvalue(xa, xb, paired=paired, rng=rng, n_perm=n_perm),
        "p_seeds": p_seeds, "p_seeds_min": p_seeds_min,
        "n_clips": int(xa.shape[1]), "n_runs_a": int(len(xa)), "n_runs_b": int(len(xb)),
        "run_means_a": run_a.tolist(), "run_means_b": run_b.tolist(),
        "sd_diff_over_seeds": float(np.std(run_b - run_a, ddof=1)) if paired and len(xa) > 1 else None,
        "percent": bool(((xa >= 0) & (xa <= 1)).all() and ((xb >= 0) & (xb <= 1)).all()),
    }


def compare_runs(a: Sequence[RunScores], b: Sequence[RunScores], *, names: tuple[str, str] = ("A", "B"),
                 metrics: Sequence[str] | None = None, n_boot: int = 5000, n_perm: int = 5000,
                 confidence: float = 0.95, seed: int = 0, resample_seeds: bool = True) -> dict:
    """Compare arm ``b`` against arm ``a`` on every metric (or ``metrics``) that all their runs score.

    Returns ``{"arms", "paired", "pairing", "settings", "metrics": {metric: compare_metric's dict +
    dropped_a/dropped_b}, "skipped": {metric: why}}``. ``ValueError`` (naming the arm and metric) when an
    arm has no runs, when two arms share no clip of a metric, or when no metric is left to compare.
    """
    for name, arm in zip(names, (a, b)):
        if not arm:
            raise ValueError(f"arm {name} has no runs")
    if not 0 < confidence < 1 or n_boot < 1 or n_perm < 1:
        raise ValueError("need 0 < confidence < 1, n_boot >= 1 and n_perm >= 1")
    paired, how = pairing(a, b)
    if paired:  # the same seed order in both arms, so row s of A and row s of B are a pair
        a = sorted(a, key=lambda r: (r.seed is None, r.seed))
        b = sorted(b, key=lambda r: (r.seed is None, r.seed))
    everything = sorted({m for r in (*a, *b) for m in r.scores})
    wanted = list(metrics) if metrics else everything
    out: dict = {"arms": {"a": {"name": names[0], "runs": [{"run": r.name, "seed": r.seed} for r in a]},
                          "b": {"name": names[1], "runs": [{"run": r.name, "seed": r.seed} for r in b]}},
                 "paired": paired, "pairing": how,
                 "settings": {"n_boot": n_boot, "n_perm": n_perm, "confidence": confidence, "seed": seed,
                              "resample_seeds": resample_seeds},
                 "metrics": {}, "skipped": {}}
    for metric in wanted:
        missing = [f"{names[0]}: {r.name}" for r in a if metric not in r.scores] + \
                  [f"{names[1]}: {r.name}" for r in b if metric not in r.scores]
        if missing:
            out["skipped"][metric] = "not scored by " + ("any run" if len(missing) == len(a) + len(b)
                                                          else "; ".join(missing))
            continue
        clips, dropped_a, dropped_b = common_clips(a, b, metric)
        if not clips:
            for name, arm in zip(names, (a, b)):
                if len(arm) > 1 and not set.intersection(*(set(r.scores[metric]) for r in arm)):
                    raise ValueError(f"arm {name}: its runs share no clip scored for {metric!r}")
            raise ValueError(f"arms {names[0]} and {names[1]} share no clip scored for {metric!r} "
                             "(were they evaluated on the same clips, with the same clip ids?)")
        xa = np.array([[r.scores[metric][c] for c in clips] for r in a])
        xb = np.array([[r.scores[metric][c] for c in clips] for r in b])
        rng = np.random.default_rng([seed, zlib.crc32(metric.encode())])
        res = compare_metric(xa, xb, paired=paired, rng=rng, n_boot=n_boot, n_perm=n_perm, confidence=confidence,
                             resample_seeds=resample_seeds)
        out["metrics"][metric] = {**res, "dropped_a": dropped_a, "dropped_b": dropped_b}
    if not out["metrics"]:
        why = "; ".join(f"{m}: {r}" for m, r in out["skipped"].items())
        raise ValueError(f"no metric is scored by every run of both arms ({why or 'no metrics'})")
    return out


def _fmt(v: float, percent: bool) -> str:
    return f"{100 * v:.1f}" if percent else f"{v:.3f}"


def _p(v: float | None) -> str:
    return "-" if v is None else "< 0.001" if v < 0.001 else f"{v:.3f}"


def compare_markdown(res: dict) -> str:
    """The comparison as a Markdown table (percentage points for metrics in [0, 1]) with its notes."""
    a, b = res["arms"]["a"]["name"], res["arms"]["b"]["name"]
    s = res["settings"]
    conf = f"{100 * s['confidence']:g} %"
    lines = [f"# {b} vs {a}", "",
             f"| metric | {a} | {b} | {b} - {a} | {conf} CI | p (clips) | p (seeds) | clips | runs {a}/{b} |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for metric, m in res["metrics"].items():
        pc = m["percent"]
        lines.append(f"| {metric}{' (%)' if pc else ''} | {_fmt(m['mean_a'], pc)} | {_fmt(m['mean_b'], pc)} | "
                     f"{'+' if m['diff'] >= 0 else ''}{_fmt(m['diff'], pc)} | "
                     f"[{_fmt(m['ci_low'], pc)}, {_fmt(m['ci_high'], pc)}] | {_p(m['p_value'])} | "
                     f"{_p(m['p_seeds'])} | {m['n_clips']} | {m['n_runs_a']}/{m['n_runs_b']} |")
    floors = sorted({m["p_seeds_min"] for m in res["metrics"].values() if m["p_seeds_min"] is not None})
    lines += ["", f"Runs: {res['pairing']}.",
              f"CI: percentile bootstrap, {s['n_boot']} replicates; each draws the clips with replacement once for "
              "all runs" + (", and the runs (seed pairs when paired)" if s["resample_seeds"] else
                            " (runs held fixed)") + ". "
              "p (clips): two-sided permutation test, " + ("arm labels swapped per seed-and-clip pair" if res["paired"]
                                                          else "scores shuffled between the arms within each clip")
              + "; it says whether these runs differ, not whether the methods do. "
              "p (seeds): whole runs change arms" + (f"; with these runs it cannot go below {floors[0]:.3g}"
                                                    if floors else " (needs two runs per arm)") + ". "
              f"{s['n_perm']} relabellings at most; random seed {s['seed']}."]
    dropped = [f"{m}: {v['dropped_a']} from {a}, {v['dropped_b']} from {b}"
               for m, v in res["metrics"].items() if v["dropped_a"] or v["dropped_b"]]
    if dropped:
        lines.append("Clips not scored by every run, left out: " + "; ".join(dropped) + ".")
    for metric, why in res["skipped"].items():
        lines.append(f"Skipped {metric}: {why}.")
    lines += ["", "Per-run means:", "", f"| metric | {a} | {b} |", "|---|---|---|"]
    for metric, m in res["metrics"].items():
        cells = [", ".join(_fmt(v, m["percent"]) for v in m[k]) for k in ("run_means_a", "run_means_b")]
        lines.append(f"| {metric} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def compare_table_markdown(entries: Sequence[tuple[str, dict]], metrics: Sequence[str] | None = None) -> str:
    """Many comparisons in one Markdown table: one row per (label, metric) of each ``compare_runs`` result.

    ``entries`` are ``(label, result)`` pairs, the label naming the setting (e.g. the protocol); ``metrics``
    keeps only these metrics (default: every metric of each result). Differences are B - A, in percentage
    points for metrics in [0, 1].
    """
    lines = ["| setting | metric | A | B | mean A | mean B | B - A | 95 % CI | p (clips) | p (seeds) | clips | runs |",
             "|---|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for label, res in entries:
        a, b = res["arms"]["a"]["name"], res["arms"]["b"]["name"]
        conf = res["settings"]["confidence"]
        for metric, m in res["metrics"].items():
            if metrics and metric not in metrics:
                continue
            pc = m["percent"]
            ci = f"[{_fmt(m['ci_low'], pc)}, {_fmt(m['ci_high'], pc)}]" + ("" if conf == 0.95 else f" ({100 * conf:g} %)")
            lines.append(f"| {label} | {metric}{' (%)' if pc else ''} | {a} | {b} | {_fmt(m['mean_a'], pc)} | "
                         f"{_fmt(m['mean_b'], pc)} | {'+' if m['diff'] >= 0 else ''}{_fmt(m['diff'], pc)} | {ci} | "
                         f"{_p(m['p_value'])} | {_p(m['p_seeds'])} | {m['n_clips']} | {m['n_runs_a']}/{m['n_runs_b']} |")
    return "\n".join(lines) + "\n"
