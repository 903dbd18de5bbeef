#!/usr/bin/env python
"""Benchmark one SKI-LVLM training step against the plain causal LM it wraps.

    python scripts/bench/lvlm_step.py --mode cpu                 # tiny models; prints the overhead ratio
    python scripts/bench/lvlm_step.py --mode gpu                 # 7B-shaped, bf16, batch 8 x (356 video + 200 text)
    python scripts/bench/lvlm_step.py --mode gpu --compile --lora-dropout 0   # the faster settings
    python scripts/bench/lvlm_step.py --mode gpu --shape tiny --device cpu    # the GPU code path, smoke-sized
    python scripts/bench/lvlm_step.py --mode cpu-smol --instructions WORLD/instructions_train.json   # ~2 min
    python scripts/bench/lvlm_step.py --mode gpu-mix --lora-dropout 0 [--liger] [--compile]   # lengths 400-2000

CPU mode: our forward+backward (embedding lookup, video projector, count check, masked_scatter merge, LLM
with LoRA) against the bare causal LM (the very same module) fed the already merged ``inputs_embeds``; the
ratio ours / bare is the fusion overhead (target <= 1.10). Timings alternate ours/bare every iteration and
report medians, so load from other processes affects both equally.

cpu-smol mode: the quickstart's SmolLM2-135M with LoRA (r=16, alpha=32, dropout 0, all linear layers: the
settings of train/configs/lvlm/instruct_smol.yaml) on the world's real instructions, tokenised by the real
processor with their 25 video tokens (and 8 skeleton tokens on half of them, p_inject=0.5). Contenders, each
a full step (forward, backward, AdamW) over the same samples, hence the same real tokens: ``hf_peft_padded``
(the named baseline: HF SmolLM2 + PEFT, random batches of 8 padded to their longest sample, HF's loss over
full logits), ``ours_padded_grouped`` (``train lvlm`` today: length-grouped padded batches) and ``ours_packed``
(``data.packing=true``). Prints tokens/s (wall clock) and tokens per CPU-second (process CPU time, which
other jobs on a shared machine disturb far less) and both ratios against the baseline.

GPU mode: random-init 7B shapes (Llama-7B: hidden 4096, 32 layers, vocab 32000), bf16 weights, LoRA r=64 on
all linear layers, AdamW, SDPA. The baseline is HF ``LlamaForCausalLM`` + peft on 556 text tokens (labels on
all of them, as a plain LLM run would); ours is the full SKI-LVLM step (356 projected video tokens + 200
text tokens, labels on the text). Reports tokens/s, model TFLOP/s (4 x params x tokens: LoRA computes no
weight gradients of the frozen base) and peak memory, for both models in the same process.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
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


# The quickstart's LVLM (runs/quickstart/lvlm_instruct/final/config.json, train/configs/lvlm/instruct_smol.yaml):
# 17 video feature rows of width 64 + 8 summary tokens = 25 <video> tokens, 8 <skeleton> tokens of width 48.
SMOL = dict(video_feature_dim=64, num_video_tokens=25, video_summary_tokens=8, skeleton_feature_dim=48,
            num_skeleton_tokens=8, projector_type="std_mlp2x_gelu", skeleton_projector_type="std_mlp2x_gelu")


def _smol_lora(lora_r: int):
    """LoRA as in instruct_smol.yaml: r=16, alpha=32, dropout 0, every linear layer."""
    from peft import LoraConfig

    return LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")


def _smol_samples(instructions: str, proc, n: int, p_inject: float, seed: int) -> list[dict]:
    """``n`` random records of the world, tokenised by the real processor (video + drawn skeleton tokens)."""
    from ski_lvlm.data.instructions import read_instruction_records

    records = read_instruction_records(instructions)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(records))[:n]
    gen = torch.Generator().manual_seed(seed)
    n_video = SMOL["num_video_tokens"] - SMOL["video_summary_tokens"]
    out = []
    for i in pick:
        skel = bool(rng.random() < p_inject)
        ex = proc.build_example(records[i]["conversations"], has_video=True, use_skeleton=skel)
        out.append({"id": str(i), "input_ids": ex.input_ids, "labels": ex.labels,
                    "video_features": torch.randn(n_video, SMOL["video_feature_dim"], generator=gen),
                    "skeleton_features": torch.randn(SMOL["num_skeleton_tokens"], SMOL["skeleton_feature_dim"],
                                                     generator=gen) if skel else None})
    return out


def _smol_models(lora_r: int):
    """(ours, processor, baseline): SKI-LVLM around SmolLM2-135M, and the bare HF SmolLM2 - both with LoRA."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from ski_lvlm.models.lvlm.presets import create_lvlm
    from ski_lvlm.models.registry import resolve_model

    ours, proc = create_lvlm("smollm2-135m", seed=0, **SMOL)
    ours.requires_grad_(False)
    ours.language_model = get_peft_model(ours.language_model, _smol_lora(lora_r))
    ours.video_projector.requires_grad_(True)
    ours.skeleton_projector.requires_grad_(True)
    base = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m"), attn_implementation="sdpa")
    base.requires_grad_(False)
    base = get_peft_model(base, _smol_lora(lora_r))
    return ours.train(), proc, base.train()


