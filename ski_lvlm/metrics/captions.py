"""Caption metrics with coco-caption's conventions: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D.

Why not just call ``pycocoevalcap``? It needs Java for tokenisation, is slow (CIDEr-D and ROUGE-L are
pure-Python loops) and asserts on anything unexpected. This module computes the same numbers natively:

* **BLEU-1..4**: corpus-level (clipped n-gram counts and lengths summed over the corpus before the
  geometric mean), "closest" effective reference length (ties go to the shorter reference), the same
  ``1e-9``/``1e-15`` smoothing as coco's ``bleu_scorer`` so a zero n-gram match gives ~0, not NaN.
  Per-item BLEU uses the same formula on one item.
* **ROUGE-L**: LCS-based F-measure with beta = 1.2, where precision and recall are each maximised over
  the references (coco's ``Rouge``); tokens come from ``split(" ")`` as in coco. Mean over items.
* **CIDEr-D**: n = 1..4 tf-idf vectors, document frequency from the *references of the evaluated
  corpus*, idf = log(#items) - log(max(1, df)), candidate weights clipped by reference weights, a
  Gaussian length penalty with sigma = 6 (lengths counted as coco does, in bigrams), mean over n and
  references, x10. Mean over items.
* **METEOR**: METEOR 1.5 through the jar in the pycocoevalcap wheel (``java -jar meteor-1.5.jar - -
  -stdio -l en -norm``, the coco-caption command; :mod:`ski_lvlm.metrics.meteor`) when Java and the jar exist. Otherwise METEOR is
  reported as ``None`` with the reason; no approximation is ever mixed in.

All scores are on coco's scale (BLEU/METEOR/ROUGE-L in [0, 1], CIDEr-D in [0, 10]); papers usually
print them x100. BLEU and CIDEr-D are vectorised with numpy over integer n-gram ids; ROUGE-L uses a
bit-parallel LCS. ``scripts/bench/caption_metrics.py`` compares speed and scores with pycocoevalcap.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterable, Mapping, Sequence

import numpy as np

from ski_lvlm.metrics.meteor import MeteorJava, meteor_available
from ski_lvlm.metrics.tokenize import ptb_tokenize, ptb_tokenize_java

__all__ = [
    "compute_caption_metrics",
    "bleu_scores",
    "rouge_l_scores",
    "cider_d_scores",
    "METRIC_NAMES",
    "CAPTION_METRICS",
]

METRIC_NAMES = ("bleu", "meteor", "rouge", "cider")
# The score keys of compute_caption_metrics()["scores"], in the order tables print them.
CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")
_SMALL, _TINY = 1e-9, 1e-15  # coco bleu_scorer smoothing constants


# --------------------------------------------------------------------------------------------------
# n-gram counting shared by BLEU and CIDEr-D
# --------------------------------------------------------------------------------------------------
class _NgramTable:
    """Sparse n-gram counts of a list of whitespace-tokenised sentences, n = 1..max_n.

    Every distinct n-gram of the corpus gets an integer id (``order[g]`` is its n). The counts are
    stored as parallel arrays ``sent, gram, count`` sorted by (sent, gram).
    """

    def __init__(self, sentences: Sequence[str], max_n: int = 4):
        split = [s.split() for s in sentences]
        lengths = np.fromiter(map(len, split), dtype=np.int64, count=len(split))
        words = list(itertools.chain.from_iterable(split))
        vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
        self.lengths = lengths  # [S]
        tok = np.fromiter(map(vocab.__getitem__, words), dtype=np.int64, count=len(words))  # [T] token ids
        sent = np.repeat(np.arange(len(sentences), dtype=np.int64), lengths)  # [T]
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(sentences) else np.zeros(0, np.int64)
        pos = np.arange(len(tok), dtype=np.int64) - np.repeat(starts, lengths)  # position inside sentence
        left = lengths[sent] - pos  # tokens from here to the sentence end (>= 1)
        v = max(len(vocab), 1)

        sents, grams, orders = [], [], []
        ids = tok.copy()  # id of the n-gram starting at each position (valid where left >= n)
        offset = 0
        n_ids = v
        for n in range(1, max_n + 1):
            if n > 1:
                valid = left >= n
                idx = np.nonzero(valid)[0]
                key = ids[idx] * v + tok[idx + n - 1]  # (n-1)-gram id, next token -> n-gram
                uniq, inv = _factorize(key)
                ids = np.full(len(tok), -1, dtype=np.int64)
                ids[idx] = inv
                n_ids = len(uniq)
                here = idx
                local = inv
            else:
                here = np.arange(len(tok))
                local = tok
            sents.append(sent[here])
            grams.append(local + offset)
            orders.append(np.full(n_ids, n, dtype=np.int64))
            offset += n_ids
        self.n_grams = offset
        self.order = np.concatenate(orders) if orders else np.zeros(0, np.int64)  # [G]
        all_sent = np.concatenate(sents)
        all_gram = np.concatenate(grams)
        key, count = np.unique(all_sent * self.n_grams + all_gram, return_counts=True)
        self.sent = key // self.n_grams
        self.gram = key % self.n_grams
        self.count = count


def _factorize(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and, per element, the index of its value (order of ids does not matter)."""
    try:
        return np.unique(key, return_inverse=True, sorted=False)  # hash-based, numpy >= 2.3
    except TypeError:
        return np.unique(key, return_inverse=True)


