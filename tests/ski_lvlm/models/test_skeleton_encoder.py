import pytest
import torch

from ski_lvlm.models.skeleton_encoder import (
    NTU_JOINT_PARTS, SkeletonEncoder, create_skeleton_encoder, hop_distances, list_skeleton_encoders,
)


def test_presets_listed():
    assert {"tiny", "small", "base"} <= set(list_skeleton_encoders())


@pytest.mark.slow
def test_base_golden_shapes():
    """The paper setting: 300 padded frames -> 75 steps of 216 channels, 512-d embedding."""
    enc = create_skeleton_encoder("base").eval()
    assert len(enc.layers) == 10 and enc.width == 216
    with torch.no_grad():
        emb, per_step = enc(torch.randn(2, 3, 300, 25, 2))
    assert emb.shape == (2, 512) and per_step.shape == (2, 75, 216)
    assert enc.num_steps(300) == 75


def test_tiny_shapes_and_odd_lengths():
    enc = create_skeleton_encoder("tiny").eval()
    for t in (16, 17, 30):
        emb, per_step = enc(torch.randn(3, 3, t, 25, 2))
        assert emb.shape == (3, enc.embed_dim)
        assert per_step.shape == (3, enc.num_steps(t), enc.width)


def test_per_step_is_a_permute_of_time_not_a_view():
    """Per-step features follow time: changing only the second half of the clip leaves early steps alone.

    With the original ``view`` bug channels and time are mixed, so early "steps" would change too.
    """
    torch.manual_seed(0)
    enc = create_skeleton_encoder("tiny", stride_layers=()).eval()  # no stride: step i = frame i
    for unit in enc.layers:  # make temporal receptive fields local (kernel-1 branches only)
        for branch in unit.temporal.branches:
            for m in branch.modules():
                if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1:
                    m.weight.data.zero_()
    x = torch.randn(1, 3, 40, 25, 2)
    y = x.clone()
    y[:, :, 30:] += 1.0
    with torch.no_grad():
        (_, a), (_, b) = enc(x), enc(y)
    # max-pool reaches 1 frame per unit (3 units) -> frames < 27 are untouched
    torch.testing.assert_close(a[:, :26], b[:, :26])
    assert not torch.allclose(a[:, 31:], b[:, 31:])
    pooled, per_step = enc.forward_features(x)
    torch.testing.assert_close(pooled, per_step.mean(1), rtol=1e-5, atol=1e-5)


def test_persons_are_averaged_and_order_invariant():
    enc = create_skeleton_encoder("tiny").eval()
    enc.data_bn = torch.nn.Identity()  # data_bn is per person slot; without it persons are symmetric
    x = torch.randn(2, 3, 16, 25, 2)
    with torch.no_grad():
        e1, s1 = enc(x)
        e2, s2 = enc(x.flip(-1))
    torch.testing.assert_close(e1, e2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s1, s2, rtol=1e-5, atol=1e-5)


def test_gradients_and_dtypes():
    enc = create_skeleton_encoder("tiny")
    emb, per_step = enc(torch.randn(2, 3, 16, 25, 2))
    (emb.sum() + per_step.sum()).backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None]
    # alpha starts at 0, but it still receives a gradient through the softmax branch
    assert missing == []
    enc_bf16 = create_skeleton_encoder("tiny").to(torch.bfloat16).eval()
    emb, per_step = enc_bf16(torch.randn(1, 3, 8, 25, 2))  # fp32 input is cast to the module dtype
    assert emb.dtype == torch.bfloat16 and per_step.dtype == torch.bfloat16


def test_bad_input_shape_message():
    enc = create_skeleton_encoder("tiny")
    with pytest.raises(ValueError, match="25 joints"):
        enc(torch.randn(1, 3, 16, 17, 2))


def test_graph_helpers():
    hops = hop_distances()
    assert hops.shape == (25, 25) and (hops == hops.t()).all() and hops.diagonal().eq(0).all()
    assert hops[1, 0] == 1 and hops[3, 0] == 4  # spine_mid-spine_base; head is 4 bones above spine_base
    assert len(NTU_JOINT_PARTS) == 25 and max(NTU_JOINT_PARTS) == 4
    with pytest.raises(ValueError):
        SkeletonEncoder(width=50, heads=4)  # not divisible into heads
