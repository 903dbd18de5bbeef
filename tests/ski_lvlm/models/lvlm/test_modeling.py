"""SkiLvlmForConditionalGeneration: merge placement, count checks, ids/embeds equality, save/load, generate."""

import pytest
import torch
from safetensors.torch import load_file

from ski_lvlm.models.lvlm import SkiLvlmForConditionalGeneration
from ski_lvlm.models.lvlm.presets import create_lvlm, text_config

from .conftest import D_S, D_V, N_S, N_V, batch_of, make_tiny


def test_features_land_exactly_at_placeholders(tiny, conv):
    model, proc = tiny
    ids, _, _ = batch_of(proc, [conv, conv], [True, False])  # skeleton tokens only in sample 0
    video = torch.randn(2, N_V, D_V)
    skel = torch.randn(1, N_S, D_S)
    with torch.no_grad():
        embeds = model.embed_inputs(ids, video_features=video, skeleton_features=skel)
        vid_rows = model.video_projector(video)  # [2, N_V, d]
        sk_rows = model.skeleton_projector(skel)  # [1, N_S, d]
        plain = model.get_input_embeddings()(ids.clamp(max=model.config.text_config.vocab_size - 1))
    vmask = ids == proc.video_token_id
    smask = ids == proc.skeleton_token_id
    assert vmask.sum() == 2 * N_V and smask[0].sum() == N_S and smask[1].sum() == 0
    for b in range(2):
        torch.testing.assert_close(embeds[b][vmask[b]], vid_rows[b])
    torch.testing.assert_close(embeds[0][smask[0]], sk_rows[0])
    other = ~(vmask | smask)
    torch.testing.assert_close(embeds[other], plain[other])


def test_count_mismatch_raises_with_both_counts(tiny, conv):
    model, proc = tiny
    ids, _, _ = batch_of(proc, [conv], [False])
    with pytest.raises(ValueError, match=rf"{N_V} placeholder tokens .* {N_V - 1} feature rows"):
        model(input_ids=ids, video_features=torch.randn(1, N_V - 1, D_V))
    with pytest.raises(ValueError, match="no video features"):
        model(input_ids=ids)
    with pytest.raises(ValueError, match=rf"0 placeholder tokens .* {N_S} feature rows"):
        model(input_ids=ids, video_features=torch.randn(1, N_V, D_V), skeleton_features=torch.randn(1, N_S, D_S))


def test_input_ids_and_inputs_embeds_give_same_logits(tiny, conv):
    model, proc = tiny
    ids, _, mask = batch_of(proc, [conv, conv[:2]], [True, True])
    video, skel = torch.randn(2, N_V, D_V), torch.randn(2, N_S, D_S)
    with torch.no_grad():
        a = model(input_ids=ids, attention_mask=mask, video_features=video, skeleton_features=skel).logits
        embeds = model.embed_inputs(ids, video_features=video, skeleton_features=skel)
        b = model(inputs_embeds=embeds, attention_mask=mask).logits
        text_ids = torch.tensor([proc.tokenizer("a plain text prompt")["input_ids"]])
        c = model(input_ids=text_ids).logits
        d = model(inputs_embeds=model.get_input_embeddings()(text_ids)).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(c, d, rtol=0, atol=0)
    with pytest.raises(ValueError, match="need input_ids"):
        model(inputs_embeds=embeds, video_features=video)


