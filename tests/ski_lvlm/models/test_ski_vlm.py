import json
import math

import pytest
import torch

from ski_lvlm.losses import SKIVLMLoss, total_loss
from ski_lvlm.models.clip_towers import get_tokenizer
from ski_lvlm.models.ski_vlm import (
    build_ski_vlm, build_skeleton_clip, build_video_clip, load_model, load_skeleton_clip, load_video_clip,
    save_model, text_tokenizer, tokenize_classes,
)

TEMPLATES = ("a video of a person {}.", "a person {}.")
NAMES = ["wave left hand", "wave right hand", "sit down"]


@pytest.fixture(scope="module")
def tokens():
    return tokenize_classes(get_tokenizer("ski-tiny-ViT"), NAMES, TEMPLATES)


def _inputs(b=2):
    return torch.randn(b, 3, 3, 64, 64), torch.randn(b, 3, 16, 25, 2)


def test_skeleton_clip_logits_and_scale(tokens):
    model = build_skeleton_clip(encoder="tiny", text_pool="mean")
    assert not hasattr(model.text, "visual")
    assert model.head.logit_scale.item() == pytest.approx(math.log(100))
    out = model(_inputs()[1], tokens, num_templates=2)
    assert out["logits"].shape == (2, 3)
    torch.testing.assert_close(out["logits"], 100 * out["sims"])
    assert out["sims"].abs().max() <= 1 + 1e-5
    text = model.class_embeddings(tokens, 2)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(3))


def test_faithful_logits_are_unscaled_dot_products(tokens):
    model = build_skeleton_clip(encoder="tiny", logit_mode="none").eval()
    x = _inputs()[1]
    out = model(x, tokens[::2], num_templates=1)
    expected = model.encode_skeleton(x) @ model.encode_text(tokens[::2], normalize=True).t()
    torch.testing.assert_close(out["logits"], expected)
    assert model.head.logit_scale is None
    video = build_video_clip(logit_mode="none").eval()  # original video logits: unscaled cosine similarities
    frames = _inputs()[0]
    out = video(frames, tokens[::2])
    expected = video.encode_video(frames, normalize=True) @ video.encode_text(tokens[::2], normalize=True).t()
    torch.testing.assert_close(out["logits"], expected)


def test_freeze_text_trains_only_the_encoder(tokens):
    model = build_skeleton_clip(encoder="tiny", freeze_text=True)
    out = model(_inputs()[1], tokens, num_templates=2)
    out["logits"].sum().backward()
    for name, p in model.named_parameters():
        if name.startswith("text."):
            assert not p.requires_grad and p.grad is None, name
        elif p.requires_grad:
            assert p.grad is not None, name


def test_video_clip_is_a_temporal_mean(tokens):
    model = build_video_clip().eval()
    video = _inputs()[0]
    frames = model.clip.encode_image(video.flatten(0, 1)).reshape(2, 3, -1)
    torch.testing.assert_close(model.encode_video(video), frames.mean(1))
    pooled, tok = model.video_tokens(video)
    assert pooled.shape == (2, 3, 64) and tok.shape == (2, 3, 16, 64)
    model.lock_image_tower(unlocked_layers=1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and n.startswith("clip.visual.")}
    assert trainable and all(".resblocks.1." in n or "ln_post" in n or n.endswith("proj") for n in trainable)


def test_ski_vlm_outputs_and_frozen_teacher_gets_no_gradient(tokens):
    model = build_ski_vlm(build_video_clip(), build_skeleton_clip(encoder="tiny"), teacher_trainable=False)
    model.train()
    assert not model.skeleton.training  # frozen teacher stays in eval mode (BatchNorm stats frozen)
    video, skel = _inputs()
    out = model(video, tokens, 2, skeleton=skel)
    assert {"video_logits", "video_sims", "skeleton_logits", "skeleton_sims"} <= set(out)
    terms = SKIVLMLoss(alpha=10.0)(out, torch.tensor([0, 2]))
    assert set(terms) == {"video_text", "distill"}  # a frozen teacher has no CE term
    total_loss(terms).backward()
    assert all(p.grad is None for p in model.skeleton.parameters())
    assert all(p.grad is not None for n, p in model.video.named_parameters() if p.requires_grad)


def test_collaborative_teacher_gets_gradient_from_all_terms(tokens):
    model = build_ski_vlm(build_video_clip(), build_skeleton_clip(encoder="tiny"), teacher_trainable=True)
    video, skel = _inputs()
    terms = SKIVLMLoss(alpha=10.0)(model(video, tokens, 2, skeleton=skel), torch.tensor([0, 1]))
    assert set(terms) == {"video_text", "skel_text", "distill"}
    terms["distill"].backward()  # the MSE alone reaches both branches (no stop-gradient)
    assert model.skeleton.encoder.fc.weight.grad is not None
    assert model.video.clip.visual.proj.grad is not None


