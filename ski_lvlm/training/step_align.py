"""Per-step alignment of the LVLM's video tokens to its skeleton tokens (``loss.distill_on: steps``).

Why: with skeleton injection alone (``data.p_inject``) the skeleton tokens are extra context next to the
video tokens during instruction tuning, and nothing in the loss ties the two. At test time, without
skeletons, the video pathway holds what it would have learned alone; on the quickstart world injecting
skeletons into half of the samples changed caption accuracy by +1.0 point, CI [-5.0, 7.5] (README). This
term ties them: each frame's projected video token is pulled towards the projected skeleton token of the
same moment, so what the LLM learns to read from skeleton tokens is written where the video tokens will
be at test time. The skeleton side is the target and gets no gradient from this term (it would otherwise
meet the video side halfway, or both would collapse onto one point); the skeleton projector learns only
from the language-model loss of the samples that carry skeleton tokens.

Layout it relies on (:func:`ski_lvlm.models.pooling.spatio_temporal_pool`): the first ``num_frames`` rows of
a video's tokens are its sampled frames in time order (each the mean over the frame's patches); zero rows up
to ``max_frames``, the spatial rows and any summary tokens follow and are left alone. Skeleton tokens are the encoder's ``T'`` steps in time order; both tile the whole
clip, so the steps are resampled linearly onto the frames (:func:`ski_lvlm.losses.resample_steps`).
"""

from __future__ import annotations

import torch

from ski_lvlm.losses import resample_steps, unit_distance

__all__ = ["step_alignment"]


def step_alignment(model: torch.nn.Module, video_features: torch.Tensor, skeleton_features: torch.Tensor,
                   num_frames: int) -> torch.Tensor:
    """Mean squared distance of unit vectors (in [0, 4]) between each frame's projected video token and the
    projected skeleton token at the same moment.

    Args:
        model: an LVLM (its ``video_projector`` and ``skeleton_projector`` are used).
        video_features: ``[b, n_v, d_v]`` tower features; the first ``num_frames`` rows are the frames.
        skeleton_features: ``[b, T', d_s]`` skeleton-encoder steps of the same ``b`` clips.
        num_frames: the sampled frames (``config.num_frames``), which tile the clip as the skeleton steps do.
    """
    if video_features.shape[0] != skeleton_features.shape[0]:
        raise ValueError(f"{video_features.shape[0]} videos but {skeleton_features.shape[0]} skeletons to align")
    if video_features.shape[1] < num_frames:
        raise ValueError(f"video features have {video_features.shape[1]} rows, fewer than {num_frames} frames")
    v_param = next(model.video_projector.parameters())
    frames = model.video_projector(video_features.to(v_param))[:, :num_frames]  # [b, t, d]
    s_param = next(model.skeleton_projector.parameters())
    with torch.no_grad():  # the target: no gradient reaches the skeleton projector from here
        steps = model.skeleton_projector(skeleton_features.to(s_param))  # [b, T', d]
        target = resample_steps(steps.float(), num_frames)  # [b, t, d]
    return unit_distance(frames, target)
