"""The caption / QA benchmark's results as Markdown (``results.md``; caption scores x100, as papers print them)."""

from __future__ import annotations

from ski_lvlm.metrics.captions import CAPTION_METRICS

__all__ = ["results_markdown", "grounding_markdown"]


def _f(v, scale: float = 100.0, nd: int = 1) -> str:
    return "-" if v is None else f"{scale * v:.{nd}f}"


def results_markdown(res: dict) -> str:
    """The results as Markdown tables (caption scores x100, as papers print them)."""
    lines = [f"# Caption / QA benchmark: `{res.get('model', '?')}`", "",
             f"Eval set `{res.get('eval_set', {}).get('path', '?')}`; {res['n_finished']}/{res['n_items']} items "
             f"finished, {res['n_errors']} errors. Input: video only (no skeleton).", ""]
    c = res.get("captions")
    if c:
        lines += [f"## Captions ({c['n']} videos; x100; tokenizer {c['tokenizer']})", "",
                  "| " + " | ".join(CAPTION_METRICS) + " |", "|" + "---:|" * len(CAPTION_METRICS),
                  "| " + " | ".join(_f(c["scores"].get(k)) for k in CAPTION_METRICS) + " |", ""]
        if c["scores"].get("METEOR") is None:
            lines += [f"METEOR: {c['meteor']['note']}", ""]
        for key, table in c["per_group"].items():
            ms = [k for k in CAPTION_METRICS if table and k in next(iter(table.values()))]
            lines += [f"### Per {key} (mean of per-item scores, x100)", "",
                      f"| {key} | n | " + " | ".join(ms) + " |", "|---|---:|" + "---:|" * len(ms)]
            for g, row in table.items():
                lines.append(f"| {g} | {row['n']} | " + " | ".join(_f(row[k]) for k in ms) + " |")
            lines.append("")
    g = res.get("grounding")
    if g:
        lines += grounding_markdown(g)
    q = res.get("qa_open")
    if q:
        a = q["automatic"]
        lines += [f"## Open-ended QA ({q['n']} questions)", "", "| score | value |", "|---|---:|",
                  f"| exact match % (automatic) | {a['exact_match']:.1f} |", f"| token F1 % (automatic) | {a['token_f1']:.1f} |"]
        j = q.get("judge")
        if j:
            lines += [f"| judge accuracy % ({j['judge_model']}) | {_f(j.get('accuracy'), 1)} |",
                      f"| judge score 0-5 ({j['judge_model']}) | {_f(j.get('mean_0_5'), 1, 2)} |",
                      f"| judge failures | {j.get('n_failed', 0)} |"]
        else:
            lines.append("| LLM judge | not run (no --judge-url) |")
        lines += ["", a["note"] + ".", ""]
        qc = res.get("qa_closed") or {}
        if qc.get("per_type"):
            lines += [f"### Closed questions: accuracy per type ({qc['n']} questions, {qc['n_unscored']} unscored)", "",
                      "| type | n | accuracy % | token F1 % |", "|---|---:|---:|---:|"]
            lines += [f"| {t} | {r['n']} | {_f(r['accuracy'])} | {_f(r['token_f1'])} |"
                      for t, r in qc["per_type"].items()]
            lines.append("")
        elif qc.get("note"):
            lines += [f"Closed questions: {qc['note']}.", ""]
    mc = res.get("mc")
    if mc:
        lines += [f"## Multiple choice ({mc['n']} questions)", "",
                  f"Accuracy {_f(mc['accuracy'], 1)}% ({mc['n_correct']}/{mc['n']}, {mc['n_unparsed']} unparsed answers).", ""]
    if res["errors"]:
        lines += ["## Errors", ""] + [f"- `{e['id']}`: {e['error']}" for e in res["errors"][:50]]
        if len(res["errors"]) > 50:
            lines.append(f"- ... and {len(res['errors']) - 50} more (results.json)")
        lines.append("")
    return "\n".join(lines)


def grounding_markdown(g: dict) -> list[str]:
    """The grounding scores as Markdown lines (n/a where the eval set has no phrases)."""
    na = "n/a"
    pct = lambda v: na if v is None else _f(v)  # noqa: E731
    lines = [f"## Grounding ({g['n']} captions)", "",
             "| action acc % | side acc % (n) | tempo acc % among named (n) | tempo acc % of all | "
             "distinct captions | top caption share % |", "|---:|---:|---:|---:|---:|---:|",
             f"| {pct(g.get('action_accuracy'))} | {pct(g.get('side_accuracy'))} ({g.get('n_side', na)}) | "
             f"{pct(g.get('tempo_accuracy'))} ({g.get('n_tempo_named', na)}) | {pct(g.get('tempo_accuracy_all'))} | "
             f"{g['distinct_captions']} | {pct(g.get('top_caption_share'))} |", ""]
    if g.get("top_caption") is not None:
        lines += [f"Most frequent caption: \"{g['top_caption']}\"", ""]
        if g.get("oov_word_share") is not None:
            lines += [f"Words outside the references' vocabulary: {100 * g['oov_word_share']:.2f} % "
                      f"({', '.join(g['oov_words']) or 'none'})", ""]
    if g.get("note"):
        lines += [g["note"] + ".", ""]
    else:
        lines += [f"Action: the caption names the clip's class and no other (no action named: "
                  f"{pct(g.get('no_action_share'))}%, ambiguous: {pct(g.get('ambiguous_share'))}%). Side: among "
                  "captions naming left/right/both for clips whose class has a side. Phrases: "
                  f"`{g.get('phrases')}`.", ""]
    if g.get("per_class"):
        lines += ["| class | n | action acc % |", "|---|---:|---:|"]
        lines += [f"| {c} | {r['n']} | {_f(r['action_accuracy'])} |" for c, r in g["per_class"].items()]
        lines.append("")
    return lines