def _prepare_lists(candidates: Sequence[str], references: Sequence[Sequence[str]]):
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
    n_refs = np.array([len(r) for r in references], dtype=np.int64)
    if len(n_refs) and n_refs.min() < 1:
        raise ValueError(f"item {int(np.argmin(n_refs))} has no reference")
    ref_item = np.repeat(np.arange(len(references), dtype=np.int64), n_refs)
    flat_refs = [r for rs in references for r in rs]
    table = _NgramTable(list(candidates) + flat_refs)
    return table, n_refs, ref_item


def _sorted_lookup(sorted_keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``query`` in ``sorted_keys`` and whether each was found."""
    pos = np.searchsorted(sorted_keys, query)
    pos_c = np.minimum(pos, max(len(sorted_keys) - 1, 0))
    found = (pos < len(sorted_keys)) & (sorted_keys[pos_c] == query) if len(sorted_keys) else np.zeros(len(query), bool)
    return pos_c, found


class _Split:
    """The n-gram table split into the candidate part and the per-item reference part."""

    def __init__(self, candidates: Sequence[str], references: Sequence[Sequence[str]]):
        t, n_refs, ref_item = _prepare_lists(candidates, references)
        n_items = len(candidates)
        self.t, self.n_items, self.n_refs, self.ref_item = t, n_items, n_refs, ref_item
        g = t.n_grams
        is_c = t.sent < n_items
        # candidate entries: item = sentence index; key sorted because (sent, gram) is sorted
        self.c_item, self.c_gram, self.c_count = t.sent[is_c], t.gram[is_c], t.count[is_c]
        self.c_key = self.c_item * g + self.c_gram
        # reference entries: sentence index r (0-based among references) and its item
        self.r_sent = t.sent[~is_c] - n_items
        self.r_gram, self.r_count = t.gram[~is_c], t.count[~is_c]
        self.r_item = ref_item[self.r_sent]
        self.c_len = t.lengths[:n_items]
        self.r_len = t.lengths[n_items:]
        # distinct (item, gram) pairs among references and the max count over an item's references
        span = int(self.r_count.max(initial=0)) + 1
        packed = np.sort((self.r_item * g + self.r_gram) * span + self.r_count)  # sorted by (key, count)
        key = packed // span
        last = np.ones(len(key), dtype=bool)  # the last entry of each key holds its max count
        last[:-1] = key[1:] != key[:-1]
        self.ir_key = key[last]
        self.ir_max = packed[last] % span


# --------------------------------------------------------------------------------------------------
# BLEU
# --------------------------------------------------------------------------------------------------
def bleu_scores(candidates: Sequence[str], references: Sequence[Sequence[str]], n: int = 4,
                _split: _Split | None = None) -> tuple[list[float], np.ndarray]:
    """Corpus BLEU-1..n and per-item BLEU ``[N, n]`` on tokenised, space-joined sentences (coco "closest")."""
    if n > 4:
        raise ValueError("BLEU is computed up to n = 4")
    sp = _split or _Split(candidates, references)
    t = sp.t
    n_items = sp.n_items
    # clipped matches: min(candidate count, max count in any reference of the item)
    pos, found = _sorted_lookup(sp.ir_key, sp.c_key)
    clipped = np.where(found, np.minimum(sp.c_count, sp.ir_max[pos]), 0)
    order = t.order[sp.c_gram]
    correct = np.bincount(sp.c_item * 4 + order - 1, weights=clipped, minlength=n_items * 4)
    correct = correct.reshape(n_items, 4)[:, :n]  # [N, n]
    guess = np.maximum(0, sp.c_len[:, None] - np.arange(n)[None, :]).astype(np.float64)  # [N, n]
    # closest reference length, ties to the shorter one
    if n_items:
        big = int(max(sp.r_len.max(initial=0), sp.c_len.max(initial=0))) + 1
        closeness = np.abs(sp.r_len - sp.c_len[sp.ref_item]) * big + sp.r_len
        starts = np.concatenate([[0], np.cumsum(sp.n_refs)[:-1]])
        reflen = np.minimum.reduceat(closeness, starts) % big
    else:
        reflen = np.zeros(0, np.int64)

    # per item, in coco's operation order
    per = np.empty((n_items, n))
    prod = np.ones(n_items)
    for k in range(n):
        prod = prod * ((correct[:, k] + _TINY) / (guess[:, k] + _SMALL))
        per[:, k] = prod ** (1.0 / (k + 1))
    ratio = (sp.c_len + _TINY) / (reflen + _SMALL)
    short = ratio < 1
    per[short] *= np.exp(1 - 1 / ratio[short])[:, None]

    # corpus
    tot_correct = correct.sum(axis=0)
    tot_guess = guess.sum(axis=0)
    testlen, total_reflen = int(sp.c_len.sum()), int(reflen.sum())
    corpus = []
    b = 1.0
    for k in range(n):
        b *= float(tot_correct[k] + _TINY) / (float(tot_guess[k]) + _SMALL)
        corpus.append(b ** (1.0 / (k + 1)))
    r = (testlen + _TINY) / (total_reflen + _SMALL)
    if r < 1:
        corpus = [c * math.exp(1 - 1 / r) for c in corpus]
    return corpus, per


# --------------------------------------------------------------------------------------------------
# CIDEr-D
# --------------------------------------------------------------------------------------------------
def cider_d_scores(candidates: Sequence[str], references: Sequence[Sequence[str]], sigma: float = 6.0,
                   _split: _Split | None = None) -> tuple[float, np.ndarray]:
    """CIDEr-D (coco-caption's ``Cider``): corpus mean and per-item scores ``[N]``, on the 0-10 scale."""
    sp = _split or _Split(candidates, references)
    t = sp.t
    n_items = sp.n_items
    if n_items == 0:
        return float("nan"), np.zeros(0)
    df = np.bincount(sp.ir_key % t.n_grams, minlength=t.n_grams).astype(np.float64)  # [G] items per gram
    log_n = np.log(float(n_items))
    idf = log_n - np.log(np.maximum(1.0, df))  # [G]
    w_c = sp.c_count * idf[sp.c_gram]
    w_r = sp.r_count * idf[sp.r_gram]
    o_c = t.order[sp.c_gram] - 1
    o_r = t.order[sp.r_gram] - 1
    n_ref_sent = len(sp.r_len)
    norm_c = np.sqrt(np.bincount(sp.c_item * 4 + o_c, weights=w_c**2, minlength=n_items * 4)).reshape(-1, 4)
    norm_r = np.sqrt(np.bincount(sp.r_sent * 4 + o_r, weights=w_r**2, minlength=n_ref_sent * 4)).reshape(-1, 4)
    # clipped dot product over the n-grams a reference shares with its item's candidate
    pos, found = _sorted_lookup(sp.c_key, sp.r_item * t.n_grams + sp.r_gram)
    contrib = np.where(found, np.minimum(w_c[pos], w_r) * w_r, 0.0)
    dot = np.bincount(sp.r_sent * 4 + o_r, weights=contrib, minlength=n_ref_sent * 4).reshape(-1, 4)
    denom = norm_c[sp.ref_item] * norm_r  # [R, 4]
    ok = denom != 0
    val = np.where(ok, dot / np.where(ok, denom, 1.0), dot)
    # coco counts the length in bigrams
    len_c = np.maximum(sp.c_len - 1, 0)
    len_r = np.maximum(sp.r_len - 1, 0)
    delta = (len_c[sp.ref_item] - len_r).astype(np.float64)
    val = val * np.exp(-(delta**2) / (2 * sigma**2))[:, None]
    per_ref = val.mean(axis=1)  # mean over n
    summed = np.bincount(sp.ref_item, weights=per_ref, minlength=n_items)
    scores = summed / sp.n_refs * 10.0
    return float(np.mean(scores)), scores


# --------------------------------------------------------------------------------------------------
# ROUGE-L
# --------------------------------------------------------------------------------------------------
def _lcs_length(cand_masks: dict[str, int], m: int, ref_tokens: Iterable[str]) -> int:
    """LCS length by the bit-parallel recurrence (Allison-Dix / Hyyro): O(len(ref)) big-int steps."""
    full = (1 << m) - 1
    v = full
    for tok in ref_tokens:
        u = v & cand_masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return m - v.bit_count()


def rouge_l_scores(candidates: Sequence[str], references: Sequence[Sequence[str]],
                   beta: float = 1.2) -> tuple[float, np.ndarray]:
    """ROUGE-L F (coco's ``Rouge``): mean and per-item scores ``[N]``."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
    scores = np.zeros(len(candidates))
    b2 = beta**2
    for i, (cand, refs) in enumerate(zip(candidates, references)):
        if not refs:
            raise ValueError(f"item {i} has no reference")
        ct = cand.split(" ")
        masks: dict[str, int] = {}
        for j, tok in enumerate(ct):
            masks[tok] = masks.get(tok, 0) | (1 << j)
        p_max = r_max = 0.0
        for ref in refs:
            rt = ref.split(" ")
            lcs = _lcs_length(masks, len(ct), rt)
            p_max = max(p_max, lcs / len(ct))
            r_max = max(r_max, lcs / len(rt))
        if p_max != 0 and r_max != 0:
            scores[i] = ((1 + b2) * p_max * r_max) / (r_max + b2 * p_max)
    return (float(np.mean(scores)) if len(scores) else float("nan")), scores


# --------------------------------------------------------------------------------------------------
# front door
# --------------------------------------------------------------------------------------------------
def _as_lists(candidates: Mapping, references: Mapping) -> tuple[list, list[str], list[list[str]]]:
    missing = [k for k in candidates if k not in references]
    extra = [k for k in references if k not in candidates]
    if missing or extra:
        raise ValueError(
            f"candidates and references must have the same ids: {len(missing)} candidate ids without "
            f"references (e.g. {missing[:3]}), {len(extra)} reference ids without a candidate (e.g. {extra[:3]})"
        )
    keys = list(candidates)
    cands, refs = [], []
    for k in keys:
        c = candidates[k]
        if isinstance(c, str):
            c = [c]
        if len(c) != 1:
            raise ValueError(f"item {k!r}: expected exactly one candidate caption, got {len(c)}")
        r = references[k]
        if isinstance(r, str):
            r = [r]
        if len(r) == 0:
            raise ValueError(f"item {k!r}: no reference captions")
        if not isinstance(c[0], str) or not all(isinstance(x, str) for x in r):
            raise ValueError(f"item {k!r}: captions must be strings")
        cands.append(c[0])
        refs.append(list(r))
    return keys, cands, refs


def compute_caption_metrics(
    candidates: Mapping[object, Sequence[str] | str],
    references: Mapping[object, Sequence[str]],
    metrics: Sequence[str] = METRIC_NAMES,
    tokenize: bool | str = True,
    *,
    meteor: str = "auto",
    per_item: bool = True,
) -> dict:
    """BLEU-1..4 / METEOR / ROUGE-L / CIDEr-D of ``{id: [candidate]}`` against ``{id: [reference, ...]}``.

    Args:
        candidates: one generated caption per id (a bare string is accepted too).
        references: one or more reference captions per id; the id sets must be equal.
        metrics: any of ``"bleu", "meteor", "rouge", "cider"``.
        tokenize: ``True`` = the Python PTB tokenizer (coco's Java tokenizer reproduced), ``"java"`` =
            the real Java PTBTokenizer, ``False`` = captions are already tokenised (space-joined).
        meteor: ``"auto"`` = use the METEOR 1.5 jar when Java and the jar exist, otherwise report
            ``None``; ``"java"`` = require the jar (error otherwise); ``"off"`` = skip.
        per_item: include per-item scores.

    Returns:
        ``{"scores": {"BLEU-1".."BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D"}, "per_item": {id: {...}},
        "n_items": N, "tokenizer": str, "meteor": {"backend": str | None, "note": str}}``. Scores use
        coco's scale; ``scores["METEOR"]`` is ``None`` when METEOR did not run.
    """
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRIC_NAMES)}")
    if meteor not in ("auto", "java", "off"):
        raise ValueError(f"meteor must be 'auto', 'java' or 'off', not {meteor!r}")
    keys, cands, refs = _as_lists(candidates, references)
    if tokenize == "java":
        tok_name = "ptb-java (stanford-corenlp-3.4.1)"
        idx = {i: [c] + r for i, (c, r) in enumerate(zip(cands, refs))}
        out = ptb_tokenize_java(idx)
        cands = [out[i][0] for i in range(len(keys))]
        refs = [out[i][1:] for i in range(len(keys))]
    elif tokenize:
        tok_name = "ptb-python"
        cands = [ptb_tokenize(c) for c in cands]
        refs = [[ptb_tokenize(x) for x in r] for r in refs]
    else:
        tok_name = "none (pre-tokenised)"

    scores: dict[str, float | None] = {}
    items: dict[str, np.ndarray | list] = {}
    split = _Split(cands, refs) if ("bleu" in metrics or "cider" in metrics) else None
    if "bleu" in metrics:
        corpus, per = bleu_scores(cands, refs, 4, _split=split)
        for k in range(4):
            scores[f"BLEU-{k + 1}"] = corpus[k]
            items[f"BLEU-{k + 1}"] = per[:, k]
    meteor_info: dict[str, str | None] = {"backend": None, "note": "not requested"}
    if "meteor" in metrics and meteor != "off":
        ok, why = meteor_available()
        if not ok and meteor == "java":
            raise RuntimeError(f"METEOR requested but unavailable: {why}")
        if ok:
            with MeteorJava() as m:
                total, per_m = m.score(cands, refs)
            scores["METEOR"] = total
            items["METEOR"] = per_m
            meteor_info = {"backend": "meteor-1.5.jar (java, -l en -norm)", "note": "coco-caption METEOR"}
        else:
            scores["METEOR"] = None
            meteor_info = {"backend": None, "note": f"METEOR not computed: {why}"}
    elif "meteor" in metrics:
        scores["METEOR"] = None
        meteor_info = {"backend": None, "note": "METEOR switched off (meteor='off')"}
    if "rouge" in metrics:
        scores["ROUGE-L"], items["ROUGE-L"] = rouge_l_scores(cands, refs)
    if "cider" in metrics:
        scores["CIDEr-D"], items["CIDEr-D"] = cider_d_scores(cands, refs, _split=split)

    result: dict = {"scores": scores, "n_items": len(keys), "tokenizer": tok_name, "meteor": meteor_info}
    if per_item:
        result["per_item"] = {k: {name: float(v[i]) for name, v in items.items()} for i, k in enumerate(keys)}
    return result
