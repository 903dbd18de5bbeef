"""ski-lvlm eval compare: is arm B better than arm A? Mean difference, bootstrap CI and permutation p per metric.

    ski-lvlm eval compare --a vifi=runs/abl/seed0/zs#vifi runs/abl/seed1/zs#vifi \\
        --b ski=runs/abl/seed0/zs#ski runs/abl/seed1/zs#ski --out runs/abl/compare_zs
    ski-lvlm eval compare --a p0=runs/abl/p0_seed0/captions runs/abl/p0_seed1/captions \\
        --b p05=runs/abl/p05_seed0/captions runs/abl/p05_seed1/captions --out runs/abl/compare_lvlm

Each arm is ``NAME=RUN [RUN ...]``, one RUN per seed, all evaluated on the same clips. A RUN is
(``ski_lvlm.metrics.scores``):

* a ``scores.jsonl`` file, or a folder holding one (lines ``{"clip": ID, METRIC: VALUE, ...}``);
* ``FOLDER#LABEL``: the ``scores_<LABEL>.jsonl`` that ``ski-lvlm eval zero-shot`` writes per ``--model``;
* an ``eval captions`` output folder: its ``predictions.jsonl`` is scored per clip (caption action / side /
  tempo, closed QA per type) with the ``class_phrases.json`` its results.json names (or ``--phrases``).

A run's seed is the ``seed`` field of its score lines, else the ``seedN`` its path names. When both arms
hold the same seeds the runs are paired by seed. The statistics are described in
``ski_lvlm.metrics.compare``: the CI resamples clips (one draw for all runs) and seeds; ``p (clips)``
relabels the arms clip by clip (do these runs differ?), ``p (seeds)`` run by run (valid with seed spread,
but with 5 seed pairs never below 0.0625). Read the CI for a claim.

Writes ``OUT/compare.json`` and ``OUT/compare.md`` (atomically). Bad input (an arm without runs, an
unreadable score file, arms without a common clip) exits with 2 and names the file or arm.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ski_lvlm.utils.errors import UserError, cli_entry

PROG = "ski-lvlm eval compare"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Compare two groups of runs (several seeds each, evaluated on the same clips) per metric: "
                    "means, the difference B - A with a bootstrap CI (clips and seeds resampled) and two-sided "
                    "permutation p-values (clip level, seed level). Writes OUT/compare.json and OUT/compare.md.",
        epilog="RUN: a scores.jsonl file or a folder with one; FOLDER#LABEL for eval zero-shot's "
               "scores_<LABEL>.jsonl; an eval captions output folder. Example: ski-lvlm eval compare "
               "--a vifi=runs/s0/zs#vifi runs/s1/zs#vifi --b ski=runs/s0/zs#ski runs/s1/zs#ski --out runs/cmp")
    p.add_argument("--a", nargs="+", required=True, metavar=("NAME=RUN", "RUN"),
                   help="the baseline arm: NAME=RUN followed by its other runs (one per seed)")
    p.add_argument("--b", nargs="+", required=True, metavar=("NAME=RUN", "RUN"),
                   help="the arm compared with it (the difference is B - A)")
    p.add_argument("--out", required=True, help="output folder for compare.json and compare.md")
    p.add_argument("--metric", action="append", default=None,
                   help="compare only this metric (repeatable; default: every metric all runs score)")
    p.add_argument("--phrases", default=None,
                   help="class_phrases.json for caption-eval folders (default: the one their results.json names)")
    p.add_argument("--n-boot", type=int, default=5000, help="bootstrap replicates (default 5000)")
    p.add_argument("--n-perm", type=int, default=5000, help="permutation relabellings (default 5000)")
    p.add_argument("--confidence", type=float, default=0.95, help="CI level (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the resampling (default 0)")
    p.add_argument("--fixed-seeds", action="store_true",
                   help="resample clips only, holding the runs fixed (default: resample runs/seed pairs too)")
    return p


def _arm(tokens: list[str], flag: str, default_name: str) -> tuple[str, list[str]]:
    """``NAME=RUN RUN ...`` -> (name, runs); a first token without ``NAME=`` keeps the default name."""
    first = tokens[0]
    name, runs = default_name, list(tokens)
    if "=" in first and not Path(first).exists():
        name, runs[0] = first.split("=", 1)
        if not name or not runs[0]:
            raise UserError(f"{flag} {first!r}: expected NAME=RUN")
    return name, runs


@cli_entry(PROG)
def main(argv: list[str] | None = None) -> int:
    from ski_lvlm.metrics.compare import compare_markdown, compare_runs
    from ski_lvlm.metrics.scores import load_run
    from ski_lvlm.utils.io import atomic_write_json, atomic_write_text, check_writable_parent

    args = build_parser().parse_args(argv)
    problems = check_writable_parent(args.out)
    if args.n_boot < 100 or args.n_perm < 100:
        problems.append("--n-boot and --n-perm: must be >= 100")
    if not 0.5 <= args.confidence < 1:
        problems.append("--confidence: must be in [0.5, 1)")
    if problems:
        raise UserError("; ".join(problems))
    name_a, specs_a = _arm(args.a, "--a", "A")
    name_b, specs_b = _arm(args.b, "--b", "B")
    if name_a == name_b:
        raise UserError(f"--a and --b have the same name {name_a!r}")
    arms = []
    for name, specs in ((name_a, specs_a), (name_b, specs_b)):
        runs = []
        for spec in specs:
            try:
                runs.append(load_run(spec, phrases=args.phrases))
            except ValueError as e:
                raise UserError(f"arm {name}: {e}") from None
        arms.append(runs)
    try:
        res = compare_runs(arms[0], arms[1], names=(name_a, name_b), metrics=args.metric, n_boot=args.n_boot,
                           n_perm=args.n_perm, confidence=args.confidence, seed=args.seed,
                           resample_seeds=not args.fixed_seeds)
    except ValueError as e:
        raise UserError(str(e)) from None
    out = Path(args.out)
    md = compare_markdown(res)
    atomic_write_json(out / "compare.json", res)
    atomic_write_text(out / "compare.md", md)
    print(md)
    print(f"{PROG}: wrote {out / 'compare.json'}, {out / 'compare.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
