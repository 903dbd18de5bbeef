"""Benchmark: generation tokens/s of ``Captioner.generate`` (our path) vs plain HF ``generate()``.

    .venv/bin/python scripts/bench/generate.py                          # auto: 7b on CUDA, tiny on CPU
    .venv/bin/python scripts/bench/generate.py --mode 7b --batch-sizes 1 16 --new-tokens 128   # GPU
    .venv/bin/python scripts/bench/generate.py --mode tiny --out bench_generate.json            # CPU smoke

Both sides get the same model, prompts and precomputed video features (random, ``[b, n_v, d_v]``), greedy,
exactly ``--new-tokens`` new tokens (``min_new_tokens`` = ``max_new_tokens``: random weights would
otherwise stop at a random EOS). Plain = ``model.generate(...)`` with transformers' default dynamic KV cache; hf_static = the same call with
``cache_implementation="static"``, which on CUDA makes transformers compile the decode step itself (HF's own
fast path, the baseline the issue names).
Ours = :meth:`ski_lvlm.inference.Captioner.generate` (on CUDA its fast path: static KV cache + compiled
decode step; on CPU it *is* plain generate, so the CPU mode only exercises the script). Each side gets one
warm-up call (its time is reported: compilation happens there), then ``--repeats`` timed rounds in
rotating order; the median is reported. tokens/s = batch x new tokens / wall time (prefill
included, as a user sees it); ms/token = wall time / new tokens.

Modes: ``7b`` = the ``llama-7b`` preset (random init, bf16, 356 video tokens of width 1024 as in
Video-ChatGPT) on CUDA; ``tiny`` = the ``tiny-llama`` preset (24 video tokens) on any device.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch


def build(mode: str, device: torch.device):
    from ski_lvlm.models.lvlm.presets import create_lvlm

    if mode == "7b":
        if device.type != "cuda":
            raise SystemExit("--mode 7b needs a CUDA device (use --mode tiny on CPU)")
        with torch.device(device):  # random init directly on the GPU (minutes on CPU)
            model, proc = create_lvlm("llama-7b", video_feature_dim=1024, num_video_tokens=356, dtype=torch.bfloat16,
                                      seed=0)
    else:
        model, proc = create_lvlm("tiny-llama", video_feature_dim=64, num_video_tokens=24, seed=0)
    return model.to(device).eval(), proc


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


PATHS = ("ours", "plain", "hf_static")


def time_paths(paths: dict, device: torch.device, repeats: int) -> tuple[dict, dict]:
    """One warm-up call each (compilation happens there), then ``repeats`` timed rounds in rotating order
    (drifting machine load hits every path alike). Returns (warm-up seconds, timed seconds) per path."""
    warm = {name: timed(fn, device) for name, fn in paths.items()}
    times: dict[str, list[float]] = {name: [] for name in paths}
    order = list(paths.items())
    for r in range(repeats):
        for name, fn in order[r % len(order):] + order[:r % len(order)]:
            times[name].append(timed(fn, device))
    return warm, times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("auto", "7b", "tiny"), default="auto", help="auto: 7b on CUDA, tiny on CPU")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = p.parse_args(argv)

    from ski_lvlm.inference import Captioner
    from ski_lvlm.utils.runtime import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    mode = args.mode if args.mode != "auto" else ("7b" if device.type == "cuda" else "tiny")
    t0 = time.perf_counter()
    model, proc = build(mode, device)
    build_s = time.perf_counter() - t0
    ours = Captioner(model, proc)  # fast path on CUDA, plain on CPU
    cfg = model.config
    n = args.new_tokens
    rows = []
    for b in args.batch_sizes:
        conv = [[{"role": "user", "content": "Describe the video in detail."}]] * b
        g = torch.Generator().manual_seed(b)
        feats = torch.randn(b, cfg.num_video_tokens, cfg.video_feature_dim, generator=g).to(device, model.dtype)
        inputs = ours._inputs(conv, [True] * b)
        plain_kw = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=proc.tokenizer.pad_token_id,
                        eos_token_id=proc.stop_token_ids)

        @torch.no_grad()
        def run_plain():
            out = model.generate(**inputs, video_features=feats, **plain_kw)
            assert out.shape[1] - inputs["input_ids"].shape[1] == n

        @torch.no_grad()
        def run_static():  # HF's own fast path: static KV cache, decode step compiled by generate on CUDA
            out = model.generate(**inputs, video_features=feats, cache_implementation="static", **plain_kw)
            assert out.shape[1] - inputs["input_ids"].shape[1] == n

        def run_ours():
            ours.generate(conv, feats, max_new_tokens=n, min_new_tokens=n)

        warm, times = time_paths({"ours": run_ours, "plain": run_plain, "hf_static": run_static}, device,
                                 args.repeats)
        for name in PATHS:
            t = statistics.median(times[name])
            rows.append({"path": name, "batch": b, "new_tokens": n, "prompt_tokens": int(inputs["input_ids"].shape[1]),
                         "seconds": t, "tokens_per_s": b * n / t, "ms_per_token": 1000 * t / n,
                         "first_call_s": warm[name], "runs": times[name]})
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    result = {"mode": mode, "device": str(device), "device_name": dev_name, "threads": torch.get_num_threads(),
              "dtype": str(model.dtype), "fast_path": ours.fast, "build_s": build_s, "torch": torch.__version__,
              "rows": rows}
    print(f"mode {mode} on {dev_name} ({device}, {torch.get_num_threads()} threads, {model.dtype}); "
          f"ours fast path: {ours.fast}; model built in {build_s:.1f}s")
    print(f"{'path':<9} {'batch':>5} {'prompt':>6} {'new':>4} {'tokens/s':>10} {'ms/token':>9} {'first call s':>12}")
    for r in rows:
        print(f"{r['path']:<9} {r['batch']:>5} {r['prompt_tokens']:>6} {r['new_tokens']:>4} {r['tokens_per_s']:>10.1f} "
              f"{r['ms_per_token']:>9.2f} {r['first_call_s']:>12.2f}")
    for b in args.batch_sizes:
        o, pl, st = [next(r for r in rows if r["path"] == k and r["batch"] == b) for k in PATHS]
        print(f"batch {b}: ours / plain = {o['tokens_per_s'] / pl['tokens_per_s']:.2f}x, "
              f"ours / hf_static = {o['tokens_per_s'] / st['tokens_per_s']:.2f}x")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
