"""Padding-free packing: packed and padded batches give the same per-sample losses and gradients; an
attention that cannot keep samples apart is refused."""

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from ski_lvlm.data.lvlm_dataset import lvlm_collate, lvlm_pack_collate
from ski_lvlm.models.lvlm.packing import PACKED_ATTENTION, PackingError, use_packed_attention

from .conftest import D_S, D_V, N_S, N_V, make_tiny

TURNS = [("<video>\nDescribe the video.", "A person waves."), ("What happens next?", "The person sits down slowly."),
         ("Is anyone else there?", "No.")]


def conversation(n_turns: int) -> list[dict]:
    conv = []
    for q, a in TURNS[:n_turns]:
        conv += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    return conv


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-qwen2"])
def lora_model(request):
    """Tiny LVLM with LoRA (non-zero B, so adapter gradients depend on the whole path) and trainable projectors."""
    model, proc = make_tiny(request.param)
    model.requires_grad_(False)
    model.language_model = get_peft_model(model.language_model, LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(n)))
    model.video_projector.requires_grad_(True)
    model.skeleton_projector.requires_grad_(True)
    model.train()
    return model, proc


def samples(proc) -> list[dict]:
    """Four samples of different lengths; skeleton tokens in two of them."""
    g = torch.Generator().manual_seed(0)
    out = []
    for i, (turns, skel) in enumerate([(1, True), (3, False), (2, True), (1, False)]):
        ex = proc.build_example(conversation(turns), use_skeleton=skel)
        out.append({"id": str(i), "input_ids": ex.input_ids, "labels": ex.labels,
                    "video_features": torch.randn(N_V, D_V, generator=g),
                    "skeleton_features": torch.randn(N_S, D_S, generator=g) if skel else None})
    return out


def run(model, batch: dict, **extra):
    keys = ("input_ids", "labels", "attention_mask", "position_ids", "video_features", "skeleton_features",
            "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
    return model(**{k: batch[k] for k in keys if k in batch}, use_cache=False, **extra)


def per_sample_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of each row (``logits [b, s, V]``, ``labels [b, s]``)."""
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), reduction="none")
    ce = ce.view(labels.shape[0], -1)  # [b, s - 1]
    trained = labels[:, 1:] != -100
    return (ce * trained).sum(1) / trained.sum(1)


def grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("attention", [PACKED_ATTENTION, "sdpa", "eager"])
def test_packed_equals_padded_losses_and_gradients(lora_model, attention):
    model, proc = lora_model
    llm = model.language_model
    batch = samples(proc)
    padded = lvlm_collate(batch, pad_token_id=proc.tokenizer.pad_token_id)
    packed = lvlm_pack_collate(batch)
    assert packed["input_ids"].shape == (1, sum(len(b["input_ids"]) for b in batch))
    assert packed["num_tokens"] == padded["num_tokens"] < padded["input_ids"].numel()  # no padding

    llm.set_attn_implementation("sdpa")  # the reference: today's padded path
    ref = run(model, padded)
    ref.loss.backward()
    ref_grads = grads(model)
    with torch.no_grad():
        ref_per_sample = per_sample_losses(run(model, padded).logits, padded["labels"])

    llm.set_attn_implementation(attention)
    try:
        out = run(model, packed)
        assert out.logits.shape[1] == int((packed["labels"][0, 1:] != -100).sum())  # label positions only
        out.loss.backward()
        got_grads = grads(model)
        with torch.no_grad():
            logits = run(model, {**packed, "labels": None}).logits  # [1, N, V]
    finally:
        llm.set_attn_implementation("sdpa")
    bounds = packed["cu_seq_lens_q"].tolist()
    per_sample = torch.stack([per_sample_losses(logits[:, s:e], packed["labels"][:, s:e])[0]
                              for s, e in zip(bounds[:-1], bounds[1:])])
    torch.testing.assert_close(per_sample, ref_per_sample, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.loss, ref.loss, rtol=0, atol=1e-5)
    assert sorted(got_grads) == sorted(ref_grads) and any("lora_A" in n for n in ref_grads)
    assert any(n.startswith("skeleton_projector") for n in ref_grads)
    for n in ref_grads:
        torch.testing.assert_close(got_grads[n], ref_grads[n], rtol=1e-4, atol=1e-6, msg=n)
    # control: the same row attending across samples (one running position, no boundaries) differs
    with torch.no_grad():
        n = packed["input_ids"].shape[1]
        crossing = model(input_ids=packed["input_ids"], position_ids=torch.arange(n)[None],
                         video_features=packed["video_features"], skeleton_features=packed["skeleton_features"],
                         use_cache=False).logits
    s, e = bounds[1], bounds[2]
    assert (per_sample_losses(crossing[:, s:e], packed["labels"][:, s:e])[0] - ref_per_sample[1]).abs() > 1e-3


def test_packed_rows_never_reach_an_attention_that_ignores_boundaries(lora_model):
    model, proc = lora_model
    llm = model.language_model
    AttentionInterface.register("test_ignores_boundaries", sdpa_attention_forward)
    packed = lvlm_pack_collate(samples(proc))
    llm.set_attn_implementation("test_ignores_boundaries")
    try:
        with pytest.raises(PackingError, match="'test_ignores_boundaries' cannot be trusted to keep packed samples"):
            run(model, packed)
        with pytest.raises(PackingError, match="data.packing=false"):
            use_packed_attention(llm)
    finally:
        llm.set_attn_implementation("sdpa")
    # a padding mask next to a packed row would switch HF's per-sample masking off: refused as well
    with pytest.raises(PackingError, match="no attention_mask"):
        run(model, {**packed, "attention_mask": torch.ones_like(packed["input_ids"])})
    assert use_packed_attention(llm) == PACKED_ATTENTION  # sdpa is switched to the per-sample kernel
    llm.set_attn_implementation("sdpa")