def test_vifi_baseline_has_no_skeleton_branch(tokens):
    model = build_ski_vlm(build_video_clip(), None)
    out = model(_inputs()[0], tokens, 2, skeleton=_inputs()[1])
    assert set(out) == {"video_logits", "video_sims", "video_embedding"}
    with pytest.raises(ValueError, match="no skeleton branch"):
        model.encode_skeleton(_inputs()[1])


@pytest.mark.slow
def test_save_load_roundtrip_and_branch_extraction(tmp_path, tokens):
    model = build_ski_vlm(build_video_clip(text_pool="mean"), build_skeleton_clip(encoder="tiny")).eval()
    save_model(model, tmp_path / "m")
    video, skel = _inputs()
    again = load_model(tmp_path / "m")
    torch.testing.assert_close(again(video, tokens, 2, skeleton=skel)["video_logits"],
                               model(video, tokens, 2, skeleton=skel)["video_logits"])
    vid = load_video_clip(tmp_path / "m")
    torch.testing.assert_close(vid.encode_video(video), model.encode_video(video))
    sk = load_skeleton_clip(tmp_path / "m")
    torch.testing.assert_close(sk.skeleton_features(skel), model.skeleton.skeleton_features(skel))
    # strict loading: a folder whose weights miss keys fails loudly
    save_model(build_video_clip(), tmp_path / "v")
    (tmp_path / "v" / "model_config.json").write_text((tmp_path / "m" / "model_config.json").read_text())
    with pytest.raises(ValueError, match="do not match"):
        load_model(tmp_path / "v")


def test_median_residual_model_sees_residuals_everywhere_and_round_trips(tmp_path, tokens):
    from ski_lvlm.models.clip_towers import apply_frame_input

    model = build_video_clip(frame_input="median_residual").eval()
    video = _inputs()[0]
    residual = apply_frame_input(video, "median_residual")
    frames = model.clip.encode_image(residual.flatten(0, 1)).reshape(2, 3, -1)
    torch.testing.assert_close(model.encode_video(video), frames.mean(1))
    # a static clip (the same frame 3 times) has nothing moving: every video gives the same embedding
    still = video[:, :1].expand(-1, 3, -1, -1, -1)
    emb = model.encode_video(still)
    torch.testing.assert_close(emb[0], emb[1])
    pooled, _ = model.video_tokens(video)
    torch.testing.assert_close(pooled, frames)
    save_model(build_ski_vlm(model, None), tmp_path / "m")
    again = load_video_clip(tmp_path / "m")
    assert again.frame_input == "median_residual" and again.config["frame_input"] == "median_residual"
    torch.testing.assert_close(again.encode_video(video), model.encode_video(video))
    with pytest.raises(ValueError, match="frame_input must be one of"):
        build_video_clip(frame_input="diff")


# ------------------------------------------------------------------ text_encoder: clip (default) or a HF folder


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    from tests.tiny_text import make_tiny_bert

    return str(make_tiny_bert(tmp_path_factory.mktemp("bert")))


def test_default_text_encoder_is_clip_and_old_folders_load_as_clip(tmp_path, tokens):
    import open_clip

    model = build_skeleton_clip(encoder="tiny", text_pool="mean").eval()
    assert isinstance(model.text, open_clip.CLIP) and model.config["text_encoder"] == "clip"
    save_model(model, tmp_path / "m")
    cfg_file = tmp_path / "m" / "model_config.json"
    cfg = json.loads(cfg_file.read_text())
    del cfg["text_encoder"]  # a folder written before text_encoder existed
    cfg_file.write_text(json.dumps(cfg))
    again = load_skeleton_clip(tmp_path / "m")
    torch.testing.assert_close(again.class_embeddings(tokens, 2), model.class_embeddings(tokens, 2))


