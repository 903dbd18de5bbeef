"""Video-ChatGPT spatio-temporal pooling of frame patch tokens."""

from __future__ import annotations

import torch

__all__ = ["spatio_temporal_pool", "num_video_tokens"]


def spatio_temporal_pool(tokens: torch.Tensor, max_frames: int | None = 100) -> torch.Tensor:
    """Pool per-frame patch tokens into ``max_frames`` temporal + ``n_patch`` spatial tokens.

    temporal = mean over patches (one token per frame, zero-padded to ``max_frames`` so every video
    yields the same token count, as in Video-ChatGPT's 100 + 256 = 356), spatial = mean over time.

    Args:
        tokens: ``[b, t, n_patch, d]`` or ``[t, n_patch, d]``.
        max_frames: pad the temporal part to this many rows; ``None`` keeps ``t`` rows.

    Returns:
        ``[b, max_frames + n_patch, d]`` (or without the batch dim when the input had none).
    """
    squeeze = tokens.dim() == 3
    if squeeze:
        tokens = tokens.unsqueeze(0)
    b, t, n_patch, d = tokens.shape
    if max_frames is not None and t > max_frames:
        raise ValueError(f"spatio_temporal_pool: {t} frames > max_frames={max_frames}")
    temporal = tokens.mean(dim=2)  # [b, t, d]
    spatial = tokens.mean(dim=1)  # [b, n_patch, d]
    if max_frames is not None and t < max_frames:
        pad = temporal.new_zeros(b, max_frames - t, d)
        temporal = torch.cat([temporal, pad], dim=1)  # [b, max_frames, d]
    out = torch.cat([temporal, spatial], dim=1)  # [b, n_temporal + n_patch, d]
    return out[0] if squeeze else out


def num_video_tokens(num_frames: int, n_patch: int, max_frames: int | None = 100) -> int:
    return (max_frames if max_frames is not None else num_frames) + n_patch