def _smol_steps(ours, proc, base, samples: list[dict], batch: int, seed: int) -> dict:
    """One optimizer step per micro-batch for each contender, as closures over their own batches."""
    from ski_lvlm.data.lvlm_dataset import LengthGroupedBatches, lvlm_collate, lvlm_pack_collate
    from ski_lvlm.models.lvlm.packing import use_packed_attention

    pad = proc.tokenizer.pad_token_id
    vocab = base.config.vocab_size  # the bare LM has no placeholder rows: their ids become pad (same cost)
    lengths = [len(s["input_ids"]) for s in samples]
    random_batches = [list(range(i, min(i + batch, len(samples)))) for i in range(0, len(samples), batch)]
    grouped = list(LengthGroupedBatches(lengths, batch, seed=seed))  # what `train lvlm` feeds
    opt_base = torch.optim.AdamW([p for p in base.parameters() if p.requires_grad], lr=1e-5)
    opt_ours = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-5)
    keys = ("input_ids", "labels", "attention_mask", "position_ids", "video_features", "skeleton_features",
            "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")

    def hf_peft_padded(idx):
        b = lvlm_collate([samples[i] for i in idx], pad)
        ids = b["input_ids"].masked_fill(b["input_ids"] >= vocab, pad)
        base(input_ids=ids, attention_mask=b["attention_mask"], labels=b["labels"], use_cache=False).loss.backward()
        opt_base.step()
        opt_base.zero_grad(set_to_none=True)

    def ours_step(collate):
        def step(idx):
            b = collate([samples[i] for i in idx])
            ours(**{k: b[k] for k in keys if k in b}, use_cache=False).loss.backward()
            opt_ours.step()
            opt_ours.zero_grad(set_to_none=True)
        return step

    def ours_packed(idx):
        if ours.language_model.config._attn_implementation == "sdpa":
            use_packed_attention(ours.language_model)
        ours_step(lvlm_pack_collate)(idx)

    def ours_padded(idx):
        ours.language_model.set_attn_implementation("sdpa")
        ours_step(lambda items: lvlm_collate(items, pad))(idx)

    return {"hf_peft_padded": (hf_peft_padded, random_batches), "ours_padded_grouped": (ours_padded, grouped),
            "ours_packed": (ours_packed, grouped)}


def _compiled_steps(steps: dict, ours, base) -> dict:
    """``--compile``: the baseline and ours packed again, each LLM under ``torch.compile(dynamic=True)`` (one
    graph per decoder-layer segment: sdpa_varlen's per-sample split breaks the graph at attention)."""
    lm_ours, lm_base = (torch.compile(m, dynamic=True) for m in (ours.language_model, base.base_model.model))

    def swapped(fn, owner, attr, compiled):
        def step(idx):
            eager = getattr(owner, attr)
            owner._modules[attr] = compiled  # shares the eager module's parameters and optimizer
            try:
                fn(idx)
            finally:
                owner._modules[attr] = eager
        return step

    (hf, hf_batches), (packed, packed_batches) = steps["hf_peft_padded"], steps["ours_packed"]
    return {"hf_peft_padded_compiled": (swapped(hf, base.base_model, "model", lm_base), hf_batches),
            "ours_packed_compiled": (swapped(packed, ours, "language_model", lm_ours), packed_batches)}


def _round_robin(steps: dict) -> tuple[dict, dict]:
    """Wall and process-CPU seconds per contender, one step of each in turn (load hits all alike)."""
    wall = {name: 0.0 for name in steps}
    cpu = {name: 0.0 for name in steps}  # process CPU time: robust to other jobs on a shared machine
    for k in range(max(len(b) for _, b in steps.values())):
        for name, (fn, batches) in steps.items():
            if k < len(batches):
                t0, c0 = time.perf_counter(), time.process_time()
                fn(batches[k])
                wall[name] += time.perf_counter() - t0
                cpu[name] += time.process_time() - c0
    return wall, cpu


