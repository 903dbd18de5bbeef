import pytest
import torch
import torch.nn.functional as F

from ski_lvlm.losses import CaptionContrastiveLoss, SKIVLMLoss, SkeletonTextLoss, total_loss


def _out(requires_grad=True):
    g = torch.Generator().manual_seed(0)
    vs = torch.rand(4, 5, generator=g) * 2 - 1
    ss = (torch.rand(4, 5, generator=g) * 2 - 1).requires_grad_(requires_grad)
    return {"video_logits": 100 * vs, "video_sims": vs, "skeleton_logits": 50 * ss, "skeleton_sims": ss}


def test_skeleton_text_loss_is_named_cross_entropy():
    logits, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    terms = SkeletonTextLoss()(logits, y)
    assert set(terms) == {"skel_text"}
    torch.testing.assert_close(terms["skel_text"], F.cross_entropy(logits, y))


def test_ski_vlm_loss_terms_and_weights():
    out, y = _out(), torch.tensor([0, 1, 2, 3])
    terms = SKIVLMLoss(alpha=10.0)(out, y)
    assert set(terms) == {"video_text", "skel_text", "distill"}
    torch.testing.assert_close(terms["video_text"], F.cross_entropy(out["video_logits"], y))
    torch.testing.assert_close(terms["skel_text"], F.cross_entropy(out["skeleton_logits"], y))
    torch.testing.assert_close(terms["distill"], 10 * F.mse_loss(out["video_sims"], out["skeleton_sims"]))
    on_logits = SKIVLMLoss(alpha=2.0, distill_on="logits")(out, y)["distill"]
    torch.testing.assert_close(on_logits, 2 * F.mse_loss(out["video_logits"], out["skeleton_logits"]))
    torch.testing.assert_close(total_loss(terms), terms["video_text"] + terms["skel_text"] + terms["distill"])


def test_alpha_zero_and_missing_skeleton_drop_terms():
    out, y = _out(), torch.tensor([0, 1, 2, 3])
    assert set(SKIVLMLoss(alpha=0.0)(out, y)) == {"video_text", "skel_text"}
    video_only = {k: v for k, v in out.items() if k.startswith("video_")}
    assert set(SKIVLMLoss(alpha=10.0)(video_only, y)) == {"video_text"}
    assert set(SKIVLMLoss(alpha=10.0)(_out(requires_grad=False), y)) == {"video_text", "distill"}


def test_caption_contrastive_masks_duplicate_captions():
    emb = torch.randn(4, 8)
    text = emb.clone()
    loss_fn = CaptionContrastiveLoss()
    scale = torch.tensor(10.0)
    plain = loss_fn(emb, text, scale)["caption"]
    same = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    masked = loss_fn(emb, text, scale, same=same)["caption"]
    assert masked <= plain + 1e-6 and torch.isfinite(masked)


def test_feature_distillation_is_the_squared_distance_of_unit_embeddings():
    # video [3, 4] -> [0.6, 0.8], skeleton [2, 0] -> [1, 0]: |(-0.4, 0.8)|^2 = 0.8; second pair identical -> 0
    video = torch.tensor([[3.0, 4.0], [0.0, 5.0]], requires_grad=True)
    skel = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # frozen teacher: no grad
    out = {"video_logits": torch.zeros(2, 3), "video_embedding": video,
           "skeleton_logits": torch.zeros(2, 3), "skeleton_embedding": skel}
    terms = SKIVLMLoss(alpha=10.0, distill_on="features")(out, torch.tensor([0, 1]))
    assert set(terms) == {"video_text", "distill"}  # the frozen teacher gets no CE term
    torch.testing.assert_close(terms["distill"], torch.tensor(10 * 0.8 / 2))
    terms["distill"].backward()
    # the gradient moves the video embedding towards the teacher's direction and leaves the matching pair alone
    assert video.grad[0, 0] < 0 and video.grad[0, 1] > 0 and torch.equal(video.grad[1], torch.zeros(2))


def test_feature_distillation_needs_one_width_and_a_known_mode():
    out = {"video_logits": torch.zeros(2, 3), "video_embedding": torch.ones(2, 4),
           "skeleton_logits": torch.zeros(2, 3), "skeleton_embedding": torch.ones(2, 5)}
    with pytest.raises(ValueError, match="one width"):
        SKIVLMLoss(distill_on="features")(out, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="distill_on"):
        SKIVLMLoss(distill_on="tokens")