def test_save_load_roundtrip_identical_logits(tmp_path, conv):
    model, proc = make_tiny("tiny-qwen2", projector_type="mlp2x_gelu",
                            video_encoder={"kind": "clip", "arch": "ski-tiny-ViT"}, num_frames=4, max_frames=4,
                            video_feature_dim=None, num_video_tokens=None)
    assert model.config.num_video_tokens == 4 + 16 and proc.num_video_tokens == 20
    model.save_pretrained(tmp_path / "m")
    proc.save_pretrained(tmp_path / "m")
    keys = load_file(str(tmp_path / "m" / "model.safetensors")).keys()
    assert any(k.startswith("video_tower.visual.") for k in keys) and "video_projector.2.weight" in keys
    again = SkiLvlmForConditionalGeneration.from_pretrained(tmp_path / "m").eval()
    from ski_lvlm.models.lvlm import SkiLvlmProcessor
    proc2 = SkiLvlmProcessor.from_pretrained(tmp_path / "m")
    ex = proc.build_example(conv)
    assert proc2.build_example(conv).input_ids == ex.input_ids
    frames = torch.rand(1, 4, 3, 64, 64)
    ids = torch.tensor([ex.input_ids])
    with torch.no_grad():
        a = model(input_ids=ids, pixel_values_videos=frames).logits
        b = again(input_ids=ids, pixel_values_videos=frames).logits
        # frames and the same tower's precomputed features are interchangeable
        c = again(input_ids=ids, video_features=again.encode_video(frames)).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(b, c, rtol=0, atol=0)


def test_generate_with_kv_cache_merges_features_once(tiny):
    model, proc = tiny
    inputs = proc(["Describe the video.", "What is the person doing now?"])  # left-padded batch
    video = torch.randn(2, N_V, D_V)
    calls = []
    handle = model.video_projector.register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            cached = model.generate(**inputs, video_features=video, max_new_tokens=6, do_sample=False,
                                    min_new_tokens=6)
        n_cached_calls = len(calls)
        with torch.no_grad():
            uncached = model.generate(**inputs, video_features=video, max_new_tokens=6, do_sample=False,
                                      min_new_tokens=6, use_cache=False)
    finally:
        handle.remove()
    assert n_cached_calls == 1  # prefill only
    assert torch.equal(cached, uncached)
    assert cached.shape[1] == inputs["input_ids"].shape[1] + 6


def test_wraps_pretrained_backbone_without_reinit(tmp_path):
    # a "pretrained" LLM folder: its weights must survive wrapping (post_init must not re-initialise them)
    from transformers import AutoModelForCausalLM

    from ski_lvlm.models.lvlm.presets import train_tokenizer

    tok = train_tokenizer(style="llama")
    llm = AutoModelForCausalLM.from_config(text_config("tiny-llama", vocab_size=len(tok)))
    llm.save_pretrained(tmp_path / "llm")
    tok.save_pretrained(tmp_path / "llm")
    model, proc = create_lvlm(str(tmp_path / "llm"), video_feature_dim=D_V, num_video_tokens=N_V)
    assert model.config.llm_name_or_path == str((tmp_path / "llm").resolve())
    assert proc.chat_template == "vicuna_v1_1"
    ref = llm.state_dict()
    for k, v in model.language_model.state_dict().items():
        # embeddings grew by the two placeholder rows (their mean: fit_vocab); the old rows are untouched
        assert torch.equal(v[: len(ref[k])], ref[k]), k
    assert model.language_model.get_input_embeddings().weight.shape[0] == len(tok) + 2 == len(proc.tokenizer)


def test_wrapping_a_peft_merged_backbone_keeps_its_swapped_in_modules():
    # PEFT's merge_and_unload swaps in new embedding modules (tied Qwen2 + modules_to_save): the wrapper's
    # post_init must not re-initialise them (regression: the adapter-only load path gave other logits)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ski_lvlm.models.lvlm import SkiLvlmConfig

    llm = AutoModelForCausalLM.from_config(text_config("tiny-qwen2", vocab_size=300))
    peft = get_peft_model(llm, LoraConfig(r=4, target_modules="all-linear", modules_to_save=["lm_head", "embed_tokens"],
                                          ensure_weight_tying=True, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for p in peft.parameters():
            if p.requires_grad:
                p.add_(0.5)
    merged = peft.merge_and_unload()
    want = merged.get_input_embeddings().weight.detach().clone()
    model = SkiLvlmForConditionalGeneration(SkiLvlmConfig(text_config=merged.config, video_feature_dim=D_V,
                                                          num_video_tokens=N_V), language_model=merged)
    assert torch.equal(model.get_input_embeddings().weight, want)
