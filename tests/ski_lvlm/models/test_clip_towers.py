import torch

from ski_lvlm.models.clip_towers import class_prompts, create_clip, frame_features, get_tokenizer
from ski_lvlm.models.pooling import num_video_tokens, spatio_temporal_pool


def test_tiny_clip_tokens_and_text():
    model = create_clip("ski-tiny-ViT")
    pooled, tokens = frame_features(model.visual, torch.randn(3, 3, 64, 64))
    assert pooled.shape == (3, 64) and tokens.shape == (3, 16, 64)
    text = get_tokenizer("ski-tiny-ViT")(class_prompts(["wave"])[0])
    assert model.encode_text(text).shape == (1, 64)


def test_small_preset_keeps_the_video_resolution():
    model = create_clip("ski-small-ViT")
    pooled, tokens = frame_features(model.visual, torch.randn(1, 3, 112, 112))
    assert pooled.shape == (1, 64) and tokens.shape == (1, 49, 96)


def test_frame_features_matches_encode_image():
    model = create_clip("ski-tiny-ViT").eval()
    x = torch.randn(2, 3, 64, 64)
    pooled, _ = frame_features(model.visual, x)
    torch.testing.assert_close(pooled, model.encode_image(x))


def test_spatio_temporal_pool_values():
    tok = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    out = spatio_temporal_pool(tok, max_frames=6)
    assert out.shape == (2, num_video_tokens(3, 4, 6), 5)
    torch.testing.assert_close(out[:, :3], tok.mean(2))
    assert out[:, 3:6].abs().sum() == 0
    torch.testing.assert_close(out[:, 6:], tok.mean(1))


def test_median_residual_removes_the_static_scene_and_keeps_what_moves():
    import pytest

    from ski_lvlm.models.clip_towers import apply_frame_input

    video = torch.full((2, 5, 3, 4, 4), 0.3)  # [b, t, 3, H, W]: a static room...
    video[0, 2, :, 1, 1] = 1.3  # ...where one pixel lights up in one frame of clip 0
    out = apply_frame_input(video, "median_residual")
    assert out.shape == video.shape
    expected = torch.zeros_like(video)
    expected[0, 2, :, 1, 1] = 1.0
    torch.testing.assert_close(out, expected)
    assert apply_frame_input(video, "rgb") is video
    # the median is per clip: a second clip with another room gives zeros too, whatever clip 0 does
    video[1] = -2.0
    assert apply_frame_input(video, "median_residual")[1].abs().max() == 0
    with pytest.raises(ValueError, match=">= 3 frames"):
        apply_frame_input(video[:, :2], "median_residual")
    with pytest.raises(ValueError, match="frame_input must be one of"):
        apply_frame_input(video, "flow")
