#!/usr/bin/env python
"""Benchmark one SKI-LVLM training step against the plain causal LM it wraps.

    python scripts/bench/lvlm_step.py --mode cpu                 # tiny models; prints the overhead ratio
    python scripts/bench/lvlm_step.py --mode gpu                 # 7B-shaped, bf16, batch 8 x (356 video + 200 text)
    python scripts/bench/lvlm_step.py --mode gpu --compile --lora-dropout 0   # the faster settings
    python scripts/bench/lvlm_step.py --mode gpu --shape tiny --device cpu    # the GPU code path, smoke-sized

CPU mode: our forward+backward (embedding lookup, video projector, count check, masked_scatter merge, LLM
with LoRA) against the bare causal LM (the very same module) fed the already merged ``inputs_embeds``; the
ratio ours / bare is the fusion overhead (target <= 1.10). Timings alternate ours/bare every iteration and
report medians, so load from other processes affects both equally.

GPU mode: random-init 7B shapes (Llama-7B: hidden 4096, 32 layers, vocab 32000), bf16 weights, LoRA r=64 on
all linear layers, AdamW, SDPA. The baseline is HF ``LlamaForCausalLM`` + peft on 556 text tokens (labels on
all of them, as a plain LLM run would); ours is the full SKI-LVLM step (356 projected video tokens + 200
text tokens, labels on the text). Reports tokens/s, model TFLOP/s (4 x params x tokens: LoRA computes no
weight gradients of the frozen base) and peak memory, for both models in the same process.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _lora(model, r: int, dropout: float):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=dropout, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))


def _build_ours(text_preset: str, d_v: int, n_v: int, device, dtype, r: int, dropout: float, **text_overrides):
    from ski_lvlm.models.lvlm.configuration import SkiLvlmConfig
    from ski_lvlm.models.lvlm.modeling import SkiLvlmForConditionalGeneration
    from ski_lvlm.models.lvlm.presets import text_config

    tcfg = text_config(text_preset, **text_overrides)
    tcfg._attn_implementation = "sdpa"
    vocab = tcfg.vocab_size
    cfg = SkiLvlmConfig(text_config=tcfg, video_feature_dim=d_v, num_video_tokens=n_v, video_token_id=vocab,
                        skeleton_token_id=vocab + 1, skeleton_feature_dim=64)
    with torch.device(device):
        model = SkiLvlmForConditionalGeneration(cfg).to(dtype)
    model.requires_grad_(False)
    model.language_model = _lora(model.language_model, r, dropout)
    model.video_projector.requires_grad_(True)
    return model


def _batch(b: int, n_v: int, n_t: int, d_v: int, vocab: int, device, dtype, gen: torch.Generator):
    text = torch.randint(0, vocab, (b, n_t), generator=gen)
    input_ids = torch.cat([torch.full((b, n_v), vocab), text], dim=1).to(device)  # video placeholders first
    labels = input_ids.clone()
    labels[:, : n_v + n_t // 4] = -100  # placeholders + the question are not trained
    video = torch.randn(b, n_v, d_v, generator=gen).to(device, dtype)
    return input_ids, labels, video


def bench_cpu(args) -> dict:
    torch.set_num_threads(args.threads)
    device, dtype = torch.device("cpu"), torch.float32
    gen = torch.Generator().manual_seed(0)
    shape = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=1000)
    model = _build_ours("tiny-llama", 256, args.video_tokens, device, dtype, r=8, dropout=0.0, **shape)
    model.train()
    ids, labels, video = _batch(args.batch, args.video_tokens, args.text_tokens, 256, 1000, device, dtype, gen)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        merged = model.embed_inputs(ids, video_features=video)  # the bare LM's input: identical numbers

    def ours():
        model(input_ids=ids, attention_mask=mask, labels=labels, video_features=video, use_cache=False).loss.backward()

    def bare():
        model.language_model(inputs_embeds=merged, attention_mask=mask, labels=labels, use_cache=False).loss.backward()

    for _ in range(args.warmup):
        ours(), bare()
    t_ours, t_bare = [], []
    for _ in range(args.steps):
        for fn, acc in ((ours, t_ours), (bare, t_bare)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    mo, mb = statistics.median(t_ours), statistics.median(t_bare)
    tokens = args.batch * (args.video_tokens + args.text_tokens)
    return {"mode": "cpu", "threads": args.threads, "batch": args.batch, "seq": args.video_tokens + args.text_tokens,
            "llm": shape, "ours_ms": 1e3 * mo, "bare_ms": 1e3 * mb, "ratio": mo / mb,
            "ours_tokens_per_s": tokens / mo, "bare_tokens_per_s": tokens / mb}


def _time_steps(step, device, warmup: int, steps: int) -> tuple[float, float]:
    for _ in range(warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return statistics.median(times), peak


def bench_gpu(args) -> dict:
    from transformers import LlamaForCausalLM

    from ski_lvlm.models.lvlm.presets import text_config

    device = torch.device(args.device)
    dtype = torch.bfloat16
    preset = "llama-7b"
    shape = {} if args.shape == "7b" else dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                               num_attention_heads=4, num_key_value_heads=4, vocab_size=1000)
    n_v, n_t, b = args.video_tokens, args.text_tokens, args.batch
    gen = torch.Generator().manual_seed(0)
    results = {}

    # --- baseline: plain HF Llama + peft LoRA (dropout 0.05, the usual default), AdamW, SDPA, 556 text tokens
    tcfg = text_config(preset, **shape)
    tcfg._attn_implementation = "sdpa"
    vocab = tcfg.vocab_size
    with torch.device(device):
        base = LlamaForCausalLM(tcfg).to(dtype)
    base.requires_grad_(False)
    base = _lora(base, args.lora_r, 0.05)
    n_params = sum(p.numel() for p in base.parameters())
    opt = torch.optim.AdamW([p for p in base.parameters() if p.requires_grad], lr=1e-5)
    ids = torch.randint(0, vocab, (b, n_v + n_t), generator=gen).to(device)

    def base_step():
        base(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t, peak = _time_steps(base_step, device, args.warmup, args.steps)
    tokens = b * (n_v + n_t)
    results["baseline"] = {"step_s": t, "tokens_per_s": tokens / t, "tflops": 4 * n_params * tokens / t / 1e12,
                           "peak_gib": peak}
    del base, opt
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # --- ours: SKI-LVLM step (projector + merge + LoRA LLM), same shapes
    model = _build_ours(preset, 1024, n_v, device, dtype, args.lora_r, args.lora_dropout, **shape)
    if args.grad_ckpt:
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    ids, labels, video = _batch(b, n_v, n_t, 1024, vocab, device, dtype, gen)
    fwd = model
    if args.compile:
        model.language_model = torch.compile(model.language_model)

    def our_step():
        fwd(input_ids=ids, labels=labels, video_features=video, use_cache=False).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t, peak = _time_steps(our_step, device, args.warmup, args.steps)
    results["ours"] = {"step_s": t, "tokens_per_s": tokens / t, "tflops": 4 * n_params * tokens / t / 1e12,
                       "peak_gib": peak}
    results["speedup"] = results["ours"]["tokens_per_s"] / results["baseline"]["tokens_per_s"]
    results.update(mode="gpu", device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                   shape=args.shape, batch=b, video_tokens=n_v, text_tokens=n_t, lora_r=args.lora_r,
                   ours_settings={"compile": args.compile, "lora_dropout": args.lora_dropout, "grad_ckpt": args.grad_ckpt},
                   params=n_params)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--device", default="cuda", help="gpu mode: cuda (or cpu with --shape tiny for a smoke run)")
    p.add_argument("--shape", choices=["7b", "tiny"], default="7b", help="gpu mode: model shape")
    p.add_argument("--batch", type=int, default=None, help="default: 8 (gpu), 4 (cpu)")
    p.add_argument("--video-tokens", type=int, default=None, help="default: 356 (gpu), 100 (cpu)")
    p.add_argument("--text-tokens", type=int, default=None, help="default: 200 (gpu), 60 (cpu)")
    p.add_argument("--lora-r", type=int, default=64)
    p.add_argument("--lora-dropout", type=float, default=0.0, help="ours (gpu mode); the baseline uses 0.05")
    p.add_argument("--compile", action="store_true", help="ours: torch.compile the LLM")
    p.add_argument("--grad-ckpt", action="store_true", help="ours: gradient checkpointing")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="cpu mode: torch threads")
    p.add_argument("--out", help="also write the result as JSON here")
    args = p.parse_args(argv)
    gpu = args.mode == "gpu"
    args.batch = args.batch or (8 if gpu else 4)
    args.video_tokens = args.video_tokens or (356 if gpu else 100)
    args.text_tokens = args.text_tokens or (200 if gpu else 60)
    if gpu and args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu mode needs CUDA (or --device cpu --shape tiny for a smoke run of the same code)", file=sys.stderr)
        return 2
    res = bench_gpu(args) if gpu else bench_cpu(args)
    if gpu:
        for k in ("baseline", "ours"):
            r = res[k]
            print(f"{k:9s} {r['tokens_per_s']:10.0f} tokens/s  {r['tflops']:7.2f} TFLOP/s  peak {r['peak_gib']:.1f} GiB"
                  f"  ({r['step_s'] * 1e3:.1f} ms/step)")
        print(f"speedup ours/baseline: {res['speedup']:.2f}x on {res['device']}")
    else:
        print(f"ours {res['ours_ms']:.1f} ms  bare LM {res['bare_ms']:.1f} ms  overhead ratio {res['ratio']:.3f} "
              f"(batch {res['batch']} x {res['seq']} tokens, {args.threads} thread(s))")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
