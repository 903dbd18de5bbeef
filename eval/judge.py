"""ski-lvlm eval judge: LLM-judge scores of predictions through any OpenAI-compatible endpoint.

    ski-lvlm eval judge --predictions preds.jsonl --base-url http://127.0.0.1:11434/v1 \\
        --model llama3.1 --out runs/judge_llama31

Input: JSONL (one object per line) or JSON (a list, or a dict keyed by id) with ``id``, ``question``,
``answer`` (the reference) and ``prediction``; ``question2``/``prediction2`` for consistency. The
Video-ChatGPT/SKI field names (``video_name``, ``Q``, ``A``, ``pred``, ``Q1``, ``Q2``, ``pred1``,
``pred2``) are accepted too.

Output in --out: ``results.json`` (per criterion: mean 0-5, x20 score with a bootstrap CI, failures;
judge model and endpoint), ``results.md`` (the same as a table), ``judgments.jsonl`` (one line per item
and criterion, failures included) and ``judge_cache.jsonl`` (replies reused by a re-run, so an
interrupted run resumes without repeating requests).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
from pathlib import Path

from ski_lvlm.evaluation.judge import load_predictions, results_markdown
from ski_lvlm.llm_client import ChatClient
from ski_lvlm.metrics.judge import CRITERIA, DEFAULT_CRITERIA, Judge, JudgmentCache, judgment_to_dict, summarize_judgments
from ski_lvlm.utils.errors import UserError, cli_entry
from ski_lvlm.utils.io import atomic_write_json, atomic_write_text, check_writable_parent

PROG = "ski-lvlm eval judge"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Score predictions with an LLM judge (Video-ChatGPT criteria or open-ended QA) through an "
                    "OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp server, OpenAI).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--predictions", required=True, type=Path, help="JSONL/JSON with id, question, answer, prediction")
    p.add_argument("--base-url", required=True, help="API root, e.g. http://127.0.0.1:11434/v1 (Ollama)")
    p.add_argument("--model", required=True, help="judge model name, recorded in the results")
    p.add_argument("--out", required=True, type=Path, help="output folder (created; a re-run reuses its cache)")
    p.add_argument("--criteria", nargs="+", default=list(DEFAULT_CRITERIA), choices=list(CRITERIA),
                   help="criteria to score; 'qa' = open-ended QA yes/no + score")
    p.add_argument("--concurrency", type=int, default=4, help="parallel requests")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--max-retries", type=int, default=4, help="client retries on timeouts/5xx/malformed responses")
    p.add_argument("--attempts", type=int, default=3, help="times to ask again when a reply has no valid score")
    p.add_argument("--temperature", type=float, default=0.0, help="judge sampling temperature")
    p.add_argument("--max-tokens", type=int, default=256, help="longest judge reply in tokens (the reply is a "
                   "short JSON object; a small local judge that rambles is cut here)")
    p.add_argument("--cache", type=Path, default=None, help="judgment cache (default OUT/judge_cache.jsonl)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--limit", type=int, default=None, help="judge only the first N items (smoke tests)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


@cli_entry(PROG)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problems = check_writable_parent(args.out)
    if args.concurrency < 1:
        problems.append("--concurrency: must be >= 1")
    if args.timeout <= 0:
        problems.append("--timeout: must be > 0")
    if args.attempts < 1 or args.max_retries < 0:
        problems.append("--attempts must be >= 1 and --max-retries >= 0")
    if args.max_tokens < 1:
        problems.append("--max-tokens: must be >= 1")
    if args.bootstrap < 1:
        problems.append("--bootstrap: must be >= 1")
    if problems:
        raise UserError("; ".join(problems))
    items = load_predictions(args.predictions)
    if args.limit is not None:
        items = items[: args.limit]
    criteria = list(dict.fromkeys(args.criteria))
    if "consistency" in criteria and not any(i.question2 is not None and i.prediction2 is not None for i in items):
        raise UserError(f"{args.predictions}: 'consistency' needs question2/prediction2 (or Q2/pred2) fields; "
                        "none found (drop it from --criteria)")
    try:
        client = ChatClient(args.base_url, args.model, api_key_env=args.api_key_env, timeout=args.timeout,
                            max_retries=args.max_retries)
    except ValueError as e:
        raise UserError(str(e)) from None

    args.out.mkdir(parents=True, exist_ok=True)
    cache = JudgmentCache(args.cache or args.out / "judge_cache.jsonl")
    gen = {"temperature": args.temperature, "max_tokens": args.max_tokens}
    judge = Judge(client, cache=cache, attempts=args.attempts, gen=gen)
    judgments = judge.run(items, criteria, concurrency=args.concurrency, progress=not args.no_progress)
    summary = summarize_judgments(judgments, criteria, n_items=len(items), n_boot=args.bootstrap, seed=args.seed)
    res = {
        "predictions": str(args.predictions),
        "n_items": len(items),
        "judge": {"model": args.model, "base_url": client.base_url, "temperature": args.temperature,
                  "max_tokens": args.max_tokens,
                  "attempts": args.attempts, "max_retries": args.max_retries, "timeout_s": args.timeout},
        "criteria_order": criteria,
        "criteria": summary,
        "bootstrap": {"n_boot": args.bootstrap, "seed": args.seed, "confidence": 0.95},
        "requests_sent": client.n_requests,
        "cached_judgments": sum(j.cached for j in judgments),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(args.out / "results.json", res)
    atomic_write_text(args.out / "judgments.jsonl",
                      "".join(json.dumps(judgment_to_dict(j), ensure_ascii=False) + "\n" for j in judgments))
    md = results_markdown(res)
    atomic_write_text(args.out / "results.md", md)
    print(md, end="")
    n_failed = sum(summary[c]["n_failed"] for c in criteria)
    if n_failed:
        unparseable = sum(summary[c]["n_unparseable"] for c in criteria)
        print(f"{n_failed} judgment(s) failed after retries ({unparseable} replies without a valid score, "
              f"{n_failed - unparseable} without a reply); see {args.out / 'judgments.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
