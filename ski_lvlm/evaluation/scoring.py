"""Scores of the caption / QA benchmark's finished predictions (aggregation, in lmms-eval's terms).

Caption metrics are corpus-level (coco conventions, :func:`ski_lvlm.metrics.captions.compute_caption_metrics`);
per-group numbers are the means of the per-item scores of that one overall evaluation (CIDEr-D document
frequencies from the whole test set), so tiny groups stay comparable. Grounding needs a phrase file
(:mod:`ski_lvlm.metrics.grounding`) and is n/a without one, never guessed. Open QA gets automatic string
scores (:func:`ski_lvlm.metrics.qa.qa_token_f1`) and, with a judge endpoint, the LLM judge; multiple choice
uses :func:`ski_lvlm.metrics.qa.mcq_accuracy`'s answer parsing.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from ski_lvlm.evaluation.sets import EvalItem
from ski_lvlm.metrics.qa import qa_token_f1
from ski_lvlm.utils.errors import UserError

__all__ = ["score_predictions"]


def _group_means(per_item: dict[str, dict], groups: dict[str, dict[str, str]], key: str) -> dict[str, dict]:
    by: dict[str, list[dict]] = defaultdict(list)
    for iid, scores in per_item.items():
        g = groups.get(iid, {}).get(key)
        if g is not None:
            by[g].append(scores)
    out = {}
    for g in sorted(by):
        rows = by[g]
        out[g] = {"n": len(rows)}
        for m in rows[0]:
            out[g][m] = sum(r[m] for r in rows) / len(rows)
    return out


def _grounding(caps: list[EvalItem], preds: dict[str, dict], phrases) -> dict:
    """Action/side/tempo accuracy (with phrases) and caption diversity (always) of finished captions.

    The truth of a clip: its ``action`` group when that is a class of the phrase file (Charades CSVs),
    else the class its references agree on; its tempo is the one its references agree on.
    """
    from ski_lvlm.metrics.grounding import caption_diversity, caption_grounding, out_of_vocabulary, reference_truth

    captions = [preds[it.id]["prediction"] or "" for it in caps]
    oov = out_of_vocabulary(captions, [r for it in caps for r in it.references])
    if phrases is None:
        return {**caption_diversity(captions), **oov, "phrases": None, "per_class": {},
                **{k: None for k in ("action_accuracy", "side_accuracy", "tempo_accuracy", "tempo_accuracy_all")},
                "note": "n/a: the eval set has no class_phrases.json (action, side and tempo accuracy need the "
                        "phrases that identify each class; give --phrases FILE)"}
    records = []
    for it, cap in zip(caps, captions):
        action, tempo = reference_truth(it.references, phrases)
        given = it.groups.get("action")
        records.append({"caption": cap, "action": given if given in phrases.classes else action, "tempo": tempo})
    return {**caption_grounding(records, phrases), **oov, "phrases": phrases.path}


def _closed_qa(qas: list[EvalItem], preds: dict[str, dict], em_f1: dict, phrases) -> dict:
    """Accuracy per closed question type, next to the token F1 of the same questions."""
    from ski_lvlm.metrics.grounding import closed_qa_accuracy

    if phrases is None:
        return {"per_type": {}, "accuracy": None,
                "note": "n/a: no class_phrases.json (question types and answer readers come from it)"}
    return closed_qa_accuracy([{"question": it.question, "prediction": preds[it.id]["prediction"],
                                "answer": it.references[0], "token_f1": em_f1[it.id][1]} for it in qas], phrases)


def score_predictions(items: Sequence[EvalItem], preds: dict[str, dict], *, meteor: str = "auto",
                      judge: dict | None = None, out: Path | None = None, phrases=None) -> dict:
    """Caption metrics (overall + per group), grounding, QA / MC scores and the error list of finished predictions.

    ``phrases``: a :class:`ski_lvlm.metrics.grounding.Phrases` (None: grounding scores are n/a).
    """
    from ski_lvlm.metrics.captions import compute_caption_metrics

    res: dict[str, Any] = {"n_items": len(items), "n_finished": sum(it.id in preds for it in items)}
    errors = [{"id": it.id, "video_id": it.video_id, "error": preds[it.id]["error"]}
              for it in items if it.id in preds and preds[it.id].get("error")]
    res["errors"] = errors
    res["n_errors"] = len(errors)

    def good(kind: str) -> list[EvalItem]:
        return [it for it in items if it.kind == kind and it.id in preds and not preds[it.id].get("error")]

    caps = good("caption")
    if caps:
        cand = {it.id: [preds[it.id]["prediction"] or ""] for it in caps}
        refs = {it.id: it.references for it in caps}
        m = compute_caption_metrics(cand, refs, meteor=meteor)
        groups = {it.id: it.groups for it in caps}
        keys = sorted({k for it in caps for k in it.groups})
        res["captions"] = {"n": len(caps), "scores": m["scores"], "tokenizer": m["tokenizer"], "meteor": m["meteor"],
                           "per_group": {k: _group_means(m["per_item"], groups, k) for k in keys},
                           "per_item": m["per_item"]}
        res["grounding"] = _grounding(caps, preds, phrases)
    qas = good("qa")
    if qas:
        em_f1 = {it.id: qa_token_f1(preds[it.id]["prediction"] or "", it.references[0]) for it in qas}
        n = len(qas)
        res["qa_open"] = {"n": n, "automatic": {
            "exact_match": 100 * sum(v[0] for v in em_f1.values()) / n,
            "token_f1": 100 * sum(v[1] for v in em_f1.values()) / n,
            "note": "automatic string scores (normalised exact match, SQuAD token F1), not the LLM judge"},
            "judge": None}
        res["qa_closed"] = _closed_qa(qas, preds, em_f1, phrases)
        if judge:
            res["qa_open"]["judge"] = _judge_qa(qas, preds, judge, out)
    mcs = good("mc")
    if mcs:
        from ski_lvlm.metrics.qa import mcq_accuracy

        recs = [{"id": it.id, "prediction": preds[it.id]["prediction"], "options": it.options,
                 "answer": it.references[0]} for it in mcs]
        try:
            res["mc"] = mcq_accuracy(recs)
        except ValueError as e:
            raise UserError(f"multiple choice: {e}") from None
    return res


def _judge_qa(qas: list[EvalItem], preds: dict[str, dict], judge: dict, out: Path | None) -> dict:
    from ski_lvlm.llm_client import ChatClient
    from ski_lvlm.metrics.judge import Judge, JudgeItem, JudgmentCache
    from ski_lvlm.metrics.qa import score_open_qa

    try:
        client = ChatClient(judge["url"], judge["model"], timeout=judge.get("timeout", 60.0))
    except ValueError as e:
        raise UserError(f"--judge-url: {e}") from None
    cache = JudgmentCache(out / "judge_cache.jsonl") if out else None
    j = Judge(client, cache=cache, gen={"temperature": 0.0})
    items = [JudgeItem(it.id, it.question, it.references[0], preds[it.id]["prediction"] or "") for it in qas]
    s = score_open_qa(items, j, concurrency=judge.get("concurrency", 4))
    s.pop("judgments", None)
    s["judge_model"], s["judge_url"] = judge["model"], client.base_url
    return s