@pytest.mark.slow
def test_hf_text_ski_vlm_round_trip_and_feature_paths(tmp_path, bert):
    from ski_lvlm.models.encoders import load_video_encoder
    from ski_lvlm.models.lvlm.modeling import VideoTower

    teacher = build_skeleton_clip(encoder="tiny", text_encoder=bert, text_unlocked_layers=1)
    model = build_ski_vlm(build_video_clip(text_encoder=bert), teacher).eval()
    tokens = tokenize_classes(text_tokenizer(model.video.config), NAMES, TEMPLATES)  # [6, 64] WordPiece ids
    video, skel = _inputs()
    save_model(model, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "model_config.json").read_text())
    assert cfg["video"]["text_encoder"] == bert and cfg["skeleton"]["text_unlocked_layers"] == 1
    again = load_model(tmp_path / "m")
    want, got = model(video, tokens, 2, skeleton=skel), again(video, tokens, 2, skeleton=skel)
    for key in ("video_logits", "skeleton_logits"):
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)
    sk = load_skeleton_clip(tmp_path / "m")  # the teacher keeps its unlocked last block when reloaded
    assert {n for n, p in sk.named_parameters() if p.requires_grad} == \
        {n for n, p in teacher.named_parameters() if p.requires_grad}
    # the LVLM feature path: only the image tower of this folder is used
    visual = load_video_clip(tmp_path / "m").clip.visual.state_dict()
    tower = VideoTower({"kind": "ski_vlm", "pretrained": str(tmp_path / "m"), "model_config": cfg["video"]}, None)
    tower.load_pretrained()
    enc = load_video_encoder(f"ski_vlm:{tmp_path / 'm'}", frames=3, max_frames=3)
    for state in (tower.visual.state_dict(), enc.visual.state_dict()):
        assert all(torch.equal(state[k], v) for k, v in visual.items())


def _seeded_ski_vlm(step_head: bool, teacher_trainable: bool = False):
    torch.manual_seed(0)
    return build_ski_vlm(build_video_clip(), build_skeleton_clip(encoder="tiny"), teacher_trainable=teacher_trainable,
                         step_head=step_head)


def test_step_distillation_reaches_the_video_tower_and_the_head_not_a_frozen_teacher(tokens):
    model = _seeded_ski_vlm(step_head=True)
    video, skel = _inputs()  # 3 frames, 16 skeleton frames -> T' = 4 teacher steps
    out = model(video, tokens, 2, skeleton=skel)
    assert out["video_steps"].shape == (2, 3, 48) and out["skeleton_steps"].shape == (2, 4, 48)
    assert not out["skeleton_steps"].requires_grad
    torch.testing.assert_close(out["video_embedding"], model.encode_video(video))  # the mean is still the clip
    terms = SKIVLMLoss(alpha=1.0, distill_on="steps")(out, torch.tensor([0, 2]))
    assert set(terms) == {"video_text", "distill"} and 0 < terms["distill"] <= 4
    terms["distill"].backward()  # the step term alone
    assert model.step_head.weight.grad is not None and model.step_head.weight.grad.abs().sum() > 0
    assert model.video.clip.visual.proj.grad is not None
    assert all(p.grad is None for p in model.skeleton.parameters())
    # without a skeleton (evaluation) there are no step outputs; without a teacher there is no head to build
    assert "video_steps" not in model(video, tokens, 2)
    with pytest.raises(ValueError, match="needs a skeleton teacher"):
        build_ski_vlm(build_video_clip(), None, step_head=True)


@pytest.mark.parametrize("teacher_trainable", [False, True])
def test_the_other_distill_modes_see_bit_identical_outputs(tokens, teacher_trainable):
    """The step head only adds outputs: the same seed gives the same logits, sims, embeddings and losses."""
    video, skel = _inputs()
    plain = _seeded_ski_vlm(step_head=False, teacher_trainable=teacher_trainable)(video, tokens, 2, skeleton=skel)
    steps = _seeded_ski_vlm(step_head=True, teacher_trainable=teacher_trainable)(video, tokens, 2, skeleton=skel)
    assert set(steps) - set(plain) == {"video_steps", "skeleton_steps"}
    for k, v in plain.items():
        assert torch.equal(v, steps[k]), k
    y = torch.tensor([0, 1])
    for mode in ("sims", "logits", "features"):
        a, b = SKIVLMLoss(distill_on=mode)(plain, y), SKIVLMLoss(distill_on=mode)(steps, y)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), mode


def test_step_head_round_trips_and_the_video_branch_loads_without_it(tmp_path, tokens):
    model = _seeded_ski_vlm(step_head=True).eval()
    save_model(model, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "model_config.json").read_text())
    assert cfg["step_head"] is True and "step_head" not in cfg["video"]
    video, skel = _inputs()
    again = load_model(tmp_path / "m")
    assert torch.equal(again.step_head.weight, model.step_head.weight)
    torch.testing.assert_close(again(video, tokens, 2, skeleton=skel)["video_steps"],
                               model(video, tokens, 2, skeleton=skel)["video_steps"])
    vid = load_video_clip(tmp_path / "m")  # the skeleton-free inference model: no head in it
    assert not any("step_head" in k for k in vid.state_dict())
    torch.testing.assert_close(vid.encode_video(video), model.video.encode_video(video))
    assert "step_head" not in build_ski_vlm(build_video_clip(), None).config  # other folders keep their config
