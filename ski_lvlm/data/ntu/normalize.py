"""Normalisation and temporal sampling of one NTU sample (xyz float32 ``[3, T, 25, M]``)."""

from __future__ import annotations

import numpy as np

from ski_lvlm.data.skeleton import SPINE_MID
from ski_lvlm.data.video import sample_indices



def _first_valid_frame(x: np.ndarray, body: int = 0) -> int | None:
    present = np.flatnonzero(np.any(x[..., body] != 0, axis=(0, 2)))  # frames where the body exists
    return int(present[0]) if len(present) else None


def center_on_spine(x: np.ndarray, mode: str = "first_frame", joint: int = SPINE_MID) -> np.ndarray:
    """Translate a sample so the spine joint sits at the origin; absent bodies/frames stay zero.

    * ``first_frame`` (CTR-GCN ``seq_translation``): subtract the spine of body 0 in its first frame
      from every joint of every frame, so the motion through space is kept.
    * ``per_frame`` (Hyperformer feeder style): subtract, in each frame, that frame's body-0 spine.
    """
    x = np.array(x, dtype=np.float32, copy=True)
    mask = np.any(x != 0, axis=(0, 2), keepdims=True)  # [1, T, 1, M] body present
    if mode == "first_frame":
        t0 = _first_valid_frame(x)
        if t0 is None:
            return x
        origin = x[:, t0, joint, 0][:, None, None, None]  # [3, 1, 1, 1]
    elif mode == "per_frame":
        origin = x[:, :, joint : joint + 1, 0:1]  # [3, T, 1, 1]; zero where body 0 is absent
    else:
        raise ValueError(f"mode must be 'first_frame' or 'per_frame', got {mode!r}")
    return (x - origin) * mask


def align_view(x: np.ndarray) -> np.ndarray:
    """Rotate a sample so body 0 faces the camera in its first frame.

    The new axes come from that frame: y = spine base -> spine shoulder (up), x = right shoulder -> left
    shoulder made orthogonal to y, z = x cross y. The rotation is about body 0's spine-mid joint in that
    frame, so it composes with :func:`center_on_spine` in either order. Absent joints stay zero.
    """
    x = np.asarray(x, dtype=np.float32)
    t0 = _first_valid_frame(x)
    if t0 is None:
        return x.copy()
    f = x[:, t0, :, 0].astype(np.float64)  # [3, 25]
    up = f[:, 20] - f[:, 0]  # spine_shoulder - spine_base
    side = f[:, 4] - f[:, 8]  # shoulder_left - shoulder_right
    if np.linalg.norm(up) < 1e-6:
        return x.copy()
    ey = up / np.linalg.norm(up)
    side = side - side.dot(ey) * ey
    if np.linalg.norm(side) < 1e-6:
        return x.copy()
    ex = side / np.linalg.norm(side)
    ez = np.cross(ex, ey)
    rot = np.stack([ex, ey, ez])  # [3, 3] rows = new axes
    origin = f[:, SPINE_MID][:, None, None, None]
    mask = np.any(x != 0, axis=(0, 2), keepdims=True)
    y = np.einsum("ij,jtvm->itvm", rot, x - origin) + origin
    return (y * mask).astype(np.float32)


def valid_length(x: np.ndarray) -> int:
    """Frames up to and including the last frame in which any body is present."""
    present = np.flatnonzero(np.any(x != 0, axis=(0, 2, 3)))
    return int(present[-1]) + 1 if len(present) else 0


SAMPLINGS = ("uniform", "random_crop", "pad300")


def temporal_resample(
    x: np.ndarray,
    frames: int,
    sampling: str = "uniform",
    rng: np.random.Generator | None = None,
    crop_range: tuple[float, float] = (0.5, 1.0),
) -> np.ndarray:
    """Bring a sample ``[3, T, 25, M]`` to exactly ``frames`` frames.

    * ``uniform``: ``frames`` evenly spaced frames over the valid length (first to last frame with a body);
      a shorter sequence repeats frames evenly (same rule as the video sampler).
    * ``random_crop``: a random window covering ``crop_range`` of the valid length (Hyperformer's
      ``p_interval``), then evenly spaced frames inside it (training augmentation; needs ``rng`` for
      reproducibility).
    * ``pad300``: the original CTR-GCN/SKI behaviour: keep frames from the start and zero-pad to
      ``frames`` (300 in the original); longer sequences are cut at ``frames``.
    """
    if frames <= 0:
        raise ValueError(f"frames must be > 0, got {frames}")
    c, t, v, m = x.shape
    if sampling == "pad300":
        out = np.zeros((c, frames, v, m), np.float32)
        out[:, : min(t, frames)] = x[:, :frames]
        return out
    n = valid_length(x)
    if n == 0:
        return np.zeros((c, frames, v, m), np.float32)
    if sampling == "uniform":
        idx = sample_indices(n, frames, "uniform")
    elif sampling == "random_crop":
        rng = np.random.default_rng() if rng is None else rng
        lo, hi = crop_range
        length = int(np.clip(round(n * rng.uniform(lo, hi)), 1, n))
        start = int(rng.integers(0, n - length + 1))
        idx = start + sample_indices(length, frames, "uniform")
    else:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    return np.ascontiguousarray(x[:, idx], dtype=np.float32)
