import math

import pytest
import torch
import torch.nn.functional as F

from ski_lvlm.losses import CaptionContrastiveLoss, SKIVLMLoss, SkeletonTextLoss, resample_steps, total_loss


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


def _unit_texts(rows: list[list[float]]) -> torch.Tensor:
    """[4, 8] unit vectors: dims 0-3 as given, dim 7 takes up the rest of the norm.

    With ``emb = e_0..e_3`` the logit ``[i, j]`` is ``scale * text[j, i]``, so one entry of ``rows`` moves
    exactly one logit and nothing else.
    """
    t = torch.zeros(4, 8, dtype=torch.float64)
    t[:, :4] = torch.tensor(rows, dtype=torch.float64)
    t[:, 7] = (1 - (t[:, :4] ** 2).sum(1)).sqrt()
    return t


def _hand_masked_info_nce(logits: list[list[float]], same: list[list[bool]]) -> float:
    """Symmetric InfoNCE written out: a pair with the same caption is left out of both softmax sums."""
    n = len(logits)

    def direction(at) -> float:
        return sum(-at(i, i) + math.log(sum(math.exp(at(i, j)) for j in range(n) if i == j or not same[i][j]))
                   for i in range(n)) / n

    return (direction(lambda i, j: logits[i][j]) + direction(lambda i, j: logits[j][i])) / 2


def test_caption_contrastive_masks_duplicate_captions():
    emb = torch.eye(4, 8, dtype=torch.float64)
    rows = [[0.5, 0.4, -0.1, 0.2], [0.3, 0.6, 0.1, -0.2], [0.2, -0.3, 0.7, 0.1], [-0.1, 0.2, 0.3, 0.8]]
    scale = torch.tensor(10.0)
    same = [[True, True, False, False], [True, True, False, False], [False, False, True, False],
            [False, False, False, True]]  # clips 0 and 1 have the same caption
    loss_fn = CaptionContrastiveLoss()

    def loss(rows, mask=True) -> torch.Tensor:
        return loss_fn(emb, _unit_texts(rows), scale, same=torch.tensor(same) if mask else None)["caption"]

    logits = [[10.0 * rows[j][i] for j in range(4)] for i in range(4)]  # [i, j] = scale * text[j, i]
    hand = torch.tensor(_hand_masked_info_nce(logits, same), dtype=torch.float64)
    torch.testing.assert_close(loss(rows).double(), hand, rtol=1e-5, atol=1e-5)
    plain = _hand_masked_info_nce(logits, [[False] * 4 for _ in range(4)])
    torch.testing.assert_close(loss(rows, mask=False).double(), torch.tensor(plain, dtype=torch.float64),
                               rtol=1e-5, atol=1e-5)
    assert abs(loss(rows).item() - plain) > 0.05  # the mask matters for this batch
    # moving a masked logit ([0, 1]: clip 0 vs clip 1's identical caption) leaves the loss unchanged ...
    masked_moved = [r[:] for r in rows]
    masked_moved[1][0] = -0.5
    torch.testing.assert_close(loss(masked_moved), loss(rows))
    # ... while moving an unmasked one ([0, 2]) by the same amount changes it
    unmasked_moved = [r[:] for r in rows]
    unmasked_moved[2][0] = -0.5 + rows[2][0] - rows[1][0]
    assert abs(loss(unmasked_moved).item() - loss(rows).item()) > 1e-3


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


def _steps_out(video_steps, skeleton_steps):
    b = len(video_steps)
    return {"video_logits": torch.zeros(b, 3), "skeleton_logits": torch.zeros(b, 3),
            "video_steps": video_steps, "skeleton_steps": skeleton_steps}


def test_step_distillation_is_zero_for_one_direction_and_four_for_the_opposite():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, 4, 6, generator=g)  # [b, t, w]
    loss = SKIVLMLoss(alpha=1.0, distill_on="steps")
    # other lengths, same directions: 0; opposite directions: 4 (the unit-vector distance, as for features)
    same = loss(_steps_out(v, 3 * v), torch.tensor([0, 1]))["distill"]
    torch.testing.assert_close(same, torch.tensor(0.0), atol=1e-6, rtol=0)
    opposite = SKIVLMLoss(alpha=2.0, distill_on="steps")(_steps_out(v, -0.5 * v), torch.tensor([0, 1]))["distill"]
    torch.testing.assert_close(opposite, torch.tensor(2 * 4.0))


def test_step_distillation_resamples_the_teacher_to_the_frames_and_pulls_only_the_video():
    v = torch.ones(1, 8, 2, requires_grad=True)  # 8 frames, all pointing at (1, 1)
    s = torch.stack([torch.ones(4), torch.linspace(1, -1, 4)], -1)[None]  # [1, T'=4, 2]: (1, 1) turning to (1, -1)
    terms = SKIVLMLoss(alpha=1.0, distill_on="steps")(_steps_out(v, s), torch.tensor([0]))
    assert set(terms) == {"video_text", "distill"}  # a teacher without gradient gets no CE term
    terms["distill"].backward()
    assert torch.equal(v.grad[0, 0], torch.zeros(2))  # the first frame already matches the first step
    assert v.grad[0, -1, 1] > 0  # the last frame is pulled down towards (1, -1)
    with pytest.raises(ValueError, match="step_head"):
        SKIVLMLoss(distill_on="steps")({"video_logits": torch.zeros(1, 3), "skeleton_logits": torch.zeros(1, 3)},
                                       torch.tensor([0]))
    with pytest.raises(ValueError, match="one width"):
        SKIVLMLoss(distill_on="steps")(_steps_out(torch.ones(1, 8, 3), s), torch.tensor([0]))


def test_resampling_four_steps_to_eight_frames_keeps_a_ramp():
    ramp = torch.arange(4.0).reshape(1, 4, 1).expand(2, 4, 3)  # [b, T'=4, w]: 0, 1, 2, 3 on every channel
    out = resample_steps(ramp, 8)  # [b, 8, w]
    assert out.shape == (2, 8, 3)
    # cell centres (align_corners=False): frame i sits at step i/2 - 1/4, held at the ends
    expected = torch.tensor([0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0])
    torch.testing.assert_close(out[0, :, 0], expected)
    assert torch.equal(out[:, :, 0], out[:, :, 2])
    assert torch.equal(resample_steps(ramp, 4), ramp)  # same length: untouched