def bench_cpu_smol(args) -> dict:
    """SmolLM2-135M LoRA steps on the world's real instruction lengths: ours against HF+PEFT padded.

    Every contender trains on the same ``--samples`` records (so the same real tokens) in its own batches:
    HF+PEFT in random order padded to the longest sample of each batch (a plain HF loop), ours as
    ``train lvlm`` batches them (length-grouped), padded (today's default) or packed (``data.packing``).
    Steps run round-robin (one of each in turn) so load from other processes hits all of them alike.
    """
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours, proc, base = _smol_models(args.lora_r)
    if args.precision == "bf16":  # every contender alike: frozen weights bf16, LoRA fp32, bf16 autocast
        from ski_lvlm.training.lvlm_setup import cast_frozen_to_bf16

        cast_frozen_to_bf16(ours)
        cast_frozen_to_bf16(base)
    samples = _smol_samples(args.instructions, proc, args.samples, args.p_inject, seed=0)
    steps = _smol_steps(ours, proc, base, samples, args.batch, seed=0)
    if args.compile:
        steps |= _compiled_steps(steps, ours, base)
    warmup = {}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
        for name, (fn, batches) in steps.items():  # warm-up (allocator, first-call costs, compilation)
            t0 = time.perf_counter()
            for b in batches[:args.warmup if name.endswith("_compiled") else 1]:  # compiled: every shape seen
                fn(b)
            warmup[name] = time.perf_counter() - t0
        wall, cpu = _round_robin(steps)
    tokens = sum(len(s["input_ids"]) for s in samples)
    lengths = [len(s["input_ids"]) for s in samples]
    labels = sum(sum(x != -100 for x in s["labels"]) for s in samples)
    res = {name: {"seconds": wall[name], "tokens_per_s": tokens / wall[name], "cpu_seconds": cpu[name],
                  "tokens_per_cpu_s": tokens / cpu[name], "warmup_s": warmup[name]} for name in steps}
    for name in res:
        res[name]["ratio_vs_hf_peft_padded"] = res[name]["tokens_per_s"] / res["hf_peft_padded"]["tokens_per_s"]
        res[name]["cpu_ratio_vs_hf_peft_padded"] = (res[name]["tokens_per_cpu_s"]
                                                    / res["hf_peft_padded"]["tokens_per_cpu_s"])
    res.update(mode="cpu-smol", baseline="hf_peft_padded", precision=args.precision, threads=args.threads, batch=args.batch,
               samples=len(samples), tokens=tokens, label_tokens=int(labels),
               length_min_mean_max=[min(lengths), sum(lengths) / len(lengths), max(lengths)],
               lora_r=args.lora_r, instructions=args.instructions, torch=torch.__version__)
    return res


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


def _maybe_liger(model, liger: bool) -> None:
    """Liger's fused RMSNorm / SwiGLU / RoPE on the backbone (its fused linear cross-entropy stays off: packed
    steps already compute logits at label positions only)."""
    if not liger:
        return
    from liger_kernel.transformers import apply_liger_kernel_to_llama  # the --liger flag checks it is installed

    from ski_lvlm.training.lvlm_checkpoint import unwrap_llm

    apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                fused_linear_cross_entropy=False, model=unwrap_llm(model.language_model))


