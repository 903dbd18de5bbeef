"""step_alignment: the per-step distance of projected video frames to projected skeleton steps (loss.distill_on=steps)."""

import pytest
import torch
from torch import nn

from ski_lvlm.losses import resample_steps
from ski_lvlm.training.step_align import step_alignment

D = 6


class TwoProjectors(nn.Module):
    def __init__(self):
        super().__init__()
        self.video_projector = nn.Linear(D, D)
        self.skeleton_projector = nn.Linear(D, D)
        with torch.no_grad():
            for p in (self.video_projector, self.skeleton_projector):
                p.weight.copy_(torch.eye(D))
                p.bias.zero_()


def test_distance_is_0_for_the_same_direction_and_4_for_the_opposite():
    model = TwoProjectors()
    steps = torch.randn(2, 4, D)  # [b, T' = t, d]
    spatial = torch.randn(2, 3, D)  # rows after the frames: never compared
    video = torch.cat([2.5 * steps, spatial], dim=1)  # [b, t + 3, d]: same directions, other length
    assert step_alignment(model, video, steps, num_frames=4).item() == pytest.approx(0.0, abs=1e-6)
    assert step_alignment(model, torch.cat([-steps, spatial], 1), steps, 4).item() == pytest.approx(4.0, abs=1e-5)


def test_skeleton_steps_are_resampled_onto_the_frames_and_later_rows_are_ignored():
    model = TwoProjectors()
    skel = torch.randn(1, 8, D)  # 8 steps onto 4 frames
    frames = resample_steps(skel, 4)
    video = torch.cat([frames, torch.randn(1, 5, D)], 1)
    assert step_alignment(model, video, skel, 4).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.cat([frames, torch.randn(1, 5, D)], 1)  # padded / spatial / summary rows differ
    assert step_alignment(model, other, skel, 4).item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_reaches_the_video_projector_only():
    model = TwoProjectors()
    step_alignment(model, torch.randn(3, 7, D), torch.randn(3, 5, D), 4).backward()
    assert model.video_projector.weight.grad is not None and model.video_projector.weight.grad.abs().sum() > 0
    assert model.skeleton_projector.weight.grad is None  # the skeleton side is the target


def test_mismatched_inputs_are_errors_that_say_what_differs():
    model = TwoProjectors()
    with pytest.raises(ValueError, match="2 videos but 3 skeletons"):
        step_alignment(model, torch.randn(2, 7, D), torch.randn(3, 5, D), 4)
    with pytest.raises(ValueError, match="3 rows, fewer than 4 frames"):
        step_alignment(model, torch.randn(2, 3, D), torch.randn(2, 5, D), 4)
