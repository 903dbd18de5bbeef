"""Benchmark: ``ski_lvlm.metrics.captions`` vs. pycocoevalcap on BLEU-1..4, ROUGE-L and CIDEr-D.

    .venv/bin/python scripts/bench/caption_metrics.py                     # 5,000 generated items
    .venv/bin/python scripts/bench/caption_metrics.py --items 20000 --repeats 3 --json out.json

Both sides get the same already-tokenised input (tokenisation is not timed: coco's is a Java
subprocess, ours is :func:`ski_lvlm.metrics.tokenize.ptb_tokenize`). METEOR is left out on both sides
(both run the same METEOR 1.5 jar). Runs are interleaved (ours, coco, ours, ...) so machine load hits
both alike; the script prints per-metric wall-clock medians, the total CPU time (less sensitive to
other processes on a shared machine), the ratio coco/ours (target >= 10x) and the
largest absolute difference over corpus and per-item scores (target <= 1e-6).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import numpy as np

from ski_lvlm.metrics.captions import _Split, bleu_scores, cider_d_scores, rouge_l_scores
from ski_lvlm.metrics.tokenize import ptb_tokenize

_SUBJ = ["a person", "the man", "a woman", "someone", "the person", "a young girl", "the boy", "he", "she"]
_VERB = ["opens", "closes", "holds", "picks up", "puts down", "is holding", "is eating", "drinks from", "takes",
         "throws", "looks at", "walks to", "sits on", "is cleaning", "grabs", "washes", "is tidying", "fixes",
         "plays with", "turns on", "turns off", "pours", "reads", "watches", "laughs at", "smiles at"]
_OBJ = ["the door", "a cup", "a glass of water", "the laptop", "a book", "the sandwich", "a broom", "the t-shirt",
        "a phone", "a pair of shoes", "two pillows", "some apples", "a towel", "the light", "the refrigerator",
        "a bag", "the window", "the medicine", "a box", "the dog's bowl", "some clothes", "the vacuum", "the tv",
        "a blanket", "the mirror", "a camera", "the stove", "a chair", "the table", "a picture"]
_PLACE = ["in the kitchen", "in the living room", "at the table", "on the sofa", "near the window", "in the bedroom",
          "in the hallway", "by the door", "in the garage", "in the bathroom", "at home", "on the stairs"]
_ADV = ["quickly", "slowly", "then", "carefully", "again", "twice", "finally", "afterwards", "while smiling"]


def _sentence(rng: random.Random) -> str:
    s = [rng.choice(_SUBJ)] + ([rng.choice(_ADV)] if rng.random() < 0.3 else [])
    s += [rng.choice(_VERB), rng.choice(_OBJ)] + ([rng.choice(_PLACE)] if rng.random() < 0.6 else [])
    return " ".join(s)


def _caption(rng: random.Random) -> str:
    text = ". ".join(_sentence(rng).capitalize() for _ in range(rng.choice([1, 1, 2, 2, 3]))) + "."
    return ptb_tokenize(text)


def make_corpus(n: int, refs: tuple[int, int], seed: int) -> tuple[list[str], list[list[str]]]:
    """Tokenised candidates and references: Charades-like, 1-3 sentences, near-copies mixed in."""
    rng = random.Random(seed)
    cands, all_refs = [], []
    for _ in range(n):
        rs = [_caption(rng) for _ in range(rng.randint(*refs))]
        if rng.random() < 0.3:
            words = rs[0].split()
            words[rng.randrange(len(words))] = rng.choice(["the", "a", "person", "cup"])
            cands.append(" ".join(words))
        else:
            cands.append(_caption(rng))
        all_refs.append(rs)
    cands[0] = ""  # an empty candidate, as real generations sometimes are
    return cands, all_refs


def run_ours(cands: list[str], refs: list[list[str]]) -> tuple[dict, dict]:
    t = {}
    c0, t0 = time.process_time(), time.perf_counter()
    split = _Split(cands, refs)  # shared n-gram table (part of BLEU's and CIDEr-D's cost)
    bleu, bleu_items = bleu_scores(cands, refs, _split=split)
    t1 = time.perf_counter()
    cider, cider_items = cider_d_scores(cands, refs, _split=split)
    t2 = time.perf_counter()
    rouge, rouge_items = rouge_l_scores(cands, refs)
    c3, t3 = time.process_time(), time.perf_counter()
    t.update(bleu=t1 - t0, cider=t2 - t1, rouge=t3 - t2, total=t3 - t0, total_cpu=c3 - c0)
    return t, {"bleu": (np.array(bleu), bleu_items), "cider": (cider, cider_items), "rouge": (rouge, rouge_items)}


def run_coco(cands: list[str], refs: list[list[str]]) -> tuple[dict, dict]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    res = {i: [c] for i, c in enumerate(cands)}
    gts = {i: r for i, r in enumerate(refs)}
    t = {}
    c0, t0 = time.process_time(), time.perf_counter()
    bleu, bleu_items = Bleu(4).compute_score(gts, res, verbose=0)
    t1 = time.perf_counter()
    cider, cider_items = Cider().compute_score(gts, res)
    t2 = time.perf_counter()
    rouge, rouge_items = Rouge().compute_score(gts, res)
    c3, t3 = time.process_time(), time.perf_counter()
    t.update(bleu=t1 - t0, cider=t2 - t1, rouge=t3 - t2, total=t3 - t0, total_cpu=c3 - c0)
    return t, {"bleu": (np.array(bleu), np.array(bleu_items).T), "cider": (cider, np.asarray(cider_items)),
               "rouge": (rouge, np.asarray(rouge_items))}


def max_abs_diff(a: dict, b: dict) -> dict:
    out = {}
    for k in a:
        corpus = float(np.max(np.abs(np.asarray(a[k][0]) - np.asarray(b[k][0]))))
        items = float(np.max(np.abs(a[k][1] - b[k][1])))
        out[k] = {"corpus": corpus, "per_item": items}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=5000, help="corpus size")
    p.add_argument("--refs", type=int, nargs=2, default=[3, 7], metavar=("MIN", "MAX"), help="references per item")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timing repeats (medians reported)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = p.parse_args(argv)

    cands, refs = make_corpus(args.items, tuple(args.refs), args.seed)
    n_tok = sum(len(c.split()) for c in cands) + sum(len(r.split()) for rs in refs for r in rs)
    print(f"corpus: {len(cands)} items, {sum(map(len, refs))} references, {n_tok} tokens")
    run_ours(cands[:50], refs[:50])  # warm-up (imports, numpy first-call costs)
    ours_t, coco_t = [], []
    for _ in range(args.repeats):
        t, ours = run_ours(cands, refs)
        ours_t.append(t)
        t, coco = run_coco(cands, refs)
        coco_t.append(t)
    med = {side: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
           for side, runs in (("ours", ours_t), ("pycocoevalcap", coco_t))}
    diff = max_abs_diff(ours, coco)
    print(f"{'metric':<8} {'ours (s)':>10} {'coco (s)':>10} {'speed-up':>9}")
    for k in ("bleu", "cider", "rouge", "total", "total_cpu"):
        o, c = med["ours"][k], med["pycocoevalcap"][k]
        print(f"{k:<8} {o:>10.3f} {c:>10.3f} {c / o:>8.1f}x")
    worst = max(max(d.values()) for d in diff.values())
    print("max |ours - coco|: " + ", ".join(f"{k} {d['corpus']:.1e} (items {d['per_item']:.1e})" for k, d in diff.items()))
    print(f"scores: BLEU-4 {ours['bleu'][0][3]:.4f}  ROUGE-L {ours['rouge'][0]:.4f}  CIDEr-D {ours['cider'][0]:.4f}")
    ratio = med["pycocoevalcap"]["total"] / med["ours"]["total"]
    ratio_cpu = med["pycocoevalcap"]["total_cpu"] / med["ours"]["total_cpu"]
    print(f"total speed-up {ratio:.1f}x wall-clock, {ratio_cpu:.1f}x CPU time (target >= 10x); "
          f"max abs difference {worst:.1e} (target <= 1e-6)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"items": args.items, "repeats": args.repeats, "median_s": med, "speedup": ratio,
                       "speedup_cpu": ratio_cpu,
                       "max_abs_diff": diff}, f, indent=2)
    return 0 if worst <= 1e-6 else 1


if __name__ == "__main__":
    raise SystemExit(main())