def _mix_samples(n: int, n_v: int, d_v: int, lo: int, hi: int, vocab: int, seed: int, dtype) -> list[dict]:
    """``n`` samples of ``n_v`` video placeholders + random text, total length uniform in ``[lo, hi]``; the
    last quarter of the text is the trained answer (a realistic mix: short QA to long descriptions)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        n_t = int(rng.integers(lo, hi + 1)) - n_v
        text = rng.integers(0, vocab, n_t).tolist()
        answer = max(1, n_t // 4)
        out.append({"id": str(i), "input_ids": [vocab] * n_v + text,
                    "labels": [-100] * (n_v + n_t - answer) + text[n_t - answer:],
                    "video_features": torch.randn(n_v, d_v, generator=gen).to(dtype), "skeleton_features": None})
    return out


def _time_batches(step, batches: list, device, warmup: int) -> tuple[float, float]:
    """Total seconds of ``step(batch)`` over ``batches[warmup:]`` and the peak memory (GiB) over them."""
    for b in batches[:warmup]:
        step(b)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for b in batches[warmup:]:
        step(b)
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return time.perf_counter() - t0, peak


def bench_gpu_mix(args) -> dict:
    """7B LoRA on a realistic length mix: HF+PEFT with padded batches against SKI-LVLM packed.

    Both train on the same samples (``--mix-min``..``--mix-max`` tokens, 356 of them video) in batches of
    ``--batch``; tokens/s counts real tokens only. The baseline is the padded HF loop (SDPA, its loss over
    full logits, LoRA dropout 0.05); ours is ``data.packing`` (flash-attention varlen when flash-attn is
    installed, else per-sample SDPA; logits at label positions only), optionally with Liger and compile.
    """
    from transformers import LlamaForCausalLM

    from ski_lvlm.data.lvlm_dataset import lvlm_collate, lvlm_pack_collate
    from ski_lvlm.models.lvlm.packing import use_packed_attention
    from ski_lvlm.models.lvlm.presets import text_config

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shape = {} if args.shape == "7b" else dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                               num_attention_heads=4, num_key_value_heads=4, vocab_size=1000)
    tcfg = text_config("llama-7b", **shape)
    tcfg._attn_implementation = "sdpa"
    n_v, vocab = args.video_tokens, tcfg.vocab_size
    samples = _mix_samples(args.batch * (args.steps + args.warmup), n_v, 1024, args.mix_min, args.mix_max, vocab,
                           seed=0, dtype=dtype)
    batches = [[samples[i] for i in range(k, k + args.batch)] for k in range(0, len(samples), args.batch)]
    tokens = sum(len(s["input_ids"]) for b in batches[args.warmup:] for s in b)

    with torch.device(device):
        base = LlamaForCausalLM(tcfg).to(dtype)
    base.requires_grad_(False)
    base = _lora(base, args.lora_r, 0.05)
    opt = torch.optim.AdamW([p for p in base.parameters() if p.requires_grad], lr=1e-5)

    def base_step(items):
        b = lvlm_collate(items, pad_token_id=0)
        ids = b["input_ids"].masked_fill(b["input_ids"] >= vocab, 0).to(device)  # no placeholder rows: pad id
        base(input_ids=ids, attention_mask=b["attention_mask"].to(device), labels=b["labels"].to(device),
             use_cache=False).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t_base, peak_base = _time_batches(base_step, batches, device, args.warmup)
    del base, opt
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()

    model = _build_ours("llama-7b", 1024, n_v, device, dtype, args.lora_r, args.lora_dropout, **shape)
    attn = use_packed_attention(model.language_model, allow_flash=device.type == "cuda")  # bf16 there
    _maybe_liger(model, args.liger)
    if args.compile:
        model.language_model = torch.compile(model.language_model, dynamic=True)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def our_step(items):
        b = lvlm_pack_collate(items)
        kw = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in b.items() if k not in ("ids", "num_tokens")}
        model(**kw, use_cache=False).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t_ours, peak_ours = _time_batches(our_step, batches, device, args.warmup)
    res = {"baseline": {"tokens_per_s": tokens / t_base, "peak_gib": peak_base, "seconds": t_base},
           "ours": {"tokens_per_s": tokens / t_ours, "peak_gib": peak_ours, "seconds": t_ours}}
    res.update(mode="gpu-mix", speedup=t_base / t_ours, attention=attn, shape=args.shape, batch=args.batch,
               mix=[args.mix_min, args.mix_max], video_tokens=n_v, tokens=tokens, lora_r=args.lora_r,
               ours_settings={"compile": args.compile, "lora_dropout": args.lora_dropout, "liger": args.liger},
               device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    return res


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
    _maybe_liger(model, args.liger)
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
    p.add_argument("--mode", choices=["cpu", "cpu-smol", "gpu", "gpu-mix"], default="cpu")
    p.add_argument("--mix-min", type=int, default=400, help="gpu-mix: shortest sample (tokens, video included)")
    p.add_argument("--mix-max", type=int, default=2000, help="gpu-mix: longest sample")
    p.add_argument("--liger", action="store_true", help="gpu, gpu-mix: ours with Liger's fused kernels")
    p.add_argument("--instructions", default="runs/quickstart/world/instructions_train.json",
                   help="cpu-smol: the world's instruction JSON (its real length distribution)")
    p.add_argument("--samples", type=int, default=32, help="cpu-smol: records every contender trains on")
    p.add_argument("--p-inject", type=float, default=0.5, help="cpu-smol: share of samples with skeleton tokens")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="cpu-smol: every contender in this precision (bf16: frozen weights bf16, LoRA fp32, "
                        "autocast; what instruct_smol.yaml's bf16_native gives on AMX CPUs)")
    p.add_argument("--device", default="cuda", help="gpu mode: cuda (or cpu with --shape tiny for a smoke run)")
    p.add_argument("--shape", choices=["7b", "tiny"], default="7b", help="gpu mode: model shape")
    p.add_argument("--batch", type=int, default=None, help="default: 8 (gpu), 4 (cpu)")
    p.add_argument("--video-tokens", type=int, default=None, help="default: 356 (gpu), 100 (cpu)")
    p.add_argument("--text-tokens", type=int, default=None, help="default: 200 (gpu), 60 (cpu)")
    p.add_argument("--lora-r", type=int, default=None, help="default: 64 (gpu, cpu), 16 (cpu-smol)")
    p.add_argument("--lora-dropout", type=float, default=0.0, help="ours (gpu mode); the baseline uses 0.05")
    p.add_argument("--compile", action="store_true", help="ours: torch.compile the LLM (cpu-smol: adds HF+PEFT and ours "
                   "packed, each compiled, as two more contenders)")
    p.add_argument("--grad-ckpt", action="store_true", help="ours: gradient checkpointing")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="cpu mode: torch threads")
    p.add_argument("--out", help="also write the result as JSON here")
    args = p.parse_args(argv)
    gpu = args.mode in ("gpu", "gpu-mix")
    if args.liger and importlib.util.find_spec("liger_kernel") is None:
        print("--liger: liger-kernel is not installed (pip install liger-kernel)", file=sys.stderr)
        return 3
    args.lora_r = args.lora_r or (16 if args.mode == "cpu-smol" else 64)
    args.batch = args.batch or (8 if gpu or args.mode == "cpu-smol" else 4)
    args.video_tokens = args.video_tokens or (356 if gpu else 100)
    args.text_tokens = args.text_tokens or (200 if gpu else 60)
    if gpu and args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu mode needs CUDA (or --device cpu --shape tiny for a smoke run of the same code)", file=sys.stderr)
        return 2
    if args.mode == "cpu-smol":
        if not Path(args.instructions).is_file():
            print(f"{args.instructions}: not found (run scripts/quickstart.sh, or pass --instructions)",
                  file=sys.stderr)
            return 2
        res = bench_cpu_smol(args)
    elif args.mode == "gpu-mix":
        res = bench_gpu_mix(args)
    else:
        res = bench_gpu(args) if gpu else bench_cpu(args)
    if args.mode == "cpu-smol":
        print(f"SmolLM2-135M LoRA r={res['lora_r']}, {res['samples']} samples of {args.instructions} "
              f"({res['tokens']} tokens, lengths {res['length_min_mean_max'][0]}-{res['length_min_mean_max'][2]}), "
              f"batch {res['batch']}, {res['threads']} thread(s), {res['precision']} (all contenders)")
        for name in [k for k in res if isinstance(res[k], dict) and "tokens_per_s" in res[k]]:
            r = res[name]
            print(f"{name:24s} {r['tokens_per_s']:7.1f} tokens/s {r['ratio_vs_hf_peft_padded']:5.2f}x hf_peft_padded   "
                  f"{r['tokens_per_cpu_s']:7.1f} tokens/CPU-s {r['cpu_ratio_vs_hf_peft_padded']:5.2f}x   "
                  f"warm-up {r['warmup_s']:.0f} s")
        if "ours_packed_compiled" in res:  # the strongest baseline: HF+PEFT compiled too
            print(f"ours_packed_compiled vs hf_peft_padded_compiled: "
                  f"{res['ours_packed_compiled']['tokens_per_s'] / res['hf_peft_padded_compiled']['tokens_per_s']:.2f}x")
    elif args.mode == "gpu-mix":
        print(f"7B-shaped ({res['shape']}) LoRA r={res['lora_r']}, lengths {res['mix'][0]}-{res['mix'][1]} "
              f"({res['video_tokens']} video), batch {res['batch']}, {res['tokens']} timed tokens on {res['device']}")
        for k in ("baseline", "ours"):
            r = res[k]
            print(f"{k:9s} {r['tokens_per_s']:10.0f} tokens/s  peak {r['peak_gib']:.1f} GiB")
        print(f"speedup ours (packed, {res['attention']}) / HF+PEFT padded: {res['speedup']:.2f}x")
    elif gpu:
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
